"""Save & next of one finished mask, as a state machine without a GUI.

One :class:`SaveFlow` per tap on "Save & next"::

    start ──► SUGGESTION ──accept / reject each──┐
      │       (post-processing, one at a time)   │ re-inspect when one was accepted
      └──────────── none ────────────────────────┤
                                                 ▼
                     no warning ◄──── inspection γ(y) ────► WARNING
                         │                                  │     │
                         │              save anyway ◄───────┘     └── fix ──► FIX
                         ▼                   │                        (back to labelling with the
                       save ◄────────────────┘                         regions highlighted)
                         │
          SAVED (next sample, or None) · SAVE_FAILED · OPEN_FAILED

"Nothing to show the user" is the same machine going straight through: :meth:`SaveFlow.start`
returns SAVED. Each method for a user's choice returns the new :class:`Review`, the frozen
data a screen renders; the flow never calls a screen. The UI's session worker drives it on its
thread (:meth:`labelassist.ui.session_worker.SessionWorker.review`).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from labelassist.errors import LabelAssistError
from labelassist.workflow import inspection
from labelassist.workflow.postprocess import Suggestion

log = logging.getLogger(__name__)

# Checks that compare with another mask would highlight most of a label redrawn by hand:
# "Fix it" points at segments and holes first.
WHOLE_MASK_CHECKS = ("prelabel_change", "model_disagreement")


def plain_message(exc: BaseException) -> str:
    """One sentence for the screen: our own errors say what happened; others point at the log."""
    if isinstance(exc, LabelAssistError):
        return str(exc)
    return "Something went wrong. Nothing you saved was lost. The details are in the log file."


class Step(Enum):
    """Where the review of one mask stands."""

    SUGGESTION = "suggestion"    # a post-processing suggestion waits for accept or reject
    WARNING = "warning"          # the inspection warns: "Fix it" or "Save anyway"
    FIX = "fix"                  # back to labelling, the regions to fix highlighted (the flow ends)
    SAVED = "saved"              # saved, the next sample opened (the flow ends)
    SAVE_FAILED = "save_failed"  # nothing saved, the mask stays on screen (the flow ends)
    OPEN_FAILED = "open_failed"  # saved, but the next sample could not be opened (the flow ends)


class Choice(Enum):
    """What the user can answer."""

    ACCEPT = "accept"
    REJECT = "reject"
    FIX = "fix"
    SAVE_ANYWAY = "save_anyway"


@dataclass(frozen=True, eq=False)
class SubmitMask:
    """A request: review (and, when nothing needs the user, save) this mask."""

    sample_id: int
    mask: np.ndarray
    strokes: int = 0


@dataclass(frozen=True)
class Answer:
    """A request: the user's choice on the review ``review_id`` (stale answers are ignored).

    ``checks`` names the checks to fix (a "Fix it" on one row); empty: the flow chooses.
    ``state`` is the :attr:`Review.state` the user saw: an answer to an earlier state (a quick
    second tap on Accept arriving after the next suggestion was entered) changes nothing, so no
    suggestion is ever accepted or rejected unseen.
    """

    review_id: int
    choice: Choice
    checks: tuple[str, ...] = ()
    state: int = 0


@dataclass(frozen=True, eq=False)  # compared by identity: the masks are arrays
class Review:
    """What the screens render for one state of the flow.

    Attributes
    ----------
    review_id : int
        Which flow this is (answers carry it back).
    state : int
        Which state of that flow (answers carry it back too).
    step : Step
    sample_id : int
    mask : ndarray of bool
        The mask as it stands, accepted suggestions included (the label layer shows it).
    before : ndarray of bool
        The mask as submitted (the post-processing screen's "before").
    suggestions : tuple of Suggestion
        Every suggestion of the submission; ``index`` is the one waiting (SUGGESTION).
    index : int
    report : Report or None
        The inspection of ``mask`` (WARNING; kept with the saved version).
    highlight : ndarray of bool or None
        What the failed checks point at (FIX).
    label_id : int or None
        The saved version (SAVED, OPEN_FAILED).
    next : Assisted or None
        The next sample (SAVED; None when every sample is labelled).
    error : str
        A plain sentence (SAVE_FAILED, OPEN_FAILED).
    """

    review_id: int
    state: int
    step: Step
    sample_id: int
    mask: np.ndarray = field(repr=False)
    before: np.ndarray = field(repr=False)
    suggestions: tuple[Suggestion, ...] = ()
    index: int = 0
    report: inspection.Report | None = None
    highlight: np.ndarray | None = field(default=None, repr=False)
    label_id: int | None = None
    next: Any = None
    error: str = ""

    @property
    def suggestion(self) -> Suggestion | None:
        """The suggestion waiting for an answer (SUGGESTION), else None."""
        return self.suggestions[self.index] if self.step is Step.SUGGESTION else None

    @property
    def finished(self) -> bool:
        """No answer is expected any more: the user is back on the Label screen."""
        return self.step in (Step.FIX, Step.SAVED, Step.SAVE_FAILED, Step.OPEN_FAILED)


_review_ids = itertools.count(1)


class SaveFlow:
    """The review of one finished mask, from "Save & next" to the next sample.

    Parameters
    ----------
    session : Session
        Called on the caller's thread (the session worker's); never from two threads.
    sample_id : int
    mask : ndarray of bool
        The mask on screen (copied).
    strokes : int
        Stroke count kept with the saved version.
    """

    def __init__(self, session, sample_id: int, mask: np.ndarray, strokes: int = 0):
        self.session = session
        self.review_id = next(_review_ids)
        self.sample_id = sample_id
        self.before = np.array(mask, dtype=bool, copy=True)
        self.mask = self.before.copy()
        self.strokes = strokes
        self.suggestions: tuple[Suggestion, ...] = ()
        self.index = 0
        self.accepted_any = False
        self.report: inspection.Report | None = None
        self.state: Review | None = None
        self.states = 0  # how many states were entered (Review.state)

    # -- the user's choices ---------------------------------------------------------------
    def start(self) -> Review:
        """Inspect and list the suggestions; with nothing to show, save and open the next sample.

        A failed submission (a mask of the wrong size, a broken plug-in) raises: nothing was saved.
        """
        submission = self.session.submit(self.sample_id, self.mask)
        self.report = submission.report
        self.suggestions = tuple(submission.suggestions)
        if self.suggestions:
            return self._enter(Step.SUGGESTION)
        return self._after_suggestions()

    def accept(self) -> Review:
        """Take the waiting suggestion's changes into the mask, then the next step."""
        if self._waiting_for() is not Step.SUGGESTION:
            return self.state
        suggestion = self.suggestions[self.index]
        # Each suggestion was computed on the submitted mask: take the pixels it changes, so
        # that every accepted suggestion stays in the mask, not only the last one.
        changed = suggestion.mask != self.before
        self.mask = np.where(changed, suggestion.mask, self.mask)
        self.accepted_any = True
        return self._advance()

    def reject(self) -> Review:
        """Leave the mask as it is, then the next step."""
        if self._waiting_for() is not Step.SUGGESTION:
            return self.state
        return self._advance()

    def fix(self, checks: tuple[str, ...] | list[str] = ()) -> Review:
        """Back to labelling with what the failed checks (``checks``; default: those that point
        at segments or holes, else all) object to highlighted."""
        if self._waiting_for() is not Step.WARNING:
            return self.state
        names = list(checks)
        if not names:
            failed = [c.name for c in self.report.failed]
            names = [n for n in failed if n not in WHOLE_MASK_CHECKS] or failed
        regions = self.session.highlight(self.sample_id, self.mask, names)
        return self._enter(Step.FIX, highlight=regions)

    def save_anyway(self) -> Review:
        """Save despite the warning (the session records it as such), then open the next sample."""
        if self._waiting_for() is not Step.WARNING:
            return self.state
        log.info("saved despite the inspection warning (γ=%.2f): %s", self.report.score,
                 "; ".join(c.message for c in self.report.failed))
        return self._save()

    def answer(self, answer: Answer) -> Review:
        """Dispatch a frozen :class:`Answer` to the method for its choice; an answer to another
        flow, or one that does not fit the current state (a second tap), changes nothing."""
        if answer.review_id != self.review_id or self.state is None or answer.state != self.state.state:
            return self.state
        if answer.choice is Choice.ACCEPT:
            return self.accept()
        if answer.choice is Choice.REJECT:
            return self.reject()
        if answer.choice is Choice.FIX:
            return self.fix(answer.checks)
        return self.save_anyway()

    # -- the steps --------------------------------------------------------------------------
    def _waiting_for(self) -> Step | None:
        return None if self.state is None else self.state.step

    def _advance(self) -> Review:
        self.index += 1
        if self.index < len(self.suggestions):
            return self._enter(Step.SUGGESTION)
        return self._after_suggestions()

    def _after_suggestions(self) -> Review:
        if self.accepted_any:
            try:
                self.report = self.session.reinspect(self.sample_id, self.mask)
            except Exception as exc:  # noqa: BLE001 - the accepted changes stay on screen, unsaved
                log.error("re-inspection of sample %s failed", self.sample_id, exc_info=exc)
                return self._enter(Step.SAVE_FAILED, error=plain_message(exc))
        if self.report is not None and self.report.warning:
            return self._enter(Step.WARNING)
        return self._save()

    def _save(self) -> Review:
        try:
            label_id = self.session.save(self.sample_id, self.mask, strokes=self.strokes, report=self.report)
        except Exception as exc:  # noqa: BLE001 - said in plain words; the mask is still on screen
            log.error("save of sample %s failed", self.sample_id, exc_info=exc)
            return self._enter(Step.SAVE_FAILED, error=plain_message(exc))
        try:
            assisted = self.session.next()
        except Exception as exc:  # noqa: BLE001
            log.error("opening the next sample failed", exc_info=exc)
            return self._enter(Step.OPEN_FAILED, label_id=label_id, error=plain_message(exc))
        return self._enter(Step.SAVED, label_id=label_id, next=assisted)

    def _enter(self, step: Step, **data: Any) -> Review:
        self.states += 1
        self.state = Review(self.review_id, self.states, step, self.sample_id, self.mask.copy(), self.before,
                            suggestions=self.suggestions, index=min(self.index, max(0, len(self.suggestions) - 1)),
                            report=self.report, **data)
        return self.state


__all__ = ["SaveFlow", "Review", "Step", "Choice", "SubmitMask", "Answer", "plain_message", "WHOLE_MASK_CHECKS"]
