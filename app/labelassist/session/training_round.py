"""One training round as the session sees it, and how its model is judged.

:class:`TrainingRound` is what the session pinned when it started the trainer: the held-out labels
(with their masks) the new model and the pre-label in use are both scored on. :func:`incumbent_scores`
scores the pre-label in use on exactly those labels; :func:`tablet_card` is the card a model
installed from the round carries (what it trained on, what it was compared with, the decision).
No database access: any thread.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelassist.session.training_rules import Decision, current_model_entry

__all__ = ["TrainingRound", "incumbent_scores", "tablet_card"]


@dataclass
class TrainingRound:
    """One round: its folder, the labels it pinned, and what the new model is compared with."""

    number: int
    folder: Path
    labelled: int
    held_out: list  # (sample, label id, mask, previous mask) the incumbent is scored on
    trained_on: list  # (sample id, label id, name)
    incumbent: str | None  # the pre-label method in use when the round started
    base: str | None  # the candidate the U-Net was warm-started from
    started: float
    process: subprocess.Popen | None = None
    outcome: Future | None = None
    stopped: str | None = None  # why the session stopped the trainer (Pause, closing): not a failure
    model_id: int | None = None  # the project's model when the round started (a change meanwhile wins)
    prompt: dict | None = None  # what tap-to-segment's decoder adapted from (RoundRequest.prompt), or None


def incumbent_scores(project, assistance, round_: TrainingRound) -> dict[int, float]:
    """DSC per held-out label id of the pre-label in use now (0 for none).

    The choice as measured now (it may have changed since the round started). Where the
    project's installed model is not that pre-label (a setting, or the learner ahead of it), each
    label keeps the better of the two: the new model replaces the installed one, so it must beat
    that too.
    """
    choice = assistance.current_choice()
    if choice is not None and choice.labelled_at:
        round_.incumbent = choice.method
    method = round_.incumbent
    scores = _scores_of(assistance, method, round_)
    if method != "onnx" and current_model_entry(project) is not None:
        installed = _scores_of(assistance, "onnx", round_)
        scores = {lid: max(v, installed.get(lid, v)) for lid, v in scores.items()}
    return scores


def _scores_of(assistance, method: str | None, round_: TrainingRound) -> dict[int, float]:
    if method is None:  # no pre-label: the user draws from nothing
        return {lid: 0.0 for _, lid, _, _ in round_.held_out}
    if method == "learned":  # its own record: each label scored before the forest learned it
        learner = assistance.learner
        scores = {} if learner is None else {s.sample: s.dice for s in learner.scores(64)}
        return {lid: scores[s.name] for s, lid, _, _ in round_.held_out if s.name in scores}
    inputs = [(s, mask, previous) for s, _, mask, previous in round_.held_out]
    evaluation = assistance._evaluate(inputs, [method])
    by_name = {r.sample: r.dice for r in evaluation.rows_of(method)}
    return {lid: by_name[s.name] for s, lid, _, _ in round_.held_out if s.name in by_name}


def tablet_card(round_: TrainingRound, card: dict[str, Any], decision: Decision, candidate: dict[int, float],
                incumbent: dict[int, float]) -> dict[str, Any]:
    """The trainer's card with what the round knows: this project's samples it trained on and held out
    (the base model's own training data kept apart), the comparison and the decision."""
    card = dict(card)
    card["training_data"] = {"trained_on": [name for _, _, name in round_.trained_on],
                             "held_out": [s.name for s, _, _, _ in round_.held_out],
                             "from_the_trainer": card.get("training_data")}
    card["tablet"] = {
        "round": round_.number, "labelled": round_.labelled,
        "trained_on_samples": [sid for sid, _, _ in round_.trained_on],
        "held_out_samples": [s.id for s, _, _, _ in round_.held_out],
        "held_out_dsc": {str(k): v for k, v in candidate.items()},
        "compared_with": {"method": round_.incumbent, "dsc": {str(k): v for k, v in incumbent.items()}},
        "decision": decision.reason, "base": round_.base,
    }
    return card
