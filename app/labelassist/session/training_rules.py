"""The rules of U-Net training on the tablet: when a round is due, how many labels it holds out,
which model it starts from and whether its model is installed. Pure functions and small file
reads; the trainer itself is :mod:`labelassist.session.training`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelassist.errors import LabelAssistError
from labelassist.project import Project

log = logging.getLogger(__name__)

#: The first label count at which a round is due; then at each doubling (5, 10, 20, 40 ...).
FIRST_ROUND_AT = 5
#: Seconds without input on the canvas after which an idle round may start.
IDLE_S = 120.0
#: No idle round within this many seconds of the last round's start.
MIN_GAP_S = 300.0
#: The held-out labels are scored by both models on at most this many images.
MAX_HELD_OUT = 8
#: A new model must match the held-out labels better by this much mean DSC.
INSTALL_MARGIN = 0.01


# -- the schedule and the decision: pure functions ---------------------------------------------


def milestones(up_to: int) -> list[int]:
    """The label counts at which a round is due, up to ``up_to``: 5, 10, 20, 40 ..."""
    out, m = [], FIRST_ROUND_AT
    while m <= up_to:
        out.append(m)
        m *= 2
    return out


def round_due(labelled: int, last_round_labelled: int, idle_s: float) -> bool:
    """Whether a training round is due with ``labelled`` labels.

    Parameters
    ----------
    labelled : int
        Labelled samples now.
    last_round_labelled : int
        Labelled samples when the last round started (0 before any).
    idle_s : float
        Seconds since the last input on the canvas (0 right after a save).

    Returns
    -------
    bool
        True when a milestone (5, 10, 20, 40 ...) was passed since the last round, or the
        tablet has been idle for :data:`IDLE_S` with at least ``max(3, 25 %)`` new labels.
    """
    if labelled < FIRST_ROUND_AT:
        return False
    if any(m > last_round_labelled for m in milestones(labelled)):
        return True
    new = labelled - last_round_labelled
    return idle_s >= IDLE_S and new >= max(3, math.ceil(0.25 * last_round_labelled))


def held_out_count(labelled: int) -> int:
    """How many of the newest labels a round holds out to compare the models on: 2 of 5, 8 of 40."""
    return min(MAX_HELD_OUT, max(2, labelled // 5))


@dataclass(frozen=True)
class Decision:
    """Whether a trained model is installed, and why in plain words."""

    install: bool
    reason: str
    candidate_mean: float | None = None
    incumbent_mean: float | None = None
    labels: int = 0


def _percent(value: float, digits: int = 0) -> str:
    return f"{100 * value:.{digits}f} %"


def should_install(candidate: dict[int, float], incumbent: dict[int, float],
                   margin: float = INSTALL_MARGIN) -> Decision:
    """Install the new model only when it matches the same held-out labels better by ``margin``.

    Parameters
    ----------
    candidate, incumbent : dict
        DSC per held-out label id of the new model and of the pre-label used now. Only labels
        both were scored on count (paired comparison).
    """
    # A score that is not a number (a model that gave NaN) is no evidence either way.
    candidate = {k: v for k, v in candidate.items() if math.isfinite(v)}
    incumbent = {k: v for k, v in incumbent.items() if math.isfinite(v)}
    common = sorted(set(candidate) & set(incumbent))
    if len(common) < 2:
        return Decision(False, f"too few of your newest labels to compare on ({len(common)}, at least 2)",
                        labels=len(common))
    c = float(np.mean([candidate[k] for k in common]))
    i = float(np.mean([incumbent[k] for k in common]))
    n = len(common)
    # Two figures a point or less apart get a decimal: "98.6 %" and "98.4 %", never "99 %" and "98 %".
    digits = 1 if abs(c - i) < 0.02 else 0
    new_, old_ = _percent(c, digits), _percent(i, digits)
    if c >= i + margin:
        return Decision(True, f"the new model matches your newest {n} labels at {new_}, the pre-label used "
                              f"until now at {old_}", c, i, n)
    if c > i:
        return Decision(False, f"the current pre-label stays: the new model matches your newest {n} labels "
                               f"at {new_}, the current one at {old_}; a change needs at least "
                               f"{_percent(margin)} more", c, i, n)
    return Decision(False, f"the current pre-label stays: it matches your newest {n} labels at {old_}, "
                           f"the new model at {new_}", c, i, n)


def current_model_entry(project: Project):
    """The history entry of the project's model now, or None (none, or a history that does not read)."""
    from labelassist.models import history  # ONNX Runtime: off the start-up path

    try:
        return history.current_entry(project)
    except LabelAssistError as exc:
        log.warning("the project's model history is not read: %s", exc)
        return None


@dataclass(frozen=True)
class TrainedOn:
    """What a project's model was trained on: sample ids (a tablet model's card) and image names (the
    card of a model trained elsewhere from this project's training job)."""

    ids: frozenset = frozenset()
    names: frozenset = frozenset()

    def __contains__(self, sample) -> bool:
        return sample.id in self.ids or sample.name in self.names


def trained_on(entry, project_name: str | None = None) -> TrainedOn:
    """The samples the model of a history entry was trained on, as far as its card says.

    Image names count only from a card that names this project (``training_data.project``, as a
    training job's card does): another data set's names (a shipped model's) say nothing about
    this project's images, however alike.
    """
    if entry is None:
        return TrainedOn()
    try:
        card = json.loads(entry.onnx.with_suffix(".json").read_text(encoding="utf-8"))
        ids = frozenset(int(s) for s in (card.get("tablet") or {}).get("trained_on_samples", []))
        data = card.get("training_data") if isinstance(card.get("training_data"), dict) else {}
        ours = bool(card.get("tablet")) or (project_name is not None and data.get("project") == project_name)
        names = frozenset(str(n) for key in ("trained_on", "train_images", "validation_images")
                          for n in (data.get(key) or []) if isinstance(n, str)) if ours else frozenset()
        return TrainedOn(ids, names)
    except (OSError, ValueError, TypeError, AttributeError):
        return TrainedOn()


def unet_fp32_path(project: Project, method: str) -> Path | None:
    """The full-precision ONNX U-Net of a candidate, to fine-tune from; None when it is not one."""
    from labelassist import models
    from labelassist.models.card import card_path, read_card

    path = None
    if method.startswith("shipped:"):
        entry = models.shipped_models().get(method.split(":", 1)[1])
        if entry is not None:
            path = models.SHIPPED_DIR / entry["fp32"]
    elif method == "onnx":
        current = current_model_entry(project)
        if current is not None:
            fp32 = current.onnx.with_name("model.fp32.onnx")
            path = fp32 if fp32.is_file() else current.onnx
    if path is None or not path.is_file():
        return None
    try:
        card = read_card(card_path(path))
    except LabelAssistError:
        return None
    if (card.raw.get("architecture") or {}).get("type") != "unet" or card.raw.get("precision") == "int8":
        return None
    return path

