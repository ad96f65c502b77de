"""Post-assistance of a finished mask, before it is saved: inspection γ(y), post-processing
suggestions, and the regions a failed check points at.

Pure functions of the project settings and the masks: nothing here reads or writes the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from labelassist.errors import LabelAssistError
from labelassist.store import Sample
from labelassist.workflow import inspection
from labelassist.workflow import postprocess
from labelassist.workflow.registry import REGISTRY, ProjectRegistry, Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    """What post-assistance says about a finished mask, before it is saved.

    Attributes
    ----------
    report : Report or None
        Inspection γ(y); None when no check applies to this project yet (no
        priors, no model, no pre-label).
    suggestions : list of Suggestion
        Post-processing results that would change the mask, each with its
        before/after summary; the UI shows them for accept or reject.
    note : str
        Why there is no report, when there is none.
    """

    report: inspection.Report | None
    suggestions: list[postprocess.Suggestion]
    note: str = ""

    @property
    def warning(self) -> bool:
        return self.report is not None and self.report.warning


def inspection_metrics(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{metric: {"weight": w, **params}}`` from the project settings."""
    section = settings["inspection"]
    return {name: {"weight": w, **section["params"].get(name, {})}
            for name, w in section["weights"].items()}


def inspect(settings: dict[str, Any], mask: np.ndarray, prelabel: np.ndarray | None = None,
            prediction: np.ndarray | None = None, *,
            registry: Registry | ProjectRegistry = REGISTRY) -> inspection.Report | None:
    """γ(y) of a mask against the project's priors; None when no check applies.

    Parameters
    ----------
    settings : dict
        The project settings (``priors`` and ``inspection``).
    mask : ndarray of bool
    prelabel, prediction : ndarray of bool, optional
        The pre-label the mask started from and the project model's mask, for the checks
        that compare with them.
    """
    context = inspection.InspectionContext(priors=settings["priors"], prelabel=prelabel, prediction=prediction)
    try:
        return inspection.inspect_label(mask, context, inspection_metrics(settings),
                                         float(settings["inspection"]["gamma0"]), registry=registry)
    except inspection.NothingToInspect:
        return None


def review(settings: dict[str, Any], sample: Sample, mask: np.ndarray, prelabel: np.ndarray | None = None,
           prediction: np.ndarray | None = None, *,
           registry: Registry | ProjectRegistry = REGISTRY) -> Submission:
    """Inspect a finished mask of ``sample`` and list post-processing suggestions; nothing is saved.

    A mask of another size than the sample is refused with a :class:`LabelAssistError`.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (sample.height, sample.width):
        raise LabelAssistError(f"the mask is {mask.shape[1]}x{mask.shape[0]} but {sample.name} is "
                               f"{sample.width}x{sample.height}")
    report = inspect(settings, mask, prelabel=prelabel, prediction=prediction, registry=registry)
    suggestions = postprocess.suggest(mask, settings["postprocess"]["suggest"], registry=registry)
    note = "" if report is not None else "no check applies yet: set the expected segments or holes"
    return Submission(report, suggestions, note)


def highlight(settings: dict[str, Any], mask: np.ndarray, check_names: list[str],
              prelabel: np.ndarray | None = None, prediction: np.ndarray | None = None, *,
              registry: Registry | ProjectRegistry = REGISTRY) -> np.ndarray:
    """The pixels the named failed checks object to, together ("Fix it" shows them on the canvas).

    Parameters
    ----------
    settings : dict
        The project settings (``priors``).
    mask : ndarray of bool
    check_names : list of str
        Inspection metrics, e.g. ``["segment_count"]``.
    prelabel, prediction : ndarray of bool, optional
        As for :func:`inspect`.

    Returns
    -------
    ndarray of bool
        The union of each check's highlight; a check that cannot point at pixels (a plug-in
        metric without a highlight) adds nothing and is logged.
    """
    mask = np.asarray(mask, dtype=bool)
    context = inspection.InspectionContext(priors=settings["priors"], prelabel=prelabel, prediction=prediction)
    regions = np.zeros_like(mask)
    for name in check_names:
        try:
            regions |= inspection.highlight(mask, name, context, registry=registry)
        except Exception:  # noqa: BLE001 - a plug-in metric without highlight
            log.warning("no highlight for %s", name, exc_info=True)
    return regions
