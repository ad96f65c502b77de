"""Test driver for tests/test_soak.py: a labelling session at kiosk pace while others read the project.

    python tests/soak_driver.py PROJECT SEED PAUSE

Like the kiosk: one process owns the project (lock, Session, rolling backups), journals strokes
and saves label versions; after every save it lists the projects on the tablet the way Home does
(``labelassist.ui.projects.scan``, read-only, in this same process). After each save is
acknowledged (``Session.save`` returned) it prints, flushed:

    ACK <sample_id> <label_id> <sha1 of the mask>

It labels forever (correcting earlier labels once every sample has one) until it is killed.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from labelassist.project import Project
from labelassist.session import Session
from labelassist.ui import projects


def digest(mask: np.ndarray) -> str:
    return hashlib.sha1(np.packbits(mask).tobytes()).hexdigest()


def main() -> None:
    project_dir, seed, pause = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    rng = np.random.default_rng(seed)
    with Project.open(project_dir) as project, Session(project, background=False, lookahead=0) as session:
        project.settings["backup"]["minutes"] = 0.02  # a rolling backup about every second
        ids = [s.id for s in project.store.samples()]
        print("READY", flush=True)
        while True:
            assisted = session.next() or session.open(int(rng.choice(ids)))
            sid = assisted.sample.id
            session.remember(sample_id=sid)
            mask = assisted.start_mask
            h, w = mask.shape
            y, x = int(rng.integers(0, h - 20)), int(rng.integers(0, w - 40))
            pixels = np.ravel_multi_index(np.mgrid[y:y + 12, x:x + 30].reshape(2, -1), mask.shape)
            session.record_edit(sid, "stroke", pixels, np.ones(pixels.size, bool))
            mask.ravel()[pixels] = True
            time.sleep(pause)  # the biologist's pen
            label_id = session.save(sid, mask, strokes=1)
            print(f"ACK {sid} {label_id} {digest(mask)}", flush=True)
            projects.scan(project_dir.parent)  # Home's listing, in the same process


if __name__ == "__main__":
    main()
