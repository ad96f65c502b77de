"""A labelling session that a test kills at a random moment (see test_crash.py).

Usage: ``python crash_driver.py PROJECT IMAGES SEED``. It labels forever: opens
the selector's next sample, journals strokes, saves, now and then exports and
imports. After each durable step it prints one line, flushed, so the killer
knows what was promised before the kill:

    OPENING <sample_id>   (about to remember it as the open sample)
    OPEN <sample_id>
    STROKE <sample_id> <sha1 of the mask after the stroke>
    SAVED <sample_id> <label_id> <sha1 of the mask>
    EXPORTED <n>
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from labelassist.export import export_png
from labelassist.importer import import_images
from labelassist.project import Project
from labelassist.session import Session


def digest(mask: np.ndarray) -> str:
    return hashlib.sha1(np.packbits(mask).tobytes()).hexdigest()


def stroke_pixels(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Flat indices of a thick random line, like a pen stroke."""
    h, w = shape
    y0, x0, y1, x1 = rng.integers(0, h), rng.integers(0, w), rng.integers(0, h), rng.integers(0, w)
    n = int(max(abs(y1 - y0), abs(x1 - x0))) + 1
    ys = np.linspace(y0, y1, n).round().astype(int)
    xs = np.linspace(x0, x1, n).round().astype(int)
    yy = np.clip(ys[:, None] + np.arange(-3, 4)[None, :], 0, h - 1).ravel()
    xx = np.clip(xs[:, None] + np.arange(-3, 4)[None, :], 0, w - 1).ravel()
    return np.unique(np.ravel_multi_index((yy, xx), shape))


def main() -> None:
    project_dir, images_dir, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(seed)
    out = sys.stdout
    with Project.open(project_dir) as project, Session(project, background=False) as session:
        # Resume exactly where the last run stopped, unsaved strokes included.
        resume = session.resume_state().get("sample_id")
        pending = session.unsaved_samples()
        for cycle in range(10_000):
            if resume is not None and cycle == 0:
                assisted = session.open(resume)
            elif pending and cycle == 0:
                assisted = session.open(pending[0])
            else:
                assisted = session.next()
                if assisted is None:  # everything labelled: correct an earlier label
                    ids = [s.id for s in project.store.samples()]
                    assisted = session.open(int(rng.choice(ids)))
            sid = assisted.sample.id
            print(f"OPENING {sid}", file=out, flush=True)
            session.remember(sample_id=sid)
            print(f"OPEN {sid}", file=out, flush=True)
            mask = assisted.start_mask
            if assisted.recovered is None and assisted.label is None and mask.any():
                # Starting from the pre-label is an edit like any other: journal it.
                session.record_edit(sid, "prelabel", np.flatnonzero(mask), np.ones(int(mask.sum()), bool))
                print(f"STROKE {sid} {digest(mask)}", file=out, flush=True)
            for _ in range(int(rng.integers(1, 5))):
                pixels = stroke_pixels(rng, mask.shape)
                value = bool(rng.random() < 0.8)
                session.record_edit(sid, "stroke" if value else "erase", pixels, np.full(pixels.size, value))
                mask.ravel()[pixels] = value
                print(f"STROKE {sid} {digest(mask)}", file=out, flush=True)
            label_id = session.save(sid, mask, strokes=3)
            print(f"SAVED {sid} {label_id} {digest(mask)}", file=out, flush=True)
            action = rng.random()
            if action < 0.15:
                report = export_png(project, project_dir.parent / "export")
                print(f"EXPORTED {report.labels}", file=out, flush=True)
            elif action < 0.25:
                import_images(project, [images_dir])
                print("IMPORTED", file=out, flush=True)


if __name__ == "__main__":
    main()
