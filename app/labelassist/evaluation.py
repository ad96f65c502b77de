"""Evaluations on folders of images and known masks (no project needed).

``labelassist evaluate prelabel --images DIR --masks DIR`` lands here: the
images are discovered as the importer does (sequences in natural frame order),
masks are matched by relative path or file stem, and each image's
``previous`` pre-label is the mask of the frame before it in its sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from labelassist import images
from labelassist.errors import LabelAssistError
from labelassist.importer import read_mask_for, mask_index, match_mask
from labelassist.workflow.evaluate import Evaluation, evaluate_prelabels

DEFAULT_METHODS = ("otsu", "previous")


def folder_samples(image_dir: Path, mask_dir: Path) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
    """``(name, image, truth, previous_truth)`` for every image with a mask, in sequence order.

    Raises LabelAssistError when no image has a mask.
    """
    found = images.discover([image_dir])
    if not mask_dir.is_dir():
        raise LabelAssistError(f"the mask folder {mask_dir} does not exist")
    index = mask_index(mask_dir)
    pairs = []
    for sequence, frames in found.sequences().items():
        previous = None
        for frame in frames:
            mask_path = match_mask(frame, *index)
            truth = read_mask_for(mask_path, frame) if mask_path is not None else None
            pairs.append((frame, truth, previous))
            previous = truth
    if not any(t is not None for _, t, _ in pairs):
        raise LabelAssistError(f"none of the images in {image_dir} has a mask in {mask_dir} (matched by file name)")
    for frame, truth, previous in pairs:
        if truth is None:
            continue
        yield frame.name, images.read_image(frame.path, page=frame.page), truth, previous


def evaluate_folders(image_dir: Path, mask_dir: Path, methods: list[str] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """DSC, correction effort and time of each pre-label method on a folder of images and masks."""
    return evaluate_prelabels(list(folder_samples(image_dir, mask_dir)), list(methods or DEFAULT_METHODS),
                              progress=progress)


def evaluate_masks_only(mask_dir: Path, progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """The ``previous`` pre-label measured on a folder of masks alone (no images needed).

    The previous frame's mask is exactly what ``previous`` proposes, so its DSC
    against each mask can be measured without pixels (medaka_masks has no public
    images). Frames follow the natural order of the file names, as one sequence
    per folder and name prefix.
    """
    from labelassist.workflow.evaluate import Row, _summarise
    from labelassist.workflow.metrics import correction_effort, dice

    found = images.discover([mask_dir])
    rows = []
    frames = [f for seq in found.sequences().values() for f in seq]
    for done, (sequence, members) in enumerate(found.sequences().items()):
        previous = None
        for frame in members:
            truth = images.read_mask(frame.path, page=frame.page)
            if previous is None or previous.shape != truth.shape:
                rows.append(Row("previous", frame.name, 0.0, 1.0 if truth.any() else 0.0, 0.0,
                                "no previous label in this sequence: this frame starts empty"))
            else:
                rows.append(Row("previous", frame.name, dice(previous, truth), correction_effort(previous, truth), 0.0))
            previous = truth
            if progress:
                progress(len(rows), len(frames))
    if not rows:
        raise LabelAssistError(f"{mask_dir} holds no masks")
    return Evaluation(rows=rows, summaries={"previous": _summarise("previous", rows)})


def dsc_axes(img: np.ndarray, left: int, top: int, plot_h: int, label: str) -> Callable[[float], int]:
    """Draw a 0..1 DSC axis with grid lines on ``img``; returns the row of a DSC value (clipped to 0..1)."""
    import cv2

    def y_of(v: float) -> int:
        return int(round(top + (1.0 - min(max(v, 0.0), 1.0)) * plot_h))

    font = cv2.FONT_HERSHEY_SIMPLEX
    for tick in np.linspace(0, 1, 6):
        y = y_of(tick)
        cv2.line(img, (left, y), (img.shape[1] - 20, y), (225, 225, 225), 1)
        cv2.putText(img, f"{tick:.1f}", (left - 45, y + 5), font, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, label, (10, top - 20), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return y_of


def plot_evaluation(evaluation: Evaluation, path: Path, title: str = "") -> Path:
    """Box plots of the DSC per method (median, quartiles, 5-95 % whiskers) as a PNG, drawn with OpenCV."""
    import cv2

    methods = [s.method for s in evaluation.ranking()]
    width, height, left, top, bottom = max(480, 150 * len(methods) + 120), 420, 70, 50, 60
    img = np.full((height, width, 3), 255, np.uint8)
    plot_h = height - top - bottom
    y_of = dsc_axes(img, left, top, plot_h, "DSC")
    font = cv2.FONT_HERSHEY_SIMPLEX
    if title:
        cv2.putText(img, title, (left, 28), font, 0.65, (0, 0, 0), 1, cv2.LINE_AA)
    step = (width - left - 20) / max(1, len(methods))
    for k, method in enumerate(methods):
        values = np.array([r.dice for r in evaluation.rows_of(method)], dtype=float)
        cx = int(left + step * (k + 0.5))
        p5, q1, med, q3, p95 = np.percentile(values, [5, 25, 50, 75, 95])
        cv2.line(img, (cx, y_of(p5)), (cx, y_of(p95)), (90, 90, 90), 1)
        cv2.rectangle(img, (cx - 30, y_of(q3)), (cx + 30, y_of(q1)), (200, 140, 60), -1)
        cv2.line(img, (cx - 30, y_of(med)), (cx + 30, y_of(med)), (0, 0, 0), 2)
        for v in values:
            cv2.circle(img, (cx + 40, y_of(v)), 2, (60, 60, 200), -1)
        label = f"{method} ({values.mean():.2f})"
        size = cv2.getTextSize(label, font, 0.5, 1)[0][0]
        cv2.putText(img, label, (cx - size // 2, height - bottom + 25), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", img)
    path.write_bytes(buf.tobytes())
    return path
