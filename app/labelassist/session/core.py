"""The :class:`Session` front: open the next sample, submit it, save it, journal its edits.

The work is done by the parts it holds: :class:`~labelassist.session.pool.Selection` (what to
label next), :class:`~labelassist.session.lookahead.Lookahead` (samples prepared ahead),
:class:`~labelassist.session.assistance.Assistance` (which pre-label and box method) and the
functions of :mod:`~labelassist.session.review` and :mod:`~labelassist.session.journal`.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from labelassist.backup import BackupSchedule
from labelassist.errors import ImageReadError, LabelAssistError
from labelassist.project import Project
from labelassist.session import journal, review
from labelassist.session.assistance import Assistance, PrelabelChoice, load_model
from labelassist.session.background import Background
from labelassist.session.box_assistance import BOX_EVALUATION_SAMPLES, BoxAssistance, BoxChoice
from labelassist.session.prompt_model import PromptModels
from labelassist.session.prompting import ObjectPrompt, ObjectProposal
from labelassist.session.assisted import Assisted
from labelassist.session.learning import WARM_UP_LABELS, SessionLearner
from labelassist.session.lookahead import Lookahead, display_image
from labelassist.session.pool import Ranked, Selection
from labelassist.session.training import SessionTrainer
from labelassist.session.review import Submission
from labelassist.store import Sample
from labelassist.workflow import inspection
from labelassist.workflow import preprocess, selector
from labelassist.research.prelabel_eval import Evaluation
from labelassist.workflow.prelabel import Prelabel, PrelabelContext
from labelassist.workflow.registry import REGISTRY

log = logging.getLogger(__name__)


class Session:
    """A labelling session on one project.

    Parameters
    ----------
    project : Project
    author : str, optional
        Recorded with every label version and event (default: the system user).
    lookahead : int
        How many of the next samples to prepare in the background.
    background : bool
        Prepare in a worker thread (the kiosk); False prepares on demand (tests, CLI).
    own : bool
        Take the project's lock (only one labelling app may change a project) and
        keep rolling backups. Read-only tools (``labelassist select``...) pass False.
    learn : bool or None
        Run the instant learner (:mod:`~labelassist.session.learning`): it learns the newest
        labels when the session opens and every label saved. Default: when ``own`` and the
        project's ``prelabel.learn`` say so; a read-only tool that shows what was learned
        (``labelassist learn``, ``prelabel --method auto``) passes True.
    train : bool or None
        Start U-Net training rounds by themselves when due (:mod:`~labelassist.session.training`).
        Default: ``own`` with ``background`` (the kiosk, ``simulate``); a session without a
        background thread (the CLI, most tests) starts a round only by hand (``labelassist learn``).

    Attributes
    ----------
    current : Assisted or None
        The sample open now.
    unavailable : set of int
        Samples whose image vanished during this session (offered again when it is back).
    """

    def __init__(self, project: Project, author: str | None = None, lookahead: int = 3,
                 background: bool = True, own: bool = True, learn: bool | None = None,
                 train: bool | None = None):
        if own:
            project.lock("the labelling app")
        self.project = project
        backup = project.settings["backup"]
        self.backups = BackupSchedule(project.store, project.backup_dir, backup["minutes"], int(backup["keep"])) \
            if own else None
        self.store = project.store
        self.author = author
        self.lookahead = lookahead
        # The built-in steps with this project's plug-ins on top; no other project sees them.
        self.registry = REGISTRY.for_project(project.plugins_dir)
        self.plugin_errors = dict(self.registry.failed_plugins)
        for name, reason in self.plugin_errors.items():
            log.warning("plug-in %s was skipped: %s", name, reason)
        self.background = Background(background)
        self.selection = Selection(project, registry=self.registry)
        # The instant learner learns from every save (read-only tools never save: it stays off).
        if learn is None:
            learn = own
        self.learner = SessionLearner(project, author, threaded=background,
                                      enabled=learn and bool(project.settings["prelabel"]["learn"]))
        self.assistance = Assistance(project, author, self.background, registry=self.registry,
                                     learner=self.learner)
        self.boxes = BoxAssistance(project, author, self.background, self.assistance)
        self.assistance.restore_measurement()
        self.prepared_samples = Lookahead(project, self.assistance, self.selection, self.background,
                                          registry=self.registry, boxes=self.boxes)
        self.learner.listeners.append(self.prepared_samples.refresh_learned)
        # The U-Net trainer: a process of its own when a round is due; its model is installed only
        # when it matches the newest labels better than the pre-label used now.
        self.prompt_models = PromptModels(project, author, self.boxes)
        self.trainer = SessionTrainer(project, author, self.assistance, enabled=(own and background) if train is None else train,
                                      on_install=self._model_changed, prompt_models=self.prompt_models)
        if self.learner.enabled:
            self.learner.start(list(self.store.latest_labels(newest=WARM_UP_LABELS)),
                               total=len(self.store.labelled_ids()))
        self.current: Assisted | None = None
        self._opened_at = 0.0
        self.unavailable: set[int] = set()

    def close(self) -> None:
        """Stop the background worker (pending preparations are dropped) and back up if anything changed."""
        self.trainer.close()
        self.learner.close()
        self.background.shutdown()
        if self.backups is not None:
            self.backups.maybe(force=True)
            self.backups = None
        self.selection.flush()
        self.store.flush_events()
        # The project's plug-ins go with it: the kiosk opens the next project in this process.
        self.registry.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def settings(self) -> dict[str, Any]:
        return self.project.settings

    def _is_open(self, sample_id: int) -> bool:
        return self.current is not None and self.current.sample.id == sample_id

    # -- the flow of one sample -------------------------------------------------------------
    def next(self) -> Assisted | None:
        """Open the selector's choice, prepared; None when every sample is labelled.

        A sample whose image has gone (a removed USB drive, a moved folder) is
        skipped and listed in :attr:`unavailable` until its file is back; when
        every remaining image is gone, the error says so.
        """
        while True:
            upcoming = self._next_ids(1 + self.lookahead)
            if not upcoming:
                if self.unavailable:
                    raise ImageReadError(
                        f"the {len(self.unavailable)} images still to label cannot be found: reconnect the drive "
                        "they are on, or run 'labelassist relink'")
                return None
            try:
                assisted = self.open(upcoming[0])
            except ImageReadError as exc:
                if self.project.resolve(self.store.sample(upcoming[0]).path).is_file():
                    raise  # the file is there but unreadable: say so, do not skip silently
                log.warning("skipped for now: %s", exc)
                self.unavailable.add(upcoming[0])
                continue
            self.prepared_samples.ahead(upcoming[1:])
            return assisted

    def _next_ids(self, count: int) -> list[int]:
        """The selector's next ``count`` picks among the samples whose image is there."""
        if self.unavailable:
            # A file came back (the USB drive is plugged in again): offer it again.
            self.unavailable = {sid for sid in self.unavailable
                                if not self.project.resolve(self.store.sample(sid).path).is_file()}
        return self.selection.next_ids(count, skip=self.unavailable)

    def open(self, sample_id: int) -> Assisted:
        """Open one sample (the selector's choice or one the user tapped in the queue)."""
        assisted = self.prepared_samples.take(sample_id)
        recovered = self.recover(sample_id)
        if recovered is not None:
            assisted = replace(assisted, recovered=recovered)
        self.current = assisted
        self._opened_at = time.monotonic()
        # Not worth an fsync of its own: written with the next save.
        self.store.defer_event("open", actor=self.author, sample_id=sample_id,
                               assistance=assisted.prelabel.method if assisted.prelabel else None)
        return assisted

    def submit(self, sample_id: int, mask: np.ndarray, prelabel: np.ndarray | None = None) -> Submission:
        """Inspect a finished mask and list post-processing suggestions; nothing is saved yet."""
        sample = self.store.sample(sample_id)
        own_prelabel, prediction = self._review_inputs(sample_id)
        return review.review(self.settings, sample, mask, prelabel=own_prelabel if prelabel is None else prelabel,
                             prediction=prediction, registry=self.registry)

    def reinspect(self, sample_id: int, mask: np.ndarray) -> inspection.Report | None:
        """γ(y) of a mask changed after :meth:`submit` (accepted suggestions), against the same
        pre-label and model mask as :meth:`submit`; None when no check applies."""
        prelabel, prediction = self._review_inputs(sample_id)
        return review.inspect(self.settings, mask, prelabel=prelabel, prediction=prediction, registry=self.registry)

    def highlight(self, sample_id: int, mask: np.ndarray, check_names: list[str]) -> np.ndarray:
        """The pixels of ``mask`` the named failed checks object to (what "Fix it" shows)."""
        prelabel, prediction = self._review_inputs(sample_id)
        return review.highlight(self.settings, mask, check_names, prelabel=prelabel, prediction=prediction,
                                registry=self.registry)

    def _review_inputs(self, sample_id: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The pre-label the open sample started from (a real one, not a placeholder) and the
        project model's mask of it; (None, None) for a sample that is not open."""
        if not self._is_open(sample_id):
            return None, None
        prelabel = self.current.prelabel
        usable = prelabel is not None and not prelabel.is_placeholder
        return (prelabel.mask if usable else None), self.current.prediction

    def save(self, sample_id: int, mask: np.ndarray, *, seconds: float | None = None, strokes: int = 0,
             source: str = "manual", assistance: str | None = None, note: str | None = None,
             report: inspection.Report | None = None) -> int:
        """Append a label version; ``seconds`` defaults to the time since the sample was opened.

        ``report`` is the inspection the annotator saw (from :meth:`submit`): its γ is
        kept with the version, and saving despite its warning is recorded as such.
        """
        opened = self._is_open(sample_id)
        if seconds is None:
            seconds = time.monotonic() - self._opened_at if opened else 0.0
        latest = self.store.latest_label(sample_id)
        if assistance is None and opened and self.current.prelabel is not None:
            assistance = f"prelabel:{self.current.prelabel.method}"
        warned = report is not None and report.warning
        label_id = self.store.save_label(sample_id, mask, source=source, author=self.author,
                                         parent_id=latest.id if latest else None, seconds=seconds,
                                         strokes=strokes, note=note, assistance=assistance,
                                         score=None if report is None else report.score, warned=warned)
        if warned:
            self.store.log_event("save_anyway", actor=self.author, sample_id=sample_id, label_id=label_id,
                                 score=round(report.score, 4), failed=[c.message for c in report.failed])
        if self._is_open(sample_id):
            # Edits after this save start from the new version (the journal's base).
            self.current = replace(self.current, label=self.store.label(label_id), recovered=None)
        self.selection.flush()
        if self.backups is not None:
            self.backups.changed()
            self.backups.maybe()
        self.selection.mark_labelled(sample_id)
        self.prepared_samples.forget(sample_id)
        labelled = len(self.store.labelled_ids())
        # The learner learns it on its own thread: the next sample opens without waiting for it.
        if self.learner.enabled:
            self.learner.after_save(self.store.sample(sample_id), mask, label_id,
                                    self.current.image if opened else None, total=labelled)
        # A U-Net round when one is due: a process of its own, so this returns at once. The label is
        # stored: nothing the trainer does may fail the save.
        try:
            self.trainer.after_save(labelled)
        except Exception:  # noqa: BLE001 - logged; start_round itself records its failures
            log.exception("the U-Net trainer could not start a round")
        return label_id

    # -- nothing is lost: the stroke journal and the screen state ----------------------------
    def record_edit(self, sample_id: int, kind: str, indices: np.ndarray, values: np.ndarray) -> None:
        """Journal one finished edit of the open mask (a stroke, a fill, an undo...), durably.

        ``indices`` are flat pixel indices (row-major) and ``values`` their new
        values. Replaying every edit of a sample in order over the label version
        the edit started from gives the mask on screen; the UI calls this when a
        stroke ends, before the next one starts. Starting from a pre-label is
        itself an edit (kind ``prelabel``).
        """
        base = self.current.label.id if self._is_open(sample_id) and self.current.label is not None else None
        self.store.journal_append(sample_id, kind, indices, values, base_label_id=base)

    def recover(self, sample_id: int) -> np.ndarray | None:
        """The unsaved mask of a sample rebuilt from the journal, or None when it has no edits."""
        return journal.recover(self.store, sample_id)

    def unsaved_samples(self) -> list[int]:
        """Samples with journalled edits that were never saved (after a crash)."""
        return self.store.journal_samples()

    def discard_edits(self, sample_id: int) -> None:
        """Drop the unsaved edits of a sample (the user chose to start over); logged."""
        self.store.journal_clear(sample_id)
        self.store.log_event("discard_edits", actor=self.author, sample_id=sample_id)

    def remember(self, **state: Any) -> None:
        """Keep where the user is (sample, zoom, pan, tool...) for the next start."""
        journal.remember(self.store, **state)

    def resume_state(self) -> dict[str, Any]:
        """What :meth:`remember` kept, e.g. ``{"sample_id": 12, "zoom": 2.0, ...}``."""
        return journal.resume_state(self.store)

    def sample_states(self) -> dict[int, str]:
        """Each sample's badge in the queue (see :func:`~labelassist.session.journal.sample_states`)."""
        return journal.sample_states(self.store)

    # -- settings and the project's model ---------------------------------------------------
    def update_settings(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to a copy of the settings, validate, write ``project.toml`` and log it.

        Invalid settings raise ProjectError and leave the current ones as they were.
        The pre-processing pipeline is changed with :meth:`set_pipeline` instead.
        """
        new = copy.deepcopy(self.settings)
        change(new)
        if new["preprocess"] != self.settings["preprocess"]:
            raise LabelAssistError("change the pre-processing with set_pipeline (it needs a confirmation)")
        self.project.save_settings(new, actor=self.author)  # validates first, then writes
        self.selection.invalidate()  # weights or seed may have changed
        self.assistance.invalidate()  # the pre-label method or its threshold may have changed

    def set_pipeline(self, pipeline: list[dict[str, Any]], confirm: bool = False) -> None:
        """Change the pre-processing pipeline.

        Once labelling has begun, a different display gives inconsistent labels,
        so the change needs ``confirm=True``; it is logged either way.
        """
        # validates names and parameters
        preprocess.run_pipeline(np.zeros((8, 8), np.uint8), pipeline, registry=self.registry)
        if self.store.counts()["label_versions"] and not confirm:
            raise LabelAssistError(
                "labels already exist: changing the pre-processing now makes the display differ from "
                "what earlier labels were drawn on; confirm to change it anyway"
            )
        old = self.settings["preprocess"]["pipeline"]
        self.settings["preprocess"]["pipeline"] = pipeline
        self.project.save_settings(actor=self.author)
        self.store.log_event("pipeline", actor=self.author, old=old, new=pipeline, confirmed=confirm)
        self.prepared_samples.forget()

    def set_flag(self, sample_id: int, relevant: bool | None) -> None:
        """Cherry-pick: relevant (True), not now (False), or no flag (None)."""
        self.store.set_flag(sample_id, relevant, author=self.author)
        self.selection.invalidate()  # flags are part of the pool

    def model(self):
        """The project's installed pre-label model (``labelassist model import``), or None.

        A model that no longer loads is logged and treated as absent: labelling goes on.
        """
        return load_model(self.project)

    def import_model(self, path, card=None, max_seconds: float = 10.0):
        """Check an ONNX model against its card and install it as the project's pre-label model.

        Returns the check report (time per input, notes); a model that does not fit is refused
        with the reason and nothing changes. The next pre-labels are measured again with it.
        """
        from labelassist import models

        self.trainer.stop("you changed the model")  # a round under way would replace the import
        report = models.install_model(self.project, path, card=card, max_seconds=max_seconds)
        self._model_changed()
        return report

    def _model_changed(self) -> None:
        # Any thread (the trainer installs from its own): each part below is thread-safe.
        self.assistance.invalidate()  # measure the pre-label methods again, the model included
        self.selection.invalidate()  # uncertainties belong to the model that made them
        self.prepared_samples.forget()

    def model_history(self):
        """The project's models, oldest first (:class:`~labelassist.models.history.HistoryEntry`)."""
        from labelassist.models import history

        return history.model_history(self.project)

    def current_model_entry(self):
        """The history entry of the project's model now, or None (no model)."""
        from labelassist.models import history

        return history.current_entry(self.project)

    def roll_back(self, entry_id: int | None) -> None:
        """Make an earlier model of the history (or no model: None) the project's, bit for bit."""
        self.trainer.roll_back(entry_id)

    def idle(self, seconds: float) -> None:
        """The canvas has had no input for ``seconds``: the trainer may start an idle round."""
        self.trainer.idle(seconds)

    # -- the instant learner ------------------------------------------------------------------
    def prelabel_words(self) -> str:
        """What the pre-label is and how well it matched the newest labels, in plain words.

        For the Label screen, e.g. "Pre-label learned from 20 of your labels: matches your last
        5 at 96 %" or "Pre-label from the shipped scratch_assay model: matches your last 12 at
        98 %". Reads what is known now; measures nothing.
        """
        return self.assistance.choice_words()

    # -- teaching and the learner's pre-label ----------------------------------------------
    def learned_prelabel(self, sample_id: int) -> Prelabel | None:
        """The open sample's pre-label made again with the learner's newest model, or None.

        Only when ``learned`` is the current choice, the sample has no saved label and the
        learner has a model newer than its pre-label's. Nothing changes until
        :meth:`use_prelabel` (the screen offers it only on an untouched canvas).
        """
        choice = self.assistance.current_choice()
        if not self._is_open(sample_id) or self.current.label is not None or choice is None \
                or choice.method != "learned" or self.learner.model is None:
            return None
        old = self.current.prelabel
        if old is not None and old.method == "learned" and not self.assistance.learned_is_stale(old):
            return None  # made by the newest forest: nothing new
        return self.assistance.run_prelabel("learned", self.current.image, PrelabelContext())

    def use_prelabel(self, sample_id: int, prelabel: Prelabel) -> None:
        """The open sample starts from ``prelabel`` now (the screen put it on an untouched canvas)."""
        if self._is_open(sample_id):
            self.current = replace(self.current, prelabel=prelabel)

    def teach(self, sample_id: int, object_strokes: np.ndarray, background_strokes: np.ndarray) -> Prelabel:
        """A proposal for the whole open image learned from strokes of object and of background.

        The teach mode: where no pre-label helps, a few strokes of each are enough. The
        proposal is a pre-label to accept or correct (method ``scribbles``); nothing is saved.

        Raises
        ------
        LabelAssistError
            The sample is not open, a class has no stroke yet, or the learner is switched off.
        """
        if not self._is_open(sample_id):
            raise LabelAssistError("open the sample before teaching on it")
        if not self.learner.enabled:
            raise LabelAssistError("learning is switched off in the project settings (prelabel.learn)")
        obj = np.asarray(object_strokes, dtype=bool)
        bg = np.asarray(background_strokes, dtype=bool)
        shape = self.current.image.shape[:2]
        if obj.shape != shape or bg.shape != shape:
            raise LabelAssistError(f"the strokes are {obj.shape[1]}x{obj.shape[0]} but the image is "
                                   f"{shape[1]}x{shape[0]}")
        missing = [what for what, m in (("object", obj & ~bg), ("background", bg & ~obj)) if not m.any()]
        if missing:
            raise LabelAssistError(f"paint some {' and some '.join(missing)} first")
        try:
            probability = self.learner.teach(sample_id, self.current.image, obj, bg)
        except ValueError as exc:  # too small an image, or strokes that cancel out at its working scale
            raise LabelAssistError(f"nothing could be learned from these strokes: {exc}") from exc
        self.store.defer_event("prelabel", actor=self.author, sample_id=sample_id, assistance="prelabel:scribbles",
                               object_pixels=int(obj.sum()), background_pixels=int(bg.sum()))
        return Prelabel(mask=probability > 0.5, probability=probability, method="scribbles",
                        note="Learned from your strokes on this image.")

    def prepare_teach(self, sample_id: int) -> None:
        """Compute the open image's features ahead, so the first strokes give a proposal quickly."""
        if self._is_open(sample_id) and self.learner.enabled:
            self.learner.prepare_teach(sample_id, self.current.image)

    # -- delegated to the parts (the names the UI, the CLI and the tests call) ---------------
    @property
    def missing(self) -> list[Sample]:
        """Samples whose image could not be read when features were last computed."""
        return self.selection.missing

    def update_features(self, progress: Callable[[int, int], None] | None = None) -> int:
        return self.selection.update_features(progress)

    def update_uncertainty(self, progress: Callable[[int, int], None] | None = None) -> int:
        return self.selection.update_uncertainty(progress)

    def pool(self) -> tuple[selector.Pool, np.ndarray]:
        return self.selection.pool()

    def ranking(self, top: int | None = None) -> list[Ranked]:
        return self.selection.ranking(top)

    def prepare(self, sample_id: int) -> Assisted:
        return self.prepared_samples.prepare(sample_id)

    def prepared(self, sample_id: int) -> bool:
        return self.prepared_samples.prepared(sample_id)

    def wait_prepared(self, timeout: float = 30.0) -> None:
        self.prepared_samples.wait(timeout)

    def display_image(self, image: np.ndarray) -> np.ndarray:
        """h(x): the project's pre-processing pipeline, as uint8 for the screen."""
        return display_image(image, self.settings["preprocess"]["pipeline"], self.registry)

    def previous_mask(self, sample: Sample) -> np.ndarray | None:
        return self.assistance.previous_mask(sample)

    def prelabel(self, sample_id: int, method: str, **prompt: Any) -> Prelabel:
        """Run one pre-label method on a sample, e.g. a tap (``points=[(x, y)]``) or a ``box``.

        Interactive methods run on the raw pixels; the prompt is in image pixels.
        """
        return self.assistance.prelabel(sample_id, method, self.current, **prompt)

    def segment_box(self, sample_id: int, box: tuple[float, float, float, float]) -> Prelabel:
        return self.boxes.segment_box(sample_id, box, self.current)

    def propose_object(self, sample_id: int, prompt: ObjectPrompt) -> ObjectProposal:
        """Tap-to-segment or the wand: one proposed object for ``prompt`` on the open sample; the
        mask does not change (the screen adds it on Add). See :mod:`labelassist.session.prompting`."""
        if not self._is_open(sample_id):
            raise LabelAssistError("open the sample before segmenting on it")
        return self.boxes.propose(sample_id, prompt, self.current)

    def prelabel_choice(self, wait: bool = True) -> PrelabelChoice:
        return self.assistance.prelabel_choice(wait)

    def box_choice(self, wait: bool = True) -> BoxChoice:
        return self.boxes.box_choice(wait)

    def box_segmenter(self):
        return self.boxes.box_segmenter()

    def evaluate_prelabels(self, methods: list[str] | None = None, limit: int | None = None,
                           progress: Callable[[int, int], None] | None = None) -> Evaluation:
        return self.assistance.evaluate_prelabels(methods, limit, progress)

    def evaluate_box_prompts(self, limit: int | None = BOX_EVALUATION_SAMPLES,
                             progress: Callable[[int, int], None] | None = None, points: bool = False):
        return self.boxes.evaluate_box_prompts(limit, progress, points=points)

    def inspection_metrics(self) -> dict[str, dict[str, Any]]:
        return review.inspection_metrics(self.settings)

    def inspect(self, mask: np.ndarray, prelabel: np.ndarray | None = None,
                prediction: np.ndarray | None = None) -> inspection.Report | None:
        return review.inspect(self.settings, mask, prelabel, prediction, registry=self.registry)

    # The choices' state, reset by tests (a measurement again; no box-prompt model).
    @property
    def _choice(self) -> PrelabelChoice | None:
        return self.assistance.choice

    @_choice.setter
    def _choice(self, value: PrelabelChoice | None) -> None:
        if value is None:
            self.assistance.invalidate()
        else:
            self.assistance.choice = value

    @property
    def _box_segmenter(self):
        return self.boxes.box_segmenter()

    @_box_segmenter.setter
    def _box_segmenter(self, value) -> None:
        self.boxes.use_box_segmenter(value)
