"""Post-assistance of a finished mask, before it is saved: inspection γ(y) and post-processing suggestions.

Pure functions of the project settings and the masks: nothing here reads or writes the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labelassist.errors import LabelAssistError
from labelassist.store import Sample
from labelassist.workflow import inspect as inspect_mod
from labelassist.workflow import postprocess


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

    report: inspect_mod.Report | None
    suggestions: list[postprocess.Suggestion]
    note: str = ""

    @property
    def warning(self) -> bool:
        return self.report is not None and self.report.warning


def inspection_metrics(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{metric: {"weight": w, **params}}`` from the project settings."""
    inspection = settings["inspection"]
    return {name: {"weight": w, **inspection["params"].get(name, {})}
            for name, w in inspection["weights"].items()}


def inspect(settings: dict[str, Any], mask: np.ndarray, prelabel: np.ndarray | None = None,
            prediction: np.ndarray | None = None) -> inspect_mod.Report | None:
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
    context = inspect_mod.InspectionContext(priors=settings["priors"], prelabel=prelabel, prediction=prediction)
    try:
        return inspect_mod.inspect_label(mask, context, inspection_metrics(settings),
                                         float(settings["inspection"]["gamma0"]))
    except inspect_mod.NothingToInspect:
        return None


def review(settings: dict[str, Any], sample: Sample, mask: np.ndarray, prelabel: np.ndarray | None = None,
           prediction: np.ndarray | None = None) -> Submission:
    """Inspect a finished mask of ``sample`` and list post-processing suggestions; nothing is saved.

    A mask of another size than the sample is refused with a :class:`LabelAssistError`.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (sample.height, sample.width):
        raise LabelAssistError(f"the mask is {mask.shape[1]}x{mask.shape[0]} but {sample.name} is "
                               f"{sample.width}x{sample.height}")
    report = inspect(settings, mask, prelabel=prelabel, prediction=prediction)
    suggestions = postprocess.suggest(mask, settings["postprocess"]["suggest"])
    note = "" if report is not None else "no check applies yet: set the expected segments or holes"
    return Submission(report, suggestions, note)
