"""The results of workflow steps: what a pre-label, a post-processing and an inspection step return.

They live below the registry and the step modules: :mod:`~labelassist.workflow.plugin_results`
checks a plug-in step's result against them, and the step modules
(:mod:`~labelassist.workflow.prelabel`, :mod:`~labelassist.workflow.postprocess`,
:mod:`~labelassist.workflow.inspection`) build them, so neither imports the other.

* :class:`Prelabel`: what a pre-label step l(x) returns;
* :class:`Change`: what a post-processing step p(y) returns beside the new mask;
* :class:`Check`: what an inspection metric g(y) returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labelassist.errors import PluginError
from labelassist.workflow import components

__all__ = ["Change", "Check", "Prelabel"]


@dataclass(frozen=True)
class Prelabel:
    """The result of a pre-label step.

    Attributes
    ----------
    mask : ndarray of bool, shape (H, W)
        Proposed foreground.
    probability : ndarray of float32, shape (H, W), or None
        Per-pixel foreground probability in [0, 1] when the method has one
        (a model), else None.
    method : str
        Name of the step that made it.
    note : str
        A sentence for the UI about the result, empty when there is nothing to say
        (``previous`` at a sequence start says why the frame starts empty).
    is_placeholder : bool
        True when the step had nothing to offer and the mask is an empty stand-in
        rather than a proposal (``previous`` at a sequence start), so the session
        does not treat it as a pre-label the annotator started from.
    """

    mask: np.ndarray
    probability: np.ndarray | None
    method: str
    note: str = ""
    is_placeholder: bool = False


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class Change:
    """What a post-processing step changed in a mask.

    Attributes
    ----------
    added, removed : int
        Pixels switched to foreground / to background.
    segments_before, segments_after : int
        Number of 8-connected segments.
    holes_before, holes_after : int
        Number of holes (enclosed background regions).
    """

    added: int
    removed: int
    segments_before: int
    segments_after: int
    holes_before: int
    holes_after: int

    @classmethod
    def between(cls, before: np.ndarray, after: np.ndarray) -> "Change":
        """Measure the change from mask ``before`` to mask ``after`` (same shape, bool)."""
        before = components.as_mask(before)
        after = components.as_mask(after)
        if before.shape != after.shape:
            raise PluginError(f"a post-processing step changed the mask size from {before.shape} to {after.shape}")
        diff = before ^ after
        added = int(np.count_nonzero(diff & after))
        segments_before, holes_before = components.count_segments_and_holes(before)
        segments_after, holes_after = components.count_segments_and_holes(after)
        return cls(
            added=added,
            removed=int(np.count_nonzero(diff)) - added,
            segments_before=segments_before,
            segments_after=segments_after,
            holes_before=holes_before,
            holes_after=holes_after,
        )

    @property
    def changed(self) -> bool:
        """True when at least one pixel differs."""
        return self.added > 0 or self.removed > 0

    def describe(self) -> str:
        """One plain sentence, e.g. ``"filled 3 holes (412 pixels)"``."""
        if not self.changed:
            return "no change"
        what = []
        if self.holes_after < self.holes_before:
            what.append("filled " + _plural(self.holes_before - self.holes_after, "hole"))
        elif self.holes_after > self.holes_before:
            what.append("opened " + _plural(self.holes_after - self.holes_before, "hole"))
        fewer = self.segments_before - self.segments_after
        if fewer > 0 and self.added == 0:
            what.append("removed " + _plural(fewer, "segment"))
        elif fewer > 0:
            what.append(_plural(fewer, "segment") + " fewer")
        elif fewer < 0:
            what.append(_plural(-fewer, "segment") + " more")
        if not what:
            what.append("changed the outline")
        if self.added and self.removed:
            pixels = f"{self.added} pixels added, {self.removed} removed"
        else:
            pixels = _plural(self.added or self.removed, "pixel")
        return f"{', '.join(what)} ({pixels})"


@dataclass(frozen=True)
class Check:
    """The result of one inspection metric.

    Attributes
    ----------
    name : str
        Registered name of the metric.
    score : float
        γ_j in [0, 1]; 1 means the label is as expected.
    passed : bool
        Whether the label meets the expectation.
    message : str
        Plain words for the annotator, e.g. ``"3 segments, expected 2 (1 too many)"``.
    value : Any
        What was measured (a count, a fraction, a DSC).
    expected : Any
        What was expected (a count, a ``(min, max)`` pair, a smallest DSC).
    applicable : bool
        False when the check could not be made (no prior, no prediction...);
        such a check has score 1, passes, and is left out of γ.
    """

    name: str
    score: float
    passed: bool
    message: str
    value: Any = None
    expected: Any = None
    applicable: bool = True

    @classmethod
    def not_applicable(cls, name: str, message: str) -> "Check":
        """A check that could not be made, with the reason as ``message``."""
        return cls(name=name, score=1.0, passed=True, message=message, applicable=False)
