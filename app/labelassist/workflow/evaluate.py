"""Which pre-label helps on this project? Measure them on labelled samples.

The Label Assistant workflow offers a pre-label only when it helps: a bad
pre-label costs the annotator more time than an empty canvas. This module runs
pre-label steps on samples whose true mask is known and reports, per method,
the Dice-Sørensen coefficient (DSC), the correction effort and the time per
image; :meth:`Evaluation.best` picks the method to use, or None to switch
pre-labelling off.

Interactive methods are run with *simulated prompts* derived from the truth
(see :func:`simulate_prompts`), i.e. the prompts a careful annotator would
give; their figures are therefore an upper bound of what a hurried tap gives.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import cv2
import numpy as np

from labelassist.errors import LabelAssistError, MaskError, PluginError
from labelassist.workflow.metrics import correction_effort, dice
from labelassist.workflow.prelabel import PrelabelContext
from labelassist.workflow.registry import get

__all__ = [
    "PROMPTS",
    "BoxEvaluation",
    "BoxRow",
    "Evaluation",
    "Prompts",
    "Row",
    "Summary",
    "evaluate_box_prompts",
    "evaluate_prelabels",
    "object_boxes",
    "simulate_prompts",
]

#: How each built-in interactive method is prompted in an evaluation: ``taps``
#: (one call with every tap), ``boxes`` (one call per segment with its box; the
#: union of the results is the pre-label). Methods not listed get no prompt.
PROMPTS: dict[str, str] = {"flood": "taps", "watershed": "taps", "grabcut": "boxes"}


@dataclass(frozen=True)
class Prompts:
    """Prompts simulated from a true mask.

    Attributes
    ----------
    points : list of (x, y)
        One foreground tap per segment, pixels.
    background_points : list of (x, y)
        One tap per background region, pixels.
    boxes : list of (x0, y0, x1, y1)
        Bounding box of each segment, pixels (``x1``, ``y1`` exclusive), in
        the order of ``points``.
    """

    points: list[tuple[int, int]]
    background_points: list[tuple[int, int]]
    boxes: list[tuple[int, int, int, int]]


def _interior_point(region: np.ndarray) -> tuple[int, int]:
    """The pixel farthest from the region's edge (the image border counts as an edge)."""
    padded = np.pad(region, 1).view(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def simulate_prompts(truth: np.ndarray, min_area: int = 16) -> Prompts:
    """The taps and boxes a careful annotator would give for ``truth``.

    Parameters
    ----------
    truth : ndarray of bool, shape (H, W)
        True mask.
    min_area : int
        Segments and background regions smaller than this (pixels) get no
        prompt: nobody taps a speck.

    Returns
    -------
    Prompts
        A foreground tap at the interior point of each 8-connected segment
        (the maximum of the distance transform: the spot farthest from any
        edge, where a finger lands when aiming at the object's middle), a
        background tap at the interior point of each 4-connected background
        region, and each segment's bounding box.
    """
    truth = np.ascontiguousarray(np.asarray(truth, dtype=bool))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(truth.view(np.uint8), connectivity=8)
    points, boxes = [], []
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        # The distance transform of the segment's own bounding box is enough (and cheap).
        px, py = _interior_point(labels[y : y + h, x : x + w] == k)
        points.append((x + px, y + py))
        boxes.append((x, y, x + w, y + h))
    background = []
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~truth).view(np.uint8), connectivity=4)
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        px, py = _interior_point(labels[y : y + h, x : x + w] == k)
        background.append((x + px, y + py))
    return Prompts(points=points, background_points=background, boxes=boxes)


@dataclass(frozen=True)
class Row:
    """One method on one sample.

    Attributes
    ----------
    method, sample : str
    dice : float
        DSC of the pre-label against the truth, in [0, 1].
    effort : float
        :func:`~labelassist.workflow.metrics.correction_effort`: pixels to
        change relative to painting the truth from scratch (0 perfect, 1 as
        good as nothing).
    ms : float
        Wall time of the step, milliseconds (prompt simulation excluded).
    note : str
        The step's note (e.g. no previous label) or the error it raised; the
        pre-label then counts as an empty mask, which is what the annotator gets.
    """

    method: str
    sample: str
    dice: float
    effort: float
    ms: float
    note: str = ""


