"""Inspection γ(y): does a finished label look like what the expert expects?

Each metric has the signature ``g(mask, context, **params) -> Check`` and
scores the label in [0, 1] (1 = as expected). :func:`inspect_label` combines
the applicable checks into

    γ(y) = Σ w_j γ_j / Σ w_j

and raises a warning when γ(y) ≤ γ0. A check that cannot be made (no prior set,
no model prediction, no pre-label) is *not applicable*: it is reported but left
out of both sums, so it neither raises nor lowers γ.

What is expected comes from the project's priors (``context.priors``); a
metric's parameters only say how strictly it scores. Known priors, each
optional (missing or ``None`` switches its check off):

=====================  =====================================================
``segments``           expected number of segments (8-connected), e.g. 2
``holes``              expected number of holes, e.g. 0
``area_fraction_min``  smallest fraction of the image the label covers (0..1)
``area_fraction_max``  largest fraction of the image the label covers (0..1)
``area_fraction``      the same as a pair ``(min, max)``
``min_segment_area``   segments smaller than this many pixels are fragments
                       (0 = off)
``border_segments``    expected number of segments touching the image border;
                       ``True`` = any number allowed, ``False`` = none allowed
=====================  =====================================================

Scores for counts fall as 1 / (1 + d), d being how many too many or too few
(beyond a tolerance): one off gives 0.5, two off 0.33. A label one segment off
therefore gets γ = 0.5 when segment count is the only applicable check, and
γ = 0.75 beside one other passing check of equal weight, which still warns at
the project's default γ0 = 0.75 (the warning is γ ≤ γ0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labelassist.errors import MaskError, PluginError, ProjectError
from labelassist.workflow import components
from labelassist.workflow.metrics import dice
from labelassist.workflow.registry import REGISTRY, Param, ProjectRegistry, Registry, register
from labelassist.workflow.results import Check

__all__ = [
    "Check",
    "InspectionContext",
    "NothingToInspect",
    "Report",
    "area_fraction",
    "border_touching",
    "highlight",
    "hole_count",
    "inspect_label",
    "model_disagreement",
    "prelabel_change",
    "segment_count",
    "tiny_fragments",
]


@dataclass(eq=False)  # holds arrays: compared by identity
class InspectionContext:
    """What inspection knows besides the label itself.

    Attributes
    ----------
    priors : dict
        The project's expectations (see the module docstring for the keys).
    prelabel : ndarray of bool or None
        The pre-label the annotator started from, if any.
    prediction : ndarray of bool or None
        A model's prediction for this image, if any.
    """

    priors: dict[str, Any] = field(default_factory=dict)
    prelabel: np.ndarray | None = None
    prediction: np.ndarray | None = None


@dataclass(frozen=True)
class Report:
    """All checks of one label and their weighted mean γ(y).

    Attributes
    ----------
    score : float
        γ(y) = Σ w_j γ_j / Σ w_j over the applicable checks.
    gamma0 : float
        Warning threshold: a warning is raised when ``score <= gamma0``.
    checks : tuple of Check
        Every check that ran (weight above 0), applicable or not, in the order given.
    weights : dict
        Weight of each check that ran, by name.
    """

    score: float
    gamma0: float
    checks: tuple[Check, ...]
    weights: dict[str, float]

    @property
    def warning(self) -> bool:
        """True when γ(y) ≤ γ0: the annotator should look again before saving."""
        return self.score <= self.gamma0

    @property
    def failed(self) -> tuple[Check, ...]:
        """Applicable checks that did not pass; their messages say by how much."""
        return tuple(c for c in self.checks if c.applicable and not c.passed)

    def describe(self) -> list[str]:
        """Plain-words lines: the verdict first, then failed, passed and skipped checks."""
        if self.warning:
            head = f"Label quality {self.score:.2f} is at or below {self.gamma0:.2f}: please check the label."
        else:
            head = f"Label quality {self.score:.2f} (warning at {self.gamma0:.2f} or below)."
        lines = [head]
        for c in self.failed:
            lines.append(f"Failed {c.name}: {c.message} (score {c.score:.2f}, weight {self.weights[c.name]:g}).")
        lines += [f"Passed {c.name}: {c.message}." for c in self.checks if c.applicable and c.passed]
        lines += [f"Skipped {c.name}: {c.message}." for c in self.checks if not c.applicable]
        return lines


# -- priors -------------------------------------------------------------------------------------
def _prior_count(priors: dict[str, Any], key: str) -> int | None:
    value = priors.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise ProjectError(f"prior '{key}' must be a whole number of 0 or more, got {value!r}")
    return int(value)


def _area_range(priors: dict[str, Any]) -> tuple[float, float] | None:
    if priors.get("area_fraction") is not None:
        pair = priors["area_fraction"]
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ProjectError(f"prior 'area_fraction' must be a pair (min, max), got {pair!r}")
        low, high = pair
    else:
        low = priors.get("area_fraction_min")
        high = priors.get("area_fraction_max")
        low = 0.0 if low is None else low
        high = 1.0 if high is None else high
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ProjectError(f"the area fraction priors must be numbers between 0 and 1, got {low!r} and {high!r}")
    if low > high:
        raise ProjectError(f"the smallest area fraction {low} is above the largest {high}")
    # The whole range [0, 1] expects nothing: the check is off.
    return None if (low, high) == (0.0, 1.0) else (float(low), float(high))


def _other_mask(mask: np.ndarray, other: np.ndarray, what: str) -> np.ndarray:
    other = components.as_mask(other)
    if other.shape != mask.shape:
        raise MaskError(
            f"the {what} is {other.shape[1]}x{other.shape[0]} but the label is {mask.shape[1]}x{mask.shape[0]}"
        )
    return other


def _count_score(difference: int, tolerance: int) -> float:
    return 1.0 / (1.0 + max(0, abs(difference) - tolerance))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _count_message(n: int, target: int, word: str) -> str:
    if n == target:
        return f"{_plural(n, word)}, as expected"
    how = f"{n - target} too many" if n > target else f"{target - n} too few"
    return f"{_plural(n, word)}, expected {target} ({how})"


_TOLERANCE = Param("tolerance", int, 0, low=0, help="How many more or fewer still pass.")


def _count_check(name: str, prior: str, word: str, count, mask: np.ndarray, context: InspectionContext,
                 tolerance: int) -> Check:
    """A count of ``word``s in the mask (``count(mask)``) against the prior ``prior``."""
    mask = components.as_mask(mask)
    target = _prior_count(context.priors, prior)
    if target is None:
        return Check.not_applicable(name, f"no expected number of {word}s is set")
    n = count(mask)
    return Check(
        name=name,
        score=_count_score(n - target, tolerance),
        passed=abs(n - target) <= tolerance,
        message=_count_message(n, target, word),
        value=n,
        expected=target,
    )


# -- metrics ------------------------------------------------------------------------------------
@register("inspect", "segment_count", params=[_TOLERANCE])
def segment_count(mask: np.ndarray, context: InspectionContext, tolerance: int = 0) -> Check:
    """Number of segments against the prior ``segments``.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    context : InspectionContext
    tolerance : int
        Counts off by at most this many pass with score 1.

    Returns
    -------
    Check
        Score 1 / (1 + max(0, |n - target| - tolerance)).
    """
    return _count_check("segment_count", "segments", "segment", components.count_segments, mask, context, tolerance)


@register("inspect", "hole_count", params=[_TOLERANCE])
def hole_count(mask: np.ndarray, context: InspectionContext, tolerance: int = 0) -> Check:
    """Number of holes (enclosed background regions) against the prior ``holes``.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    context : InspectionContext
    tolerance : int
        Counts off by at most this many pass with score 1.

    Returns
    -------
    Check
        Score 1 / (1 + max(0, |n - target| - tolerance)).
    """
    return _count_check("hole_count", "holes", "hole", components.count_holes, mask, context, tolerance)


@register(
    "inspect",
    "area_fraction",
    params=[
        Param(
            "scale",
            float,
            0.05,
            low=0.001,
            high=1.0,
            help="Distance outside the expected range, as a fraction of the image, at which the score is one half.",
        )
    ],
)
def area_fraction(mask: np.ndarray, context: InspectionContext, scale: float = 0.05) -> Check:
    """Fraction of the image the label covers, against the priors' range.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    context : InspectionContext
    scale : float
        Fraction of the image; a label this far outside the range scores 0.5.

    Returns
    -------
    Check
        Score 1 inside ``[min, max]``, else 1 / (1 + d / scale) with d the
        distance to the range.
    """
    mask = components.as_mask(mask)
    expected = _area_range(context.priors)
    if expected is None:
        return Check.not_applicable("area_fraction", "no expected area is set")
    low, high = expected
    fraction = np.count_nonzero(mask) / mask.size
    distance = max(low - fraction, fraction - high, 0.0)
    message = f"covers {fraction:.1%} of the image, expected {low:.0%} to {high:.0%}"
    if distance > 0:
        message += f" ({distance * 100:.1f} points too {'little' if fraction < low else 'much'})"
    return Check(
        name="area_fraction",
        score=1.0 / (1.0 + distance / scale),
        passed=distance == 0,
        message=message,
        value=fraction,
        expected=expected,
    )


def _border_segments(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, _ = components.label_segments(mask)
    return labels, components.border_labels(labels)


@register("inspect", "border_touching", params=[_TOLERANCE])
def border_touching(mask: np.ndarray, context: InspectionContext, tolerance: int = 0) -> Check:
    """Segments touching the image border, against the prior ``border_segments``.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    context : InspectionContext
        ``priors["border_segments"]``: an expected count, ``False`` (none may
        touch the border) or ``True`` (any number may).
    tolerance : int
        Counts off by at most this many pass with score 1.

    Returns
    -------
    Check
        Score 1 / (1 + max(0, |n - expected| - tolerance)); always 1 when allowed.
    """
    mask = components.as_mask(mask)
    prior = context.priors.get("border_segments")
    if prior is None:
        return Check.not_applicable("border_touching", "no expectation about the image border is set")
    _, touching = _border_segments(mask)
    n = len(touching)
    if prior is True:
        return Check("border_touching", 1.0, True, f"{_plural(n, 'segment')} touch the border (allowed)", n, True)
    target = 0 if prior is False else _prior_count(context.priors, "border_segments")
    return Check(
        name="border_touching",
        score=_count_score(n - target, tolerance),
        passed=abs(n - target) <= tolerance,
        message=_count_message(n, target, "segment") + " touching the border",
        value=n,
        expected=target,
    )


@register("inspect", "tiny_fragments")
def tiny_fragments(mask: np.ndarray, context: InspectionContext) -> Check:
    """Segments smaller than the prior ``min_segment_area`` (stray strokes, dust).

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    context : InspectionContext

    Returns
    -------
    Check
        Score 1 / (1 + k) for k fragments.
    """
    mask = components.as_mask(mask)
    min_area = _prior_count(context.priors, "min_segment_area")
    if not min_area:
        return Check.not_applicable("tiny_fragments", "no smallest segment area is set")
    _, areas = components.label_segments(mask)
    small = areas[1:][areas[1:] < min_area]
    k = len(small)
    if k == 0:
        message = f"no segment smaller than {min_area} pixels"
    else:
        pixels = _plural(int(small.sum()), "pixel")
        message = f"{_plural(k, 'segment')} smaller than {min_area} pixels ({pixels} in all)"
    return Check("tiny_fragments", 1.0 / (1.0 + k), k == 0, message, k, 0)


def _min_dice(default: float) -> Param:
    help = "Smallest Dice-Sørensen agreement (0..1) that passes."
    return Param("min_dice", float, default, low=0.0, high=1.0, help=help)


@register("inspect", "model_disagreement", params=[_min_dice(0.8)])
def model_disagreement(mask: np.ndarray, context: InspectionContext, min_dice: float = 0.8) -> Check:
    """Agreement with the model's prediction: score = DSC(label, prediction).

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    context : InspectionContext
        Not applicable when ``context.prediction`` is None.
    min_dice : float
        Smallest DSC that passes; a trained model usually reaches 0.9, so a
        label far below that deserves a second look.
    """
    mask = components.as_mask(mask)
    if context.prediction is None:
        return Check.not_applicable("model_disagreement", "no model prediction")
    dsc = dice(mask, _other_mask(mask, context.prediction, "model prediction"))
    passed = dsc >= min_dice
    message = f"agrees with the model prediction at DSC {dsc:.2f}"
    if not passed:
        message += f", expected at least {min_dice:.2f}"
    return Check("model_disagreement", dsc, passed, message, dsc, min_dice)


@register("inspect", "prelabel_change", params=[_min_dice(0.5)])
def prelabel_change(mask: np.ndarray, context: InspectionContext, min_dice: float = 0.5) -> Check:
    """Change from the pre-label the annotator started from: score = DSC(label, pre-label).

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    context : InspectionContext
        Not applicable when ``context.prelabel`` is None.
    min_dice : float
        Smallest DSC that passes. Correcting a pre-label is the point, so only
        a label that kept less than about half of it is flagged.
    """
    mask = components.as_mask(mask)
    if context.prelabel is None:
        return Check.not_applicable("prelabel_change", "no pre-label")
    dsc = dice(mask, _other_mask(mask, context.prelabel, "pre-label"))
    passed = dsc >= min_dice
    message = f"agrees with the pre-label at DSC {dsc:.2f}"
    if not passed:
        message += f", expected at least {min_dice:.2f}: the label was changed a lot"
    return Check("prelabel_change", dsc, passed, message, dsc, min_dice)


# -- combining ----------------------------------------------------------------------------------
class NothingToInspect(PluginError):
    """No check with a weight above 0 applies (no priors set, no model, no pre-label)."""


def _weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise PluginError(f"the inspection weight of '{name}' must be a number of 0 or more, got {value!r}")
    return float(value)


def inspect_label(
    mask: np.ndarray,
    context: InspectionContext,
    metrics: dict[str, dict[str, Any]],
    gamma0: float,
    *,
    registry: Registry | ProjectRegistry = REGISTRY,
) -> Report:
    """Run the weighted inspection metrics and combine them into γ(y).

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
        The label to inspect; it is not modified.
    context : InspectionContext
        Priors, pre-label and model prediction.
    metrics : dict
        ``{name: {"weight": w, **params}}``; ``weight`` (≥ 0, default 1)
        weighs the check in γ, 0 switches it off; the other keys are the
        metric's parameters.
    gamma0 : float
        Warning threshold in [0, 1]: a warning is raised when γ(y) ≤ gamma0.
    registry : Registry or ProjectRegistry, optional
        Where the metric names are looked up: a project's registry
        (:meth:`~labelassist.workflow.registry.Registry.for_project`) to reach its
        plug-ins; default the built-in steps only.

    Returns
    -------
    Report

    Raises
    ------
    PluginError
        For an unknown metric or parameter, a negative weight, weights that
        add up to 0, or when no check with a weight above 0 applies to this
        label (γ would be undefined).
    """
    mask = components.as_mask(mask)
    if isinstance(gamma0, bool) or not isinstance(gamma0, (int, float)) or not 0.0 <= gamma0 <= 1.0:
        raise PluginError(f"the inspection threshold gamma0 must be between 0 and 1, got {gamma0!r}")
    plan = []
    for name, settings in metrics.items():
        if not isinstance(settings, dict):
            raise PluginError(
                f"the settings of inspection '{name}' must be a table like {{weight = 1}}, got {settings!r}"
            )
        params = dict(settings)
        weight = _weight(name, params.pop("weight", 1.0))
        step = registry.get("inspect", name)
        plan.append((step, weight, step.resolve(params)))
    if sum(weight for _, weight, _ in plan) <= 0:
        raise PluginError("the inspection weights add up to 0; give at least one check a weight above 0")

    checks, weights = [], {}
    for step, weight, params in plan:
        if weight == 0:
            continue
        check = step.func(mask, context, **params)
        if not isinstance(check, Check) or check.name != step.name or not 0.0 <= check.score <= 1.0:
            raise PluginError(
                f"inspection '{step.name}' must return a Check named '{step.name}' with a score between 0 and 1,"
                f" got {check!r}"
            )
        checks.append(check)
        weights[step.name] = weight

    total = sum(weights[c.name] for c in checks if c.applicable)
    if total <= 0:
        skipped = "; ".join(f"{c.name}: {c.message}" for c in checks)
        raise NothingToInspect(
            f"no weighted inspection check applies to this label ({skipped}); set the priors they need"
        )
    gamma = sum(weights[c.name] * c.score for c in checks if c.applicable) / total
    return Report(score=float(gamma), gamma0=float(gamma0), checks=tuple(checks), weights=weights)


# -- where the problem is -----------------------------------------------------------------------
def _all_but_largest(labels: np.ndarray, areas: np.ndarray, keep: int) -> np.ndarray:
    order = np.argsort(-areas[1:], kind="stable") + 1
    return components.select(labels, order[keep:])


def highlight(mask: np.ndarray, check_name: str, context: InspectionContext, *,
              registry: Registry | ProjectRegistry = REGISTRY) -> np.ndarray:
    """Pixels a UI should highlight to show what a check objects to.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    check_name : str
        A registered inspection metric.
    context : InspectionContext
    registry : Registry or ProjectRegistry, optional
        Where the metric name is looked up: a project's registry
        (:meth:`~labelassist.workflow.registry.Registry.for_project`) to reach its
        plug-ins; default the built-in steps only.

    Returns
    -------
    ndarray of bool, shape (H, W)
        ``segment_count``: the segments beyond the expected number (the
        smallest ones); ``hole_count``: the holes beyond the expected number
        (the smallest); ``tiny_fragments``: the fragments; ``border_touching``:
        the segments touching the border; ``model_disagreement`` and
        ``prelabel_change``: the pixels where the label differs. Empty when
        there is nothing to point at (``area_fraction``, plug-in metrics, a
        check that passes or has no prior).
    """
    mask = components.as_mask(mask)
    registry.get("inspect", check_name)  # unknown names are an error, not an empty highlight
    none = np.zeros(mask.shape, dtype=bool)
    priors = context.priors
    if check_name == "segment_count":
        target = _prior_count(priors, "segments")
        if target is None:
            return none
        labels, areas = components.label_segments(mask)
        return _all_but_largest(labels, areas, target)
    if check_name == "hole_count":
        target = _prior_count(priors, "holes")
        if target is None:
            return none
        labels, areas = components.label_holes(mask)
        return _all_but_largest(labels, areas, target)
    if check_name == "tiny_fragments":
        min_area = _prior_count(priors, "min_segment_area")
        if not min_area:
            return none
        labels, areas = components.label_segments(mask)
        return components.select(labels, np.flatnonzero(areas < min_area))
    if check_name == "border_touching":
        labels, touching = _border_segments(mask)
        return components.select(labels, touching)
    if check_name == "model_disagreement" and context.prediction is not None:
        return mask ^ _other_mask(mask, context.prediction, "model prediction")
    if check_name == "prelabel_change" and context.prelabel is not None:
        return mask ^ _other_mask(mask, context.prelabel, "pre-label")
    return none
