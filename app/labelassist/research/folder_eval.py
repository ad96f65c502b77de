"""The pre-label evaluation on folders of images and known masks (no project needed).

``labelassist evaluate prelabel --images DIR --masks DIR`` lands here: the
images are discovered as the importer does (sequences in natural frame order),
masks are matched by relative path or file stem, and each image's
``previous`` pre-label is the mask of the frame before it in its sequence.
``--masks DIR`` alone measures ``previous`` without pixels
(:func:`evaluate_masks_only`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from labelassist import images
from labelassist.errors import LabelAssistError
from labelassist.importer import mask_index, match_mask, read_mask_for
from labelassist.research.prelabel_eval import Evaluation, Row, evaluate_prelabels, summarise
from labelassist.workflow.metrics import correction_effort, dice

__all__ = ["DEFAULT_METHODS", "evaluate_folders", "evaluate_masks_only", "folder_samples"]

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
    for frames in found.sequences().values():
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
    found = images.discover([mask_dir])
    rows = []
    frames = [f for seq in found.sequences().values() for f in seq]
    for members in found.sequences().values():
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
    return Evaluation(rows=rows, summaries={"previous": summarise("previous", rows)})

