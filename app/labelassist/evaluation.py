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
