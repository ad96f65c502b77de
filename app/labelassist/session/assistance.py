"""Which pre-label a session uses, and the measurement behind the choice.

``prelabel.method = "auto"`` measures every pre-label candidate on the newest labelled samples
and takes the best. The candidates (:class:`Candidate`) are the steps that need no prompt (Otsu,
the previous frame's label), the project's imported model, every model shipped with the kiosk
(``prelabel.shipped_models``) and the instant learner (``prelabel.learn``). The learner is not run
on the newest labels, which it learned from: its score is its own held-out record, each new label
predicted before it was learned (:mod:`labelassist.learning.instant`), so the comparison stays
fair and the choice follows the learner after every save at no cost.

The candidates are measured again as labels come in (:func:`remeasure_due`), on the background
thread in the kiosk. No database writes happen here except through deferred events, so a
measurement may run on the worker thread. The box method of tap-to-segment is chosen the same way
in :mod:`~labelassist.session.box_assistance`.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from labelassist.errors import ImageReadError, LabelAssistError, PluginError
from labelassist.project import Project
from labelassist.research.prelabel_eval import Evaluation, Row, evaluate_prelabels, evaluation_from_dict, summarise
from labelassist.session.assisted import Assisted
from labelassist.session.background import Background
from labelassist.session.learning import SessionLearner
from labelassist.session.training_rules import current_model_entry, trained_on
from labelassist.store import DamagedLabelError, Sample
from labelassist.workflow.prelabel import PrelabelContext
from labelassist.workflow.registry import ProjectRegistry, Registry
from labelassist.workflow.results import Prelabel

log = logging.getLogger(__name__)

# Steps that need no prompt and no model: candidates for every project.
MODEL_FREE_PRELABELS = ("otsu", "previous")
# What each candidate is, in plain words for the screens.
CANDIDATE_TITLES = {"otsu": "brightness threshold", "previous": "the previous frame's label",
                    "onnx": "your imported model"}
# Labelled samples an automatic choice of pre-label method is measured on (the newest ones).
EVALUATION_SAMPLES = 12
# Re-measure the pre-label methods after this many new labels.
REEVALUATE_EVERY = 10
# The Label screen's "matches your last N": the learner's newest held-out scores.
WORDS_SCORES = 5


@dataclass(frozen=True)
class Candidate:
    """One pre-label ``auto`` may choose: a registered step, run with a model of its own for models.

    Attributes
    ----------
    name : str
        ``otsu``, ``previous``, ``onnx`` (the project's imported model), ``shipped:<data set>``
        (a model shipped with the kiosk) or ``learned`` (the instant learner); a project
        plug-in's name for a plug-in.
    step : str
        The registered pre-label step it runs: every model runs ``onnx`` (a probability map,
        thresholded), whatever made the model.
    model : object or None
        ``predict(image) -> probability`` and ``threshold``, for model candidates.
    title : str
        What it is, in plain words.
    """

    name: str
    step: str
    model: Any = None
    title: str = ""


@dataclass
class PrelabelChoice:
    """Which pre-label the session uses, and the evidence."""

    method: str | None
    reason: str
    evaluation: Evaluation | None = None
    labelled_at: int = 0


def _shipped_title(name: str) -> str:
    return f"the shipped {name} model"


def _family(card) -> tuple[str, str]:
    # The fp32 and int8 variants of one network: the same model for the candidates.
    return card.name.removesuffix(".int8"), card.version


def _learned_note(model) -> str:
    # The learned pre-label's note: it says what the forest learned from, which also tells a
    # pre-label of an older forest (fewer labels) from one of the newest.
    return f"Learned from {model.labels} of your labels."


def remeasure_due(measured_at: int, labelled: int) -> bool:
    """Whether a choice measured at ``measured_at`` labels is due again now there are ``labelled``.

    Early labels change the picture most: again after each of the first few, then every
    :data:`REEVALUATE_EVERY`.
    """
    since = labelled - measured_at
    return since != 0 and (measured_at < 3 or since >= REEVALUATE_EVERY)


def load_model(project: Project):
    """The project's installed pre-label model (``labelassist model import``), or None.

    A model that no longer loads is logged and treated as absent: labelling goes on.
    """
    from labelassist import models

    try:
        return models.project_model(project)
    except LabelAssistError as exc:
        log.warning("the project's model is not used: %s", exc)
        return None


class LabelledImages:
    """(sample, image, saved mask, previous frame's mask) of evaluation inputs, read one at a time.

    Sized, so an evaluation streams it (one image in memory at a time) and can report progress;
    an image that cannot be read any more is left out (and logged).
    """

    def __init__(self, project: Project, inputs: list):
        self.project, self.inputs = project, inputs

    def __len__(self) -> int:
        return len(self.inputs)

    def __iter__(self):
        for sample, mask, previous in self.inputs:
            try:
                image = self.project.read_image(sample)
            except ImageReadError as exc:
                log.warning("left out of the evaluation: %s", exc)
                continue
            yield sample, image, mask, previous


class _PrelabelSamples(LabelledImages):  # (name, image, mask, previous) for evaluate_prelabels
    def __iter__(self):
        return ((sample.name, image, mask, previous) for sample, image, mask, previous in super().__iter__())


class Assistance:
    """The pre-label choice of one session, and the pre-label runs.

    Parameters
    ----------
    project : Project
    author : str or None
        Recorded with the events.
    background : Background
        Where a due re-measurement runs when the caller does not wait for it.
    registry : Registry or ProjectRegistry
        Where the pre-label methods are looked up: the session's registry, with the project's
        plug-ins.
    learner : SessionLearner or None
        The session's instant learner: its model is the ``learned`` candidate.
    """

    def __init__(self, project: Project, author: str | None, background: Background,
                 registry: Registry | ProjectRegistry, learner: SessionLearner | None = None):
        self.project, self.store, self.author, self.background = project, project.store, author, background
        self.registry = registry
        self.learner = learner
        self.choice: PrelabelChoice | None = None  # the last pre-label choice; None: measure again
        self._measured: Evaluation | None = None  # the candidates but the learner, on the newest labels
        self._choice_lock = threading.Lock()
        self._generation = 0  # bumped by invalidate(): a measurement begun before it is not kept
        self._store_thread = threading.current_thread()  # the thread the store is used on
        self._shipped: dict[str, Candidate] | None = None  # loaded once per session
        self._measuring = -1  # labelled count a background measurement was started for

    @property
    def settings(self) -> dict[str, Any]:
        return self.project.settings

    # -- running a pre-label ----------------------------------------------------------------
    def previous_mask(self, sample: Sample) -> np.ndarray | None:
        """The newest label of the frame just before this one in its sequence (None at a start)."""
        previous_id = self.store.sample_at(sample.sequence, sample.frame - 1)
        if previous_id is None:
            return None
        label = self.store.latest_label(previous_id)
        if label is None or (label.height, label.width) != (sample.height, sample.width):
            return None
        try:
            return label.mask
        except DamagedLabelError as exc:  # a damaged neighbour is no pre-label, not a failed sample
            log.warning("no previous-frame pre-label for %s: %s", sample.name, exc)
            return None

    def run_prelabel(self, method: str, image: np.ndarray, context: PrelabelContext) -> Prelabel:
        """One pre-label method or candidate (``shipped:...``, ``learned``) with the project's parameters.

        A model candidate runs with its own model and threshold; the project's ``onnx``
        parameters are for its imported model.
        """
        candidate = self.candidate(method)
        step = method if candidate is None else candidate.step
        params = dict(self.settings["prelabel"]["params"].get(method, {}))
        if candidate is not None and candidate.model is not None:
            context = replace(context, model=candidate.model)
        if step == "onnx" and context.model is not None and "threshold" not in params:
            params["threshold"] = context.model.threshold  # the card's threshold, unless the project sets one
        try:
            result = self.registry.get("prelabel", step)(image, context, **params)
        except LabelAssistError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model that fails on one image: no pre-label, said plainly
            if candidate is None or candidate.model is None:
                raise
            log.warning("%s failed on an image: %r", method, exc, exc_info=True)
            raise PluginError(f"{candidate.title} could not pre-label this image ({type(exc).__name__})") from exc
        if candidate is not None and candidate.name == "learned":
            result = replace(result, note=result.note or _learned_note(candidate.model))
        return result if result.method == method else replace(result, method=method)

    def learned_is_stale(self, prelabel: Prelabel | None) -> bool:
        """Whether ``prelabel`` is the learner's, made by a model older than its newest."""
        model = None if self.learner is None else self.learner.model
        return (prelabel is not None and prelabel.method == "learned" and model is not None
                and prelabel.note != _learned_note(model))

    def image_of(self, sample: Sample, current: Assisted | None) -> np.ndarray:
        """The sample's pixels: those of the open sample when it is this one, else read again."""
        if current is not None and current.sample.id == sample.id:
            return current.image
        return self.project.read_image(sample)

    def prelabel(self, sample_id: int, method: str, current: Assisted | None = None, **prompt: Any) -> Prelabel:
        """Run one pre-label method on a sample, e.g. a tap (``points=[(x, y)]``) or a ``box``; logged."""
        sample = self.store.sample(sample_id)
        image = self.image_of(sample, current)
        context = PrelabelContext(previous_mask=self.previous_mask(sample), model=load_model(self.project),
                                  **prompt)
        result = self.run_prelabel(method, image, context)
        self.store.log_event("prelabel", actor=self.author, sample_id=sample_id, assistance=f"prelabel:{method}")
        return result

    # -- the candidates ----------------------------------------------------------------------
    def candidates(self) -> dict[str, Candidate]:
        """The pre-labels ``auto`` chooses from now, by name (see the module's notes)."""
        registered = self.registry.names("prelabel")
        out = {m: Candidate(m, m, None, CANDIDATE_TITLES[m]) for m in MODEL_FREE_PRELABELS if m in registered}
        if "onnx" in registered:
            model = load_model(self.project)
            if model is not None:
                out["onnx"] = Candidate("onnx", "onnx", model, CANDIDATE_TITLES["onnx"])
            if self.settings["prelabel"]["shipped_models"]:
                installed = None if model is None else _family(model.card)
                # A shipped model imported into the project (either variant) is one candidate, the project's.
                out.update({name: c for name, c in self._shipped_candidates().items()
                            if _family(c.model.card) != installed})
        learned = self._learned_candidate()
        if learned is not None:
            out["learned"] = learned
        return out

    def candidate(self, name: str) -> Candidate | None:
        """The candidate of that name when it is one now (None for other steps: plain registered names)."""
        if name == "learned":
            return self._learned_candidate()
        if name.startswith("shipped:"):
            return self._shipped_candidates().get(name)
        if name == "onnx":
            return None  # the step itself, with the context's model (the project's)
        return None

    def _learned_candidate(self) -> Candidate | None:
        model = None if self.learner is None else self.learner.model
        if model is None:
            return None
        return Candidate("learned", "onnx", model, f"learned from {model.labels} of your labels")

    def _shipped_candidates(self) -> dict[str, Candidate]:
        if self._shipped is None:
            from labelassist import models

            shipped = {}
            for name in models.shipped_models():
                try:
                    shipped[f"shipped:{name}"] = Candidate(f"shipped:{name}", "onnx", models.shipped_model(name),
                                                           _shipped_title(name))
                except LabelAssistError as exc:  # a damaged install: labelling goes on without it
                    log.warning("the shipped model %s is not used: %s", name, exc)
            self._shipped = shipped
        return self._shipped

    # -- which pre-label --------------------------------------------------------------------
    def prelabel_choice(self, wait: bool = True) -> PrelabelChoice:
        """The pre-label method in use and why.

        ``prelabel.method = "auto"`` measures the candidates on the newest labelled samples and
        takes the best; when even the best mean DSC is below ``prelabel.min_dsc``
        pre-labelling is switched off (a bad pre-label slows the annotator down). ``"none"``
        switches it off by hand. With ``wait=False`` (the kiosk) a due re-measurement runs on
        the worker thread and the current choice is returned meanwhile, so saving and opening
        never wait for it. The learner's record is read afresh on every call.
        """
        setting = self.settings["prelabel"]["method"]
        if setting == "none":
            return PrelabelChoice(None, "pre-labelling is switched off in the project settings")
        if setting != "auto":
            if setting == "learned":
                if self.learner is None or not self.learner.enabled:
                    return PrelabelChoice(None, "learning is switched off (prelabel.learn)")
                if self.candidate(setting) is None:
                    return PrelabelChoice(None, "the learner has not learned from a label yet")
            elif setting.startswith("shipped:"):
                if self.candidate(setting) is None:  # an unknown name is an error, not a silent 'off'
                    from labelassist import models

                    raise PluginError(f"prelabel.method {setting!r}: no such shipped model (shipped: "
                                      f"{', '.join(models.shipped_models()) or 'none'})")
            else:
                self.registry.get("prelabel", setting)  # an unknown name is an error, not a silent 'off'
            return PrelabelChoice(setting, "chosen in the project settings")
        labelled = len(self.store.labelled_ids())
        if labelled == 0:
            return PrelabelChoice("otsu", "no labels yet to measure the methods on", labelled_at=0)
        with self._choice_lock:
            choice, measured, generation = self.choice, self._measured, self._generation
        if choice is not None and measured is not None and not remeasure_due(choice.labelled_at, labelled):
            return self._decide(choice.labelled_at, generation)
        inputs = self.evaluation_inputs(EVALUATION_SAMPLES)
        if wait or not self.background.running:
            return self._measure_choice(inputs, labelled)
        if self._measuring != labelled:
            self._measuring = labelled
            self.background.submit(self._measure_choice, inputs, labelled)
        return self.current_choice() or PrelabelChoice("otsu", "measuring the pre-label methods", labelled_at=0)

    def current_choice(self) -> PrelabelChoice | None:
        """The choice as known now (no measurement started), the learner's newest record included."""
        with self._choice_lock:
            choice, measured, generation = self.choice, self._measured, self._generation
        if choice is None or measured is None:
            return choice
        return self._decide(choice.labelled_at, generation)

    def invalidate(self) -> None:
        """Measure the candidates again at the next choice (the settings or the model changed)."""
        with self._choice_lock:
            self._generation += 1
            self.choice = None
            self._measured = None
            self._measuring = -1

    def provisional(self, method: str, reason: str, labelled_at: int) -> None:
        """Measure again, and use ``method`` until that measurement ends (a model just installed
        because it beat the pre-label in use on the newest labels: the next samples use it at once,
        not the brightness threshold a measurement under way would give)."""
        with self._choice_lock:
            self._generation += 1
            self._measured = None
            self._measuring = -1
            self.choice = PrelabelChoice(method, reason, None, labelled_at)

    def _measure_choice(self, inputs: list, labelled: int) -> PrelabelChoice:
        # May run on the worker thread: reads images, no database access (the event is deferred).
        generation = self._generation
        fingerprint = self._fingerprint()
        methods = [m for m in self.candidates() if m != "learned"]
        measured = self._evaluate(inputs, methods)
        with self._choice_lock:
            if generation != self._generation:  # invalidated meanwhile: measured with the old settings
                return PrelabelChoice("otsu", "measuring the pre-label methods again", labelled_at=0)
            self._measured = measured
        # Kept for the next session: it starts from this measurement until one is due again. On the
        # store's thread it is written now (a session killed before its next save must not measure
        # all over again when it restarts); from the worker thread, with the next save.
        event = dict(actor=self.author, labelled=labelled, fingerprint=fingerprint, evaluation=measured.to_dict())
        if threading.current_thread() is self._store_thread and not self.store.read_only:
            try:
                self.store.log_event("prelabel_measured", **event)
            except LabelAssistError as exc:  # a measurement not kept is measured again; nothing lost
                log.warning("the measurement of the pre-labels was not kept: %s", exc)
        else:
            self.store.defer_event("prelabel_measured", **event)
        return self._decide(labelled, generation)

    def _fingerprint(self) -> dict[str, Any]:
        """What a measurement depends on besides the labels, without loading any model."""
        from labelassist import models

        try:
            installed = models.installed_model_path(self.project)
        except LabelAssistError as exc:  # a damaged current.json: no model, as load_model says too
            log.warning("the project's model is not used: %s", exc)
            installed = None
        stat = installed.stat() if installed is not None and installed.is_file() else None
        return {"registered": sorted(m for m in MODEL_FREE_PRELABELS if m in self.registry.names("prelabel")),
                "model": None if stat is None else [stat.st_size, stat.st_mtime_ns],
                "shipped": sorted(models.shipped_models()) if self.settings["prelabel"]["shipped_models"] else [],
                "params": self.settings["prelabel"]["params"]}

    def restore_measurement(self) -> None:
        """Start from the last session's measurement of the candidates, when nothing it depends on
        changed and none is due yet (a session opens without measuring again; database reads:
        call on the store's thread)."""
        events = self.store.events("prelabel_measured", newest=1)
        if not events or self.settings["prelabel"]["method"] != "auto":
            return
        details = events[0]["details"]
        labelled = len(self.store.labelled_ids())
        try:
            measured_at = int(details["labelled"])
            if details["fingerprint"] != json.loads(json.dumps(self._fingerprint())) \
                    or remeasure_due(measured_at, labelled) or measured_at > labelled:
                return
            evaluation = evaluation_from_dict(details["evaluation"])
        except (KeyError, TypeError, ValueError) as exc:  # an event of another version: measure again
            log.info("the last measurement of the pre-labels is not used: %r", exc)
            return
        with self._choice_lock:
            self._measured = evaluation
            generation = self._generation
        self._decide(measured_at, generation, log_change=False)  # a choice restored, not a new one

    def learned_rows(self) -> list[Row]:
        """The learner's held-out scores on the newest labels, as evaluation rows."""
        if self.learner is None:
            return []
        return [Row(method="learned", sample=s.sample, dice=s.dice, effort=s.effort, ms=s.ms,
                    note="" if s.labels else "the first label: learned from its left half, scored on its right")
                for s in self.learner.scores(EVALUATION_SAMPLES)]

    def _with_learned(self, measured: Evaluation) -> Evaluation:
        rows = self.learned_rows() if self._learned_candidate() is not None else []
        if not rows:
            return measured
        evaluation = Evaluation(rows=list(measured.rows) + rows, summaries=dict(measured.summaries))
        evaluation.summaries["learned"] = summarise("learned", rows)
        return evaluation

    def _decide(self, labelled_at: int, generation: int, log_change: bool = True) -> PrelabelChoice:
        """The best of the measured candidates and the learner's record (kept unless invalidated
        since ``generation``)."""
        with self._choice_lock:
            if generation != self._generation or self._measured is None:
                return PrelabelChoice("otsu", "measuring the pre-label methods again", labelled_at=0)
            evaluation = self._with_learned(self._measured)
            min_dsc = float(self.settings["prelabel"]["min_dsc"])
            best = evaluation.best(min_dsc)
            ranking = evaluation.ranking()
            if not ranking:
                return PrelabelChoice(None, "no pre-label method to measure", evaluation, labelled_at)
            top = ranking[0]
            if best is None:
                reason = (f"off: the best method ({top.method}) reaches a DSC of {top.dice_mean:.2f} on "
                          f"{top.n} labelled samples, below {min_dsc:.2f}")
            else:
                reason = (f"{best}: DSC {top.dice_mean:.2f} on {top.n} labelled samples"
                          f"{' (held out)' if best == 'learned' else ''} (best of {len(evaluation.summaries)})")
            previous = self.choice
            self.choice = PrelabelChoice(best, reason, evaluation, labelled_at)
            if log_change and (previous is None or previous.method != best or previous.labelled_at != labelled_at):
                self.store.defer_event("prelabel_choice", actor=self.author, method=best, reason=reason)
            return self.choice

    def choice_words(self) -> str:
        """The current choice in plain words, with how well it matched the newest labels.

        The learner's figure is over its last :data:`WORDS_SCORES` held-out scores (what it
        learned lately); a measured candidate's over the labels it was measured on.
        """
        setting = self.settings["prelabel"]["method"]
        if setting == "none":
            return "No pre-label: switched off in the settings"
        paused = ""
        if self.learner is not None and self.learner.failed:
            paused = "; learning has stopped (the log says why)"
        if setting != "auto":
            try:
                choice = self.prelabel_choice()  # a setting: nothing to measure
            except LabelAssistError as exc:
                return f"No pre-label: {exc}"
            if choice.method is None:
                return f"No pre-label: {choice.reason}{paused}"
            return f"Pre-label {self._title(setting)}{paused}"
        choice = self.current_choice()
        if choice is None:
            return f"Pre-label: brightness threshold (no labels yet to compare with){paused}"
        if choice.method is None:
            return f"No pre-label: none matched your labels well enough{paused}"
        title = self._title(choice.method)
        if choice.method == "learned":
            scores = [s.dice for s in (self.learner.scores(WORDS_SCORES) if self.learner else ())]
        else:
            summary = choice.evaluation.summaries.get(choice.method) if choice.evaluation else None
            scores = [r.dice for r in choice.evaluation.rows_of(choice.method)] if summary else []
        if not scores:
            return f"Pre-label {title}{paused}"
        n = len(scores)
        last = "your last label" if n == 1 else f"your last {n}"
        return f"Pre-label {title}: matches {last} at {round(100 * float(np.mean(scores)))} %{paused}"

    def _title(self, method: str) -> str:
        # From names alone: saying what a pre-label is never loads a model (the words are asked for
        # each time a sample opens).
        if method == "learned":
            learned = self._learned_candidate()
            return learned.title if learned is not None else "learned from your labels"
        if method.startswith("shipped:"):
            return f"from {_shipped_title(method.split(':', 1)[1])}"
        if method == "onnx":
            entry = current_model_entry(self.project)  # two small JSON files, no model
            if entry is not None and entry.source == "tablet":
                return f"learned on this tablet from {entry.trained_on} of your labels"
        return f"from {CANDIDATE_TITLES.get(method, method)}"

    def automatic_methods(self) -> list[str]:
        """The names of the candidates ``auto`` chooses from now (see :meth:`candidates`)."""
        return list(self.candidates())

    def evaluation_inputs(self, limit: int | None = None,
                          also_trained_on=None) -> list[tuple[Sample, np.ndarray, np.ndarray | None]]:
        """(sample, saved mask, previous frame's mask) of the newest labelled samples; database reads only.

        ``also_trained_on``: a :class:`~labelassist.session.training_rules.TrainedOn` whose labels are
        left out too (the adapted tap-to-segment model's).
        """
        # Nothing is measured on a label it trained on: the installed tablet model's training labels
        # are left out for every candidate (the newest labels, held out from it, remain).
        trained = trained_on(current_model_entry(self.project), self.project.name)
        others = [t for t in (trained, also_trained_on) if t is not None]
        skip = sum(len(t.ids) + len(t.names) for t in others)
        pairs = list(self.store.latest_labels(newest=limit + skip)) \
            if limit is not None else sorted(self.store.latest_labels(), key=lambda p: -p[1].id)
        pairs = [p for p in pairs if not any(p[0] in t for t in others)][:limit]
        inputs = []
        for sample, label in pairs:
            try:
                inputs.append((sample, label.mask, self.previous_mask(sample)))
            except DamagedLabelError as exc:  # a damaged label measures nothing; the rest still do
                log.warning("left out of the evaluation: %s", exc)
        return inputs

    def _evaluate(self, inputs, methods, progress=None) -> Evaluation:
        """The methods on the inputs; ``learned`` is not run (it learned from them) but reports its record."""
        candidates = self.candidates()
        run = [m for m in methods if m != "learned"]
        params = {m: dict(p) for m, p in self.settings["prelabel"]["params"].items() if m in run}
        model = load_model(self.project) if "onnx" in run else None
        if model is not None:
            params.setdefault("onnx", {}).setdefault("threshold", model.threshold)
        own = {m: (c.step, c.model) for m, c in candidates.items() if m in run and c.step != m}
        for m in own:  # a shipped model runs with its own card's threshold, as run_prelabel does
            if candidates[m].model is not None and m not in params:
                params[m] = {"threshold": candidates[m].model.threshold}
        evaluation = evaluate_prelabels(_PrelabelSamples(self.project, inputs), run, params=params,
                                        progress=progress, model=model, registry=self.registry, candidates=own)
        return self._with_learned(evaluation) if "learned" in methods else evaluation

    def evaluate_prelabels(self, methods: list[str] | None = None, limit: int | None = None,
                           progress: Callable[[int, int], None] | None = None) -> Evaluation:
        """DSC of pre-label methods against the labels already in the project (newest first).

        ``learned`` reports the instant learner's held-out record (it learned from these labels).
        """
        inputs = self.evaluation_inputs(limit)
        if not inputs:
            raise LabelAssistError("the project has no labels yet to measure pre-labels against")
        return self._evaluate(inputs, methods or self.automatic_methods(), progress)

