"""Tap-to-segment that learns the project's objects: the adapted prompt decoder, kiosk side.

Each U-Net training round (:mod:`labelassist.session.training`) also adapts LiteMedSAM's prompt
decoder to the project's labelled objects when the box-prompt model is installed and in use
(:mod:`labelassist.training.prompt_round`, in the trainer process). The round scores the decoder
in use and the adapted one on the same held-out labels, per object, with each object's box and
with one tap at its interior point. :func:`should_install_prompt` decides; an adapted decoder is
kept in the project's prompt-model history (``PROJECT/models/prompt/``,
:func:`labelassist.models.history.prompt_model_place`), whose ``current.json`` is the one switch,
and tap-to-segment uses it at once (:meth:`~labelassist.session.box_assistance.BoxAssistance.prompt_model_changed`).

No database writes here except deferred events.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelassist.errors import LabelAssistError
from labelassist.fileio import file_hash
from labelassist.session.training_rules import trained_on

log = logging.getLogger(__name__)

__all__ = ["PROMPT_BUDGET_SHARE", "PROMPT_MARGIN", "PromptDecision", "PromptModels", "should_install_prompt"]

#: The prompt decoder adapts for this share of the U-Net's budget (60 s beside its 90 s), its
#: embeddings and export included.
PROMPT_BUDGET_SHARE = 2 / 3
#: At most this many of the round's training labels, the newest: the issue's "at most 10 images".
PROMPT_MAX_IMAGES = 10
#: Seconds of budget per training image: its embedding (about a second on one thread) and the
#: steps that learn from it. A short round adapts on fewer images.
PROMPT_SECONDS_PER_IMAGE = 6.0
#: Objects per held-out image the two decoders are compared on (both prompt kinds, each).
PROMPT_OBJECTS_PER_IMAGE = 12
#: The adapted decoder must be better by this much per object on one prompt kind, and no worse by
#: more than this on the other.
PROMPT_MARGIN = 0.01
WEIGHTS_FILE = "litemedsam_decoder_weights.npz"
#: An adapted decoder's torch state, kept beside it in the history: the next round starts from it.
ADAPTED_WEIGHTS = "weights.npz"


@dataclass(frozen=True)
class PromptDecision:
    """Whether the adapted decoder replaces the one in use, and why in plain words."""

    install: bool
    reason: str


def _fmt(value: float) -> str:
    return f"{100 * value:.0f} %"


def should_install_prompt(before: dict, after: dict, margin: float = PROMPT_MARGIN) -> PromptDecision:
    """Compare two decoders' per-object scores on the same held-out objects.

    Parameters
    ----------
    before, after : dict
        ``{"box": mean DSC, "point": mean DSC, "objects": n}`` of the decoder in use and of
        the adapted one (:func:`labelassist.training.prompt_adapt.score_prompt_decoder`).
    margin : float
        The adapted one is installed when it is better by at least ``margin`` on one prompt
        kind (box or tap) and not worse by more than ``margin`` on the other.

    Returns
    -------
    PromptDecision
    """
    kinds = ("box", "point")
    try:
        b = {k: float(before[k]) for k in kinds}
        a = {k: float(after[k]) for k in kinds}
        objects = int(after.get("objects", 0))
    except (KeyError, TypeError, ValueError):
        return PromptDecision(False, "the scores of tap-to-segment could not be read")
    if objects <= 0 or not all(math.isfinite(v) for v in (*b.values(), *a.values())):
        return PromptDecision(False, "no held-out object to compare tap-to-segment on")
    words = (f"boxes {_fmt(a['box'])} against {_fmt(b['box'])}, taps {_fmt(a['point'])} against "
             f"{_fmt(b['point'])} on {objects} objects of your newest labels")
    better = [k for k in kinds if a[k] >= b[k] + margin]
    worse = [k for k in kinds if a[k] < b[k] - margin]
    if better and not worse:
        return PromptDecision(True, f"tap-to-segment learned your objects: {words}")
    return PromptDecision(False, f"tap-to-segment kept as it was: {words}")


def _check_decoder(segmenter) -> None:
    """A decoder must answer a box and a tap with finite logits of the frame's size (the trainer's
    own scores are not enough: the kiosk runs the file itself before it switches to it)."""
    import numpy as np

    from labelassist.models.box_prompt import BoxEmbedding

    embedding = BoxEmbedding(np.zeros((1, 256, 64, 64), np.float32), (256, 256), 0.0)
    for prompt in ({"box": (64, 64, 192, 192)}, {"points": [(128, 128)]}):
        try:
            logits = np.asarray(segmenter.logits(embedding, **prompt))
        except Exception as exc:  # noqa: BLE001 - whatever the graph does, it is not installed
            raise LabelAssistError(f"it does not run ({type(exc).__name__})") from exc
        if logits.shape != (segmenter.side, segmenter.side) or not np.isfinite(logits).all():
            raise LabelAssistError(f"it answers {logits.shape} logits, not finite ones of "
                                   f"{segmenter.side}x{segmenter.side}")


class PromptModels:
    """The project's adapted tap-to-segment decoders: what a round adapts from, and the installs.

    Parameters
    ----------
    project : Project
    author : str or None
        Recorded with the events.
    boxes : BoxAssistance
        Finds the installed LiteMedSAM and is told when the decoder changed.
    """

    def __init__(self, project, author: str | None, boxes):
        self.project, self.author, self.boxes = project, author, boxes
        self.store = project.store

    def _place(self):
        from labelassist.models import history

        return history.prompt_model_place(self.project)

    def current_entry(self):
        """The adapted decoder in use (a history entry), or None (LiteMedSAM's own decoder)."""
        from labelassist.models import history

        try:
            return history.current_entry(self._place())
        except LabelAssistError as exc:
            log.warning("the adapted tap-to-segment model is not used: %s", exc)
            return None

    def history(self) -> list:
        from labelassist.models import history

        try:
            return history.model_history(self._place())
        except LabelAssistError as exc:
            log.warning("the tap-to-segment model history is not read: %s", exc)
            return []

    def round_config(self, budget_s: float, force: bool = False) -> dict[str, Any] | None:
        """What a round of ``budget_s`` seconds (the U-Net's) adapts from (``RoundRequest.prompt``), or
        None when tap-to-segment does not run the box-prompt model here (not installed, GrabCut
        chosen, or no base weights) or has never been used in this project (no tablet time is
        spent on a tool nobody taps with) unless ``force`` (``labelassist learn``)."""
        if self.project.settings["prelabel"]["box_method"] == "grabcut":
            return None
        if not force and not self.boxes.segment_used():
            return None
        segmenter = self.boxes.base_segmenter()
        if segmenter is None:
            return None
        weights = Path(segmenter.decoder_path).with_name(WEIGHTS_FILE)
        if not weights.is_file():
            log.info("tap-to-segment does not learn: %s is missing (make litemedsam)", weights)
            return None
        entry = self.boxes.prompt_entry()  # what runs: a broken adapted decoder is not adapted from
        decoder = Path(segmenter.decoder_path) if entry is None else entry.onnx
        weights_from = None
        if entry is not None and (entry.onnx.parent / ADAPTED_WEIGHTS).is_file():
            weights = entry.onnx.parent / ADAPTED_WEIGHTS  # adaptation goes on from where it got to
            weights_from = entry.id
        budget = PROMPT_BUDGET_SHARE * float(budget_s)
        images = max(2, min(PROMPT_MAX_IMAGES, int(budget // PROMPT_SECONDS_PER_IMAGE)))
        return {"encoder": str(segmenter.encoder_path), "decoder": str(decoder), "weights": str(weights),
                "model_id": None if entry is None else entry.id, "weights_from": weights_from,
                "budget_s": round(budget, 1),
                "max_images": images, "objects_per_image": PROMPT_OBJECTS_PER_IMAGE}

    def consider(self, round_number: int, folder: Path, config: dict | None, outcome: dict | None,
                 closed) -> dict[str, Any] | None:
        """The round's adapted decoder installed when it measures better; returns what happened
        (``{"status", "reason", ...}``, kept with the round's event), None when it did not adapt."""
        if config is None or outcome is None:
            return None
        if outcome.get("status") != "ok":
            return {"status": "failed", "reason": str(outcome.get("reason", "tap-to-segment did not learn"))}
        current = self.boxes.prompt_entry()
        if (None if current is None else current.id) != config.get("model_id"):
            return {"status": "stopped", "reason": "stopped: the tap-to-segment model changed during training"}
        decision = should_install_prompt(outcome.get("before", {}), outcome.get("after", {}))
        details = {"status": "installed" if decision.install else "kept", "reason": decision.reason,
                   "before": outcome.get("before"), "after": outcome.get("after")}
        if decision.install:
            try:
                details["model_id"] = self._install(round_number, Path(folder), config, outcome, decision, closed)
            except LabelAssistError as exc:
                log.warning("training round %d: the adapted tap-to-segment model: %s", round_number, exc)
                details.update(status="failed", reason=f"tap-to-segment's new model was not installed: {exc}")
        return details

    def _install(self, round_number: int, folder: Path, config: dict, outcome: dict, decision: PromptDecision,
                 closed) -> int:
        from labelassist.models import history

        onnx = folder / str(outcome.get("onnx", ""))
        if not onnx.is_file() or file_hash(onnx) != outcome.get("sha256"):
            raise LabelAssistError("its file is not the one the trainer scored")
        name = str(outcome.get("weights") or "")
        weights = folder / name
        extra = {}
        if name and Path(name).name == name and weights.is_file() and file_hash(weights) == outcome.get("weights_sha256"):
            extra = {ADAPTED_WEIGHTS: weights}  # else the next round starts again from LiteMedSAM's own
        segmenter = self.boxes.base_segmenter()
        if segmenter is None:
            raise LabelAssistError("LiteMedSAM is no longer installed")
        _check_decoder(segmenter.with_decoder(onnx))  # loads it, and runs a box and a tap
        # What it learned from, over every round it went on from (the evaluation leaves it all out).
        earlier = trained_on(self.boxes.prompt_entry(), self.project.name) if config.get("weights_from") else None
        samples = sorted(set(outcome.get("trained_on_samples", [])) | set(earlier.ids if earlier else ()))
        names = sorted(set(outcome.get("trained_on_names", [])) | set(earlier.names if earlier else ()))
        card = {"name": "litemedsam-adapted", "version": f"round {round_number}", "task": "prompt_decoder",
                "base": str(Path(segmenter.decoder_path).name), "replaced_sha256": outcome.get("in_use_sha256"),
                "tablet": {"round": round_number, "trained_on_samples": samples},
                "training_data": {"project": self.project.name, "trained_on": names},
                "held_out": {"before": outcome.get("before"), "after": outcome.get("after")},
                "adapt": outcome.get("adapt", {})}
        if closed():
            raise LabelAssistError("the session closed during the comparison")
        entry = history.add_model(self._place(), onnx, card, "tablet", decision.reason, extra=extra,
                                  expected_sha256=outcome.get("sha256"))
        history.activate(self._place(), entry.id, decision.reason)
        self.boxes.prompt_model_changed()
        self.store.defer_event("prompt_model_install", actor=self.author, model_id=entry.id,
                               version=entry.version, reason=decision.reason)
        return entry.id

    def roll_back(self, entry_id: int | None) -> None:
        """Use an earlier adapted decoder (its history id), or LiteMedSAM's own (None)."""
        from labelassist.models import history

        ids = {e.id for e in self.history()}
        if entry_id is not None and entry_id not in ids:
            raise LabelAssistError(f"there is no tap-to-segment model {entry_id} in this project's history")
        reason = "rolled back by the user" if entry_id is not None else "LiteMedSAM's own decoder chosen by the user"
        history.activate(self._place(), entry_id, reason)
        self.boxes.prompt_model_changed()
        self.store.defer_event("prompt_model_rollback", actor=self.author, model_id=entry_id)
