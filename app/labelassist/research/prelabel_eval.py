"""Which pre-label helps on this project? Measure them on labelled samples.

The Label Assistant workflow offers a pre-label only when it helps: a bad
pre-label costs the annotator more time than an empty canvas. This module runs
pre-label steps on samples whose true mask is known and reports, per method,
the Dice-Sørensen coefficient (DSC), the correction effort and the time per
image; :meth:`Evaluation.best` picks the method to use, or None to switch
pre-labelling off.

Interactive methods are run with *simulated prompts* derived from the truth
(see :func:`labelassist.research.prompts.simulate_prompts`), i.e. the prompts a
careful annotator would give; their figures are therefore an upper bound of what
a hurried tap gives.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from labelassist.errors import LabelAssistError, MaskError, PluginError
from labelassist.research.prompts import simulate_prompts
from labelassist.workflow.metrics import correction_effort, dice
from labelassist.workflow.prelabel import PrelabelContext
from labelassist.workflow.registry import REGISTRY

if TYPE_CHECKING:
    from labelassist.workflow.registry import ProjectRegistry, Registry

__all__ = [
    "PROMPTS",
    "Evaluation",
    "Row",
    "Summary",
    "evaluate_prelabels",
    "evaluation_from_dict",
    "summarise",
]

#: How each built-in interactive method is prompted in an evaluation: ``taps``
#: (one call with every tap), ``boxes`` (one call per segment with its box; the
#: union of the results is the pre-label). Methods not listed get no prompt.
PROMPTS: dict[str, str] = {"flood": "taps", "watershed": "taps", "grabcut": "boxes"}


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


def evaluation_from_dict(data: Mapping[str, Any]) -> Evaluation:
    """The :class:`Evaluation` of :meth:`Evaluation.to_dict` (a row's None effort back to inf, a
    summary's None statistic to nan)."""

    def number(v):
        return float("inf") if v is None else v

    rows = [Row(**{k: (number(v) if k == "effort" else v) for k, v in r.items()}) for r in data.get("rows", [])]
    summaries = {}
    for d in data.get("summaries", []):
        d = {k: (float("nan") if v is None else v) for k, v in d.items()}  # statistics of nothing
        summaries[d["method"]] = Summary(**d)
    return Evaluation(rows=rows, summaries=summaries)


def summarise(method: str, rows: Sequence[Row]) -> Summary:
    """The :class:`Summary` of one method's rows (nan statistics when there is no row)."""
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
    registry: Registry | ProjectRegistry = REGISTRY,
    candidates: Mapping[str, tuple[str, Any]] | None = None,
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
    registry : Registry or ProjectRegistry
        Where the methods are looked up: the shared built-ins by default, a
        project's registry (its plug-ins on top) for a project.
    candidates : mapping, optional
        ``{name: (step, model)}``: methods of ``methods`` that run a registered
        step under a name of their own with a model of their own, e.g. each
        shipped model as ``"shipped:usiigaci_phase": ("onnx", model)``. Their
        rows and summaries carry the name; ``params`` under that name are its
        own (else the step's).

    Returns
    -------
    Evaluation

    Notes
    -----
    Simulated prompts (:func:`~labelassist.research.prompts.simulate_prompts`):
    ``taps`` methods get one call with a foreground tap at the interior point of every segment and a
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
    candidates = dict(candidates or {})
    # (name, step, model) of each method: a candidate runs its step with its own model.
    runs = [(m, registry.get("prelabel", candidates[m][0]), candidates[m][1]) if m in candidates
            else (m, registry.get("prelabel", m), model) for m in methods]
    steps = [step for _, step, _ in runs]
    params = dict(params or {})
    # A candidate's own parameters first (a shipped model's threshold), else its step's.
    resolved = {name: step.resolve(dict(params.get(name, params.get(step.name, {})))) for name, step, _ in runs}
    unknown = sorted(set(params) - {s.name for s in steps} - {name for name, _, _ in runs})
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
        for name_of_method, step, step_model in runs:
            kind = how.get(step.name, "none")
            base = PrelabelContext(previous_mask=prev, model=step_model)
            contexts = [base]
            if kind == "taps":
                contexts = [PrelabelContext(previous_mask=prev, model=step_model, points=list(simulated.points),
                                            background_points=list(simulated.background_points))]
                if not simulated.points:
                    contexts = []
            elif kind == "boxes":
                contexts = [PrelabelContext(previous_mask=prev, model=step_model, box=b) for b in simulated.boxes]
            mask = np.zeros(truth.shape, dtype=bool)
            note = ""
            start = time.perf_counter()
            try:
                for context in contexts:
                    result = step.func(image, context, **resolved[name_of_method])
                    mask |= result.mask
                    note = note or result.note
            except LabelAssistError as exc:
                mask[:] = False
                note = str(exc)
            ms = (time.perf_counter() - start) * 1000.0
            evaluation.rows.append(Row(method=name_of_method, sample=str(name), dice=dice(mask, truth),
                                       effort=correction_effort(mask, truth), ms=ms, note=note))
            done += 1
            if progress is not None:
                progress(done, total)
    for name_of_method, _, _ in runs:
        evaluation.summaries[name_of_method] = summarise(name_of_method, evaluation.rows_of(name_of_method))
    return evaluation


