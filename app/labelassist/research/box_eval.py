"""Which box-prompt method (tap-to-segment) fits the objects of labelled samples best?

A drawn box is segmented by GrabCut or, when installed, the box-prompt model (LiteMedSAM);
the session measures both on its own labels and lets the better one answer a box
(``session/assistance.py``). Each box is the bounding box of one true object
(:func:`labelassist.research.prompts.object_boxes`); a method that also answers a tap is
scored on one tap per object too, at the object's interior point (where a user aims).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from labelassist.errors import LabelAssistError, MaskError
from labelassist.research.prompts import _interior_point, object_boxes
from labelassist.workflow.metrics import dice

__all__ = ["BoxEvaluation", "BoxRow", "evaluate_box_prompts"]


@dataclass(frozen=True)
class BoxRow:
    """One box-prompt method on one object.

    Attributes
    ----------
    method, sample : str
    dice : float
        DSC against the object of the method's mask: restricted to the box for
        a box prompt, the whole mask for a point prompt.
    ms : float
        Milliseconds per prompt, the method's per-image work (e.g. an image
        embedding) shared out over the image's prompts.
    prompt : str
        ``"box"`` or ``"point"`` (one tap at the object's interior point).
    """

    method: str
    sample: str
    dice: float
    ms: float
    prompt: str = "box"


@dataclass
class BoxEvaluation:
    """Rows of :func:`evaluate_box_prompts`, per object."""

    rows: list[BoxRow] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)

    point_methods: list[str] = field(default_factory=list)

    def mean_dice(self, method: str, prompt: str = "box") -> float:
        """Mean DSC per object of ``method`` with ``prompt`` (nan with no object)."""
        d = [r.dice for r in self.rows if r.method == method and r.prompt == prompt]
        return float(np.mean(d)) if d else float("nan")

    def mean_ms(self, method: str, prompt: str = "box") -> float:
        """Mean milliseconds per prompt of ``method``."""
        t = [r.ms for r in self.rows if r.method == method and r.prompt == prompt]
        return float(np.mean(t)) if t else float("nan")

    def objects(self, method: str | None = None, prompt: str = "box") -> int:
        """Objects measured (for one method, or for the first)."""
        method = method or (self.methods[0] if self.methods else None)
        return sum(1 for r in self.rows if r.method == method and r.prompt == prompt)

    def best(self) -> str | None:
        """The method with the highest mean DSC per object (the earlier one on a tie); None with no object."""
        scored = [(self.mean_dice(m), -i, m) for i, m in enumerate(self.methods) if self.objects(m)]
        return max(scored)[2] if scored else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per method the objects, mean DSC and ms per box (and per point, under
        ``points``, when measured); the best box method; the rows."""
        out = {"methods": {m: {"objects": self.objects(m), "dsc_mean": round(self.mean_dice(m), 4),
                               "ms_per_box": round(self.mean_ms(m), 1)} for m in self.methods},
               "best": self.best(), "rows": [asdict(r) for r in self.rows]}
        if self.point_methods:
            out["points"] = {m: {"objects": self.objects(m, "point"),
                                 "dsc_mean": round(self.mean_dice(m, "point"), 4),
                                 "ms_per_point": round(self.mean_ms(m, "point"), 1)} for m in self.point_methods}
        return out


def evaluate_box_prompts(
    samples: Iterable[tuple[str, np.ndarray, np.ndarray]],
    segmenters: Mapping[str, Callable[[np.ndarray, list[tuple[int, int, int, int]]], list[np.ndarray]]],
    min_area: int = 50,
    boxes_per_image: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    point_segmenters: Mapping[str, Callable[[np.ndarray, list[tuple[int, int]]], list[np.ndarray]]] | None = None,
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
    point_segmenters : mapping, optional
        ``{method: f(image, points) -> masks}``: one tap (x, y) per object, at
        its interior point (:func:`~labelassist.research.prompts._interior_point`),
        one bool mask (image size) per tap back. Their rows have ``prompt="point"``.

    Returns
    -------
    BoxEvaluation

    Notes
    -----
    Each box is the bounding box of one true object (what a careful annotator
    draws). A mask is scored inside its box only: the object against the
    method's pixels in the box, so a method is not blamed for the neighbours an
    annotator did not ask for, but is for spilling onto them within the box. A
    tap's mask is scored whole: one tap asks for one object, and all of the
    mask is what would be added. A
    segmenter raising :class:`~labelassist.errors.LabelAssistError` scores 0 on
    that image's objects.
    """
    point_segmenters = dict(point_segmenters or {})
    try:
        total = len(samples) * (len(segmenters) + len(point_segmenters))  # type: ignore[arg-type]
    except TypeError:
        total = 0
    result = BoxEvaluation(methods=list(segmenters), point_methods=list(point_segmenters))
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
        if point_segmenters:
            points = [(x0 + px, y0 + py) for (x0, y0, _, _), obj in objects for px, py in [_interior_point(obj)]]
        for method, segment in point_segmenters.items():
            start = time.perf_counter()
            try:
                masks = list(segment(image, points)) if points else []
            except LabelAssistError:
                masks = [np.zeros(truth.shape, bool)] * len(points)
            ms = (time.perf_counter() - start) * 1000.0 / max(1, len(points))
            for ((x0, y0, x1, y1), obj), mask in zip(objects, masks):
                mask = np.asarray(mask, bool)
                inside = int(np.count_nonzero(mask[y0:y1, x0:x1] & obj))
                total_px = int(np.count_nonzero(mask)) + int(np.count_nonzero(obj))
                result.rows.append(BoxRow(method, str(name), 2.0 * inside / total_px if total_px else 1.0, ms,
                                          prompt="point"))
            done += 1
            if progress is not None:
                progress(done, total)
    return result