@dataclass(frozen=True)
class Summary:
    """One method over all samples.

    Attributes
    ----------
    method : str
    n : int
        Samples.
    dice_mean, dice_median, dice_q1, dice_q3 : float
        DSC statistics (q1/q3: 25th/75th percentiles).
    effort_mean : float
        Mean correction effort (samples with an empty truth and a non-empty
        pre-label have infinite effort and are left out of the mean).
    ms_mean : float
        Mean time per image, milliseconds.
    noted : int
        Samples with a note or an error (counted as empty pre-labels).
    """

    method: str
    n: int
    dice_mean: float
    dice_median: float
    dice_q1: float
    dice_q3: float
    effort_mean: float
    ms_mean: float
    noted: int


@dataclass
class Evaluation:
    """Per-sample rows and per-method summaries of :func:`evaluate_prelabels`."""

    rows: list[Row] = field(default_factory=list)
    summaries: dict[str, Summary] = field(default_factory=dict)

    def ranking(self) -> list[Summary]:
        """Summaries best first: highest mean DSC, then lower effort, then faster."""
        return sorted(self.summaries.values(), key=lambda s: (-s.dice_mean, s.effort_mean, s.ms_mean))

    def best(self, threshold: float = 0.0) -> str | None:
        """The method to pre-label with, or None when none is good enough.

        Parameters
        ----------
        threshold : float
            Smallest acceptable mean DSC. Below it a pre-label slows the
            annotator down more than it helps, so the session labels without one.

        Returns
        -------
        str or None
        """
        ranking = self.ranking()
        if not ranking or ranking[0].dice_mean < threshold:
            return None
        return ranking[0].method

    def rows_of(self, method: str) -> list[Row]:
        """The per-sample rows of one method, in sample order."""
        return [r for r in self.rows if r.method == method]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"summaries": [...best first], "rows": [...]}`` (inf effort becomes None)."""

        def clean(d: dict) -> dict:
            return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}

        return {
            "summaries": [clean(asdict(s)) for s in self.ranking()],
            "rows": [clean(asdict(r)) for r in self.rows],
        }


def _summarise(method: str, rows: Sequence[Row]) -> Summary:
    d = np.array([r.dice for r in rows], dtype=np.float64)
    e = np.array([r.effort for r in rows], dtype=np.float64)
    e = e[np.isfinite(e)]
    q1, median, q3 = (float(v) for v in np.percentile(d, (25, 50, 75))) if d.size else (np.nan,) * 3
    return Summary(
        method=method,
        n=len(rows),
        dice_mean=float(d.mean()) if d.size else float("nan"),
        dice_median=median,
        dice_q1=q1,
        dice_q3=q3,
        effort_mean=float(e.mean()) if e.size else float("nan"),
        ms_mean=float(np.mean([r.ms for r in rows])) if rows else float("nan"),
        noted=sum(1 for r in rows if r.note),
    )


def evaluate_prelabels(
    samples: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]],
    methods: Sequence[str],
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    model: Any = None,
    prompts: Mapping[str, str] | None = None,
) -> Evaluation:
    """Run pre-label methods on labelled samples and measure them.

    Parameters
    ----------
    samples : iterable of (name, image, truth, previous_truth)
        A sized sequence is iterated once without being copied (it may load
        each image when asked); any other iterable is read into a list first.
        ``image`` as :func:`labelassist.images.read_image` returns it (apply
        the project's pre-processing first if the pre-label sees it there);
        ``truth`` the true mask (bool, image size); ``previous_truth`` the true
        mask of the neighbouring frame of the same sequence, or None at a
        sequence start / outside sequences (it becomes ``previous_mask``).
    methods : sequence of str
        Registered pre-label names, e.g. ``["otsu", "previous", "grabcut"]``.
    params : mapping, optional
        ``{method: {param: value}}``; checked against the declared parameters
        before anything runs.
    progress : callable, optional
        ``progress(done, total)`` after each method on each sample (``total``
        is ``len(samples) * len(methods)``).
    model : object, optional
        Passed as ``context.model`` (for ``onnx``).
    prompts : mapping, optional
        Overrides :data:`PROMPTS`, ``{method: 'taps' | 'boxes' | 'none'}``
        (for interactive plug-ins).

    Returns
    -------
    Evaluation

    Notes
    -----
    Simulated prompts (:func:`simulate_prompts`): ``taps`` methods get one call
    with a foreground tap at the interior point of every segment and a
    background tap at the interior point of every background region; ``boxes``
    methods get one call per segment with that segment's bounding box (no
    taps), and the union of the results is the pre-label. A sample without a
    segment gives ``taps``/``boxes`` methods nothing to prompt with; their
    pre-label is then empty, which is right for an empty truth.

    A step that raises :class:`~labelassist.errors.LabelAssistError` on a sample
    (a blank image, a missing model...) does not stop the evaluation: the row
    records the message and counts the pre-label as empty. So does a
    placeholder result (``previous`` at a sequence start).
    """
    steps = [get("prelabel", m) for m in methods]
    resolved = {s.name: s.resolve(dict((params or {}).get(s.name, {}))) for s in steps}
    unknown = sorted(set(params or {}) - {s.name for s in steps})
    if unknown:
        raise PluginError(f"parameters given for {', '.join(map(repr, unknown))}, which are not evaluated")
    how = {**PROMPTS, **dict(prompts or {})}
    bad = sorted(f"{m}={k!r}" for m, k in how.items() if k not in ("taps", "boxes", "none"))
    if bad:
        raise PluginError(f"unknown prompt simulation {', '.join(bad)} (use 'taps', 'boxes' or 'none')")
    try:
        count = len(samples)  # a sized, lazy sequence streams: one image in memory at a time
    except TypeError:
        samples = list(samples)
        count = len(samples)
    total = count * len(steps)
    evaluation = Evaluation()
    done = 0
    for name, image, truth, prev in samples:
        truth = np.asarray(truth) != 0
        image = np.asarray(image)
        if truth.shape != image.shape[:2]:
            raise MaskError(f"sample {name}: the true mask is {truth.shape[1]}x{truth.shape[0]} "
                            f"but the image is {image.shape[1]}x{image.shape[0]}")
        simulated = simulate_prompts(truth) if any(how.get(s.name) in ("taps", "boxes") for s in steps) else None
        for step in steps:
            kind = how.get(step.name, "none")
            base = PrelabelContext(previous_mask=prev, model=model)
            contexts = [base]
            if kind == "taps":
                contexts = [PrelabelContext(previous_mask=prev, model=model, points=list(simulated.points),
                                            background_points=list(simulated.background_points))]
                if not simulated.points:
                    contexts = []
            elif kind == "boxes":
                contexts = [PrelabelContext(previous_mask=prev, model=model, box=b) for b in simulated.boxes]
            mask = np.zeros(truth.shape, dtype=bool)
            note = ""
            start = time.perf_counter()
            try:
                for context in contexts:
                    result = step.func(image, context, **resolved[step.name])
                    mask |= result.mask
                    note = note or result.note
            except LabelAssistError as exc:
                mask[:] = False
                note = str(exc)
            ms = (time.perf_counter() - start) * 1000.0
            evaluation.rows.append(Row(method=step.name, sample=str(name), dice=dice(mask, truth),
                                       effort=correction_effort(mask, truth), ms=ms, note=note))
            done += 1
            if progress is not None:
                progress(done, total)
    for step in steps:
        evaluation.summaries[step.name] = _summarise(step.name, evaluation.rows_of(step.name))
    return evaluation


# --------------------------------------------------------------------------- box prompts (tap-to-segment)


def object_boxes(truth: np.ndarray, min_area: int = 50,
                 limit: int | None = None) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """The box an annotator would draw around each object of a true mask.

    Parameters
    ----------
    truth : ndarray of bool, shape (H, W)
        True mask.
    min_area : int
        Objects (8-connected segments) smaller than this, in pixels, get no box.
    limit : int, optional
        Keep at most this many boxes (an evaluation's time is spent per box):
        objects at evenly spaced ranks of size, so small and large ones are
        both represented.

    Returns
    -------
    list of ((x0, y0, x1, y1), object mask)
        Boxes in pixels (``x1``, ``y1`` exclusive) and each object's own mask,
        cropped to its box (the object lies wholly inside it).
    """
    truth = np.ascontiguousarray(np.asarray(truth) != 0)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(truth.view(np.uint8), connectivity=8)
    order = sorted((k for k in range(1, n) if stats[k, 4] >= min_area), key=lambda k: -int(stats[k, 4]))
    if limit is not None and len(order) > limit:
        order = [order[int(i)] for i in np.unique(np.linspace(0, len(order) - 1, max(limit, 0)).round())]
    out = []
    for k in order:
        x, y, w, h = (int(v) for v in stats[k, :4])
        out.append(((x, y, x + w, y + h), labels[y : y + h, x : x + w] == k))
    return out


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
