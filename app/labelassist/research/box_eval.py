"""Which box-prompt method (tap-to-segment) fits the objects of labelled samples best?

A drawn box is segmented by GrabCut or, when installed, the box-prompt model (LiteMedSAM);
the session measures both on its own labels and lets the better one answer a box
(``session/assistance.py``). Each box is the bounding box of one true object
(:func:`labelassist.research.prompts.object_boxes`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from labelassist.errors import LabelAssistError, MaskError
from labelassist.research.prompts import object_boxes
from labelassist.workflow.metrics import dice

__all__ = ["BoxEvaluation", "BoxRow", "evaluate_box_prompts"]


@dataclass(frozen=True)
class BoxRow:
    """One box-prompt method on one object.

    Attributes
    ----------
    method, sample : str
    dice : float
        DSC of the method's mask, restricted to the box, against the object.
    ms : float
        Milliseconds per box, the method's per-image work (e.g. an image
        embedding) shared out over the image's boxes.
    """

    method: str
    sample: str
    dice: float
    ms: float


@dataclass
class BoxEvaluation:
    """Rows of :func:`evaluate_box_prompts`, per object."""

    rows: list[BoxRow] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)

    def mean_dice(self, method: str) -> float:
        """Mean DSC per object of ``method`` (nan with no object)."""
        d = [r.dice for r in self.rows if r.method == method]
        return float(np.mean(d)) if d else float("nan")

    def mean_ms(self, method: str) -> float:
        """Mean milliseconds per box of ``method``."""
        t = [r.ms for r in self.rows if r.method == method]
        return float(np.mean(t)) if t else float("nan")

    def objects(self, method: str | None = None) -> int:
        """Objects measured (for one method, or for the first)."""
        method = method or (self.methods[0] if self.methods else None)
        return sum(1 for r in self.rows if r.method == method)

    def best(self) -> str | None:
        """The method with the highest mean DSC per object (the earlier one on a tie); None with no object."""
        scored = [(self.mean_dice(m), -i, m) for i, m in enumerate(self.methods) if self.objects(m)]
        return max(scored)[2] if scored else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per method the objects, mean DSC and ms per box; the best; the rows."""
        return {"methods": {m: {"objects": self.objects(m), "dsc_mean": round(self.mean_dice(m), 4),
                                "ms_per_box": round(self.mean_ms(m), 1)} for m in self.methods},
                "best": self.best(), "rows": [asdict(r) for r in self.rows]}


def evaluate_box_prompts(
    samples: Iterable[tuple[str, np.ndarray, np.ndarray]],
    segmenters: Mapping[str, Callable[[np.ndarray, list[tuple[int, int, int, int]]], list[np.ndarray]]],
    min_area: int = 50,
    boxes_per_image: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BoxEvaluation:
    """Compare box-prompt segmenters on the objects of labelled samples.

    Parameters
    ----------
    samples : iterable of (name, image, truth)
        ``truth`` is the true mask (bool, image size).
    segmenters : mapping
        ``{method: f(image, boxes) -> masks}``: one call per image with all of
        its boxes, one bool mask (image size) per box back, so a method with
        per-image work (LiteMedSAM's embedding) does it once.
    min_area, boxes_per_image : int
        See :func:`object_boxes`.
    progress : callable, optional
        ``progress(done, total)`` after each image and method (``total`` counts
        image x method when ``samples`` is sized, else 0).

    Returns
    -------
    BoxEvaluation

    Notes
    -----
    Each box is the bounding box of one true object (what a careful annotator
    draws). A mask is scored inside its box only: the object against the
    method's pixels in the box, so a method is not blamed for the neighbours an
    annotator did not ask for, but is for spilling onto them within the box. A
    segmenter raising :class:`~labelassist.errors.LabelAssistError` scores 0 on
    that image's objects.
    """
    try:
        total = len(samples) * len(segmenters)  # type: ignore[arg-type]
    except TypeError:
        total = 0
    result = BoxEvaluation(methods=list(segmenters))
    done = 0
    for name, image, truth in samples:
        truth = np.asarray(truth) != 0
        if truth.shape != np.asarray(image).shape[:2]:
            raise MaskError(f"sample {name}: the true mask is {truth.shape[1]}x{truth.shape[0]} "
                            f"but the image is {image.shape[1]}x{image.shape[0]}")
        objects = object_boxes(truth, min_area, boxes_per_image)
        boxes = [b for b, _ in objects]
        for method, segment in segmenters.items():
            start = time.perf_counter()
            try:
                masks = list(segment(image, boxes)) if boxes else []
            except LabelAssistError:
                masks = [np.zeros(truth.shape, bool)] * len(boxes)
            ms = (time.perf_counter() - start) * 1000.0 / max(1, len(boxes))
            for ((x0, y0, x1, y1), obj), mask in zip(objects, masks):
                inside = np.asarray(mask, bool)[y0:y1, x0:x1]  # the object lies wholly in its box
                result.rows.append(BoxRow(method, str(name), dice(inside, obj), ms))
            done += 1
            if progress is not None:
                progress(done, total)
    return result
