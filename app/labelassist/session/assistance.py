"""Which pre-label and which box method a session uses, and the measurement behind each choice.

``prelabel.method = "auto"`` measures the automatic pre-label methods on the newest labelled
samples and takes the best; ``prelabel.box_method = "auto"`` compares the box-prompt model with
GrabCut on the objects of the newest labels. Both are measured again as labels come in
(:func:`remeasure_due`), on the background thread in the kiosk. No database writes happen here
except through deferred events, so a measurement may run on the worker thread.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from labelassist.errors import ImageReadError, LabelAssistError
from labelassist.project import Project
from labelassist.research.box_eval import evaluate_box_prompts
from labelassist.research.prelabel_eval import Evaluation, evaluate_prelabels
from labelassist.session.assisted import Assisted
from labelassist.session.background import Background
from labelassist.store import DamagedLabelError, Sample
from labelassist.workflow.prelabel import PrelabelContext
from labelassist.workflow.registry import ProjectRegistry, Registry
from labelassist.workflow.results import Prelabel

log = logging.getLogger(__name__)

# Methods that need no prompt: the ones the session can pre-label with on its own.
AUTOMATIC_PRELABELS = ("otsu", "previous", "onnx")
# Labelled samples an automatic choice of pre-label method is measured on (the newest ones).
EVALUATION_SAMPLES = 12
# Re-measure the pre-label methods after this many new labels.
REEVALUATE_EVERY = 10
# Tap-to-segment: the box-prompt model and GrabCut are compared on objects (spread over sizes) of the
# newest labelled samples; GrabCut takes up to seconds per box, so both are bounded.
BOX_EVALUATION_SAMPLES = 4
BOX_EVALUATION_OBJECTS = 8


class SegmenterLookup(enum.Enum):
    """Whether the box-prompt model has been looked for, and what was found."""

    NOT_YET = "not looked for yet"
    NONE = "none installed, or the installed one does not load"
    FOUND = "installed and loaded"


@dataclass
class BoxChoice:
    """What a box drawn for tap-to-segment runs (``box_model`` or ``grabcut``), and the evidence."""

    method: str
    reason: str
    evaluation: Any = None  # research.box_eval.BoxEvaluation when measured
    labelled_at: int = 0


@dataclass
class PrelabelChoice:
    """Which pre-label the session uses, and the evidence."""

    method: str | None
    reason: str
    evaluation: Evaluation | None = None
    labelled_at: int = 0


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


class _PrelabelSamples(LabelledImages):
    def __iter__(self):
        return ((sample.name, image, mask, previous) for sample, image, mask, previous in super().__iter__())


class _BoxSamples(LabelledImages):
    def __iter__(self):
        return ((sample.name, image, mask) for sample, image, mask, _ in super().__iter__())


class Assistance:
    """The pre-label and box-method choices of one session, and the pre-label runs.

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
    """

    def __init__(self, project: Project, author: str | None, background: Background,
                 registry: Registry | ProjectRegistry):
        self.project, self.store, self.author, self.background = project, project.store, author, background
        self.registry = registry
        self.choice: PrelabelChoice | None = None  # the last measured pre-label choice
        self._measuring = -1  # labelled count a background measurement was started for
        self._box_choice: BoxChoice | None = None
        self._box_measuring = -1
        self._segmenter_lookup = SegmenterLookup.NOT_YET
        self._segmenter = None  # the box-prompt model, when the lookup FOUND one

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
        """One pre-label method with the project's parameters for it."""
        params = dict(self.settings["prelabel"]["params"].get(method, {}))
        if method == "onnx" and context.model is not None and "threshold" not in params:
            params["threshold"] = context.model.threshold  # the card's threshold, unless the project sets one
        return self.registry.get("prelabel", method)(image, context, **params)

    def _image(self, sample: Sample, current: Assisted | None) -> np.ndarray:
        """The sample's pixels: those of the open sample when it is this one, else read again."""
        if current is not None and current.sample.id == sample.id:
            return current.image
        return self.project.read_image(sample)

    def prelabel(self, sample_id: int, method: str, current: Assisted | None = None, **prompt: Any) -> Prelabel:
        """Run one pre-label method on a sample, e.g. a tap (``points=[(x, y)]``) or a ``box``; logged."""
        sample = self.store.sample(sample_id)
        image = self._image(sample, current)
        context = PrelabelContext(previous_mask=self.previous_mask(sample), model=load_model(self.project),
                                  **prompt)
        result = self.run_prelabel(method, image, context)
        self.store.log_event("prelabel", actor=self.author, sample_id=sample_id, assistance=f"prelabel:{method}")
        return result

    def segment_box(self, sample_id: int, box: tuple[float, float, float, float],
                    current: Assisted | None = None) -> Prelabel:
        """Tap-to-segment with a drawn box: the box-prompt model or GrabCut, as :meth:`box_choice` says."""
        segmenter = self.box_segmenter()
        if segmenter is None or self.box_choice(wait=not self.background.running).method == "grabcut":
            return self.prelabel(sample_id, "grabcut", current, box=box)
        image = self._image(self.store.sample(sample_id), current)
        embedding = segmenter.embed_cached(sample_id, image)
        mask = segmenter.segment(embedding, box)
        self.store.defer_event("prelabel", actor=self.author, sample_id=sample_id, assistance="prelabel:box_model")
        return Prelabel(mask=mask, probability=None, method="box_model")

    # -- which pre-label --------------------------------------------------------------------
    def prelabel_choice(self, wait: bool = True) -> PrelabelChoice:
        """The pre-label method in use and why.

        ``prelabel.method = "auto"`` measures the automatic methods on the newest
        labelled samples and takes the best; when even the best mean DSC is below
        ``prelabel.min_dsc`` pre-labelling is switched off (a bad pre-label slows
        the annotator down). ``"none"`` switches it off by hand. With ``wait=False``
        (the kiosk) a due re-measurement runs on the worker thread and the current
        choice is returned meanwhile, so saving and opening never wait for it.
        """
        setting = self.settings["prelabel"]["method"]
        if setting == "none":
            return PrelabelChoice(None, "pre-labelling is switched off in the project settings")
        if setting != "auto":
            self.registry.get("prelabel", setting)  # an unknown name is an error, not a silent 'off'
            return PrelabelChoice(setting, "chosen in the project settings")
        labelled = len(self.store.labelled_ids())
        if labelled == 0:
            return PrelabelChoice("otsu", "no labels yet to measure the methods on", labelled_at=0)
        if self.choice is not None and not remeasure_due(self.choice.labelled_at, labelled):
            return self.choice
        inputs = self.evaluation_inputs(EVALUATION_SAMPLES)
        if wait or not self.background.running:
            self.choice = self._measure_choice(inputs, labelled)
            return self.choice
        if self._measuring != labelled:
            self._measuring = labelled
            self.background.submit(self._measure_choice, inputs, labelled)
        return self.choice or PrelabelChoice("otsu", "measuring the pre-label methods", labelled_at=0)

    def _measure_choice(self, inputs: list, labelled: int) -> PrelabelChoice:
        # May run on the worker thread: reads images, no database access (the event is deferred).
        evaluation = self._evaluate(inputs, self.automatic_methods())
        min_dsc = float(self.settings["prelabel"]["min_dsc"])
        best = evaluation.best(min_dsc)
        top = evaluation.ranking()[0]
        if best is None:
            reason = (f"off: the best method ({top.method}) reaches a DSC of {top.dice_mean:.2f} on "
                      f"{top.n} labelled samples, below {min_dsc:.2f}")
        else:
            reason = f"{best}: DSC {top.dice_mean:.2f} on {top.n} labelled samples (best of {len(evaluation.summaries)})"
        self.choice = PrelabelChoice(best, reason, evaluation, labelled)
        self.store.defer_event("prelabel_choice", actor=self.author, method=best, reason=reason)
        return self.choice

    def automatic_methods(self) -> list[str]:
        """The registered methods that need no prompt (``onnx`` only with a model installed)."""
        has_model = load_model(self.project) is not None
        registered = self.registry.names("prelabel")
        return [m for m in AUTOMATIC_PRELABELS if m in registered and (m != "onnx" or has_model)]

    def evaluation_inputs(self, limit: int | None = None) -> list[tuple[Sample, np.ndarray, np.ndarray | None]]:
        """(sample, saved mask, previous frame's mask) of the newest labelled samples; database reads only."""
        pairs = sorted(self.store.latest_labels(), key=lambda p: -p[1].id)
        if limit is not None:
            pairs = pairs[:limit]
        return [(sample, label.mask, self.previous_mask(sample)) for sample, label in pairs]

    def _evaluate(self, inputs, methods, progress=None) -> Evaluation:
        params = {m: dict(p) for m, p in self.settings["prelabel"]["params"].items() if m in methods}
        model = load_model(self.project) if "onnx" in methods else None
        if model is not None:
            params.setdefault("onnx", {}).setdefault("threshold", model.threshold)
        return evaluate_prelabels(_PrelabelSamples(self.project, inputs), methods, params=params,
                                  progress=progress, model=model, registry=self.registry)

    def evaluate_prelabels(self, methods: list[str] | None = None, limit: int | None = None,
                           progress: Callable[[int, int], None] | None = None) -> Evaluation:
        """DSC of pre-label methods against the labels already in the project (newest first)."""
        inputs = self.evaluation_inputs(limit)
        if not inputs:
            raise LabelAssistError("the project has no labels yet to measure pre-labels against")
        return self._evaluate(inputs, methods or self.automatic_methods(), progress)

    # -- which box method -------------------------------------------------------------------
    def box_segmenter(self):
        """The box-prompt model for tap-to-segment (LiteMedSAM) when installed, else None.

        Looked for once per session (loading it takes seconds).
        """
        if self._segmenter_lookup is SegmenterLookup.NOT_YET:
            from labelassist import models

            try:
                segmenter = models.find_box_segmenter()
            except LabelAssistError as exc:
                log.warning("the box-prompt model is not used: %s", exc)
                segmenter = None
            self.use_box_segmenter(segmenter)
        return self._segmenter

    def use_box_segmenter(self, segmenter) -> None:
        """Use ``segmenter`` for drawn boxes, None for none, instead of looking for the installed
        one (tests and benchmarks leave out LiteMedSAM's seconds-long embeddings)."""
        self._segmenter = segmenter
        self._segmenter_lookup = SegmenterLookup.NONE if segmenter is None else SegmenterLookup.FOUND

    def box_choice(self, wait: bool = True) -> BoxChoice:
        """What a drawn box runs: the box-prompt model or GrabCut, and why.

        ``prelabel.box_method = "auto"`` compares the two on the objects of this
        project's newest labels (boxes = the objects' bounding boxes) and takes
        the better; before there are labels the box-prompt model is used (it is
        the better of the two over the bundled evaluation, ``models/README.md``).
        Without a box-prompt model installed it is always GrabCut. With
        ``wait=False`` (the kiosk) a due measurement runs on the worker thread.
        """
        setting = self.settings["prelabel"]["box_method"]
        segmenter = self.box_segmenter()
        if segmenter is None:
            why = "no box-prompt model is installed" if setting != "grabcut" else "chosen in the project settings"
            return BoxChoice("grabcut", why)
        if setting != "auto":
            return BoxChoice(setting, "chosen in the project settings")
        labelled = len(self.store.labelled_ids())
        if labelled == 0:
            return BoxChoice("box_model", "no labels yet to compare the box-prompt model with GrabCut")
        current = self._box_choice
        if current is not None and not remeasure_due(current.labelled_at, labelled):
            return current
        inputs = self.evaluation_inputs(BOX_EVALUATION_SAMPLES)
        if wait or not self.background.running:
            return self._measure_box_choice(inputs, labelled)
        if self._box_measuring != labelled:
            self._box_measuring = labelled
            self.background.submit(self._measure_box_choice, inputs, labelled)
        return current or BoxChoice("box_model", "measuring the box-prompt model against GrabCut")

    def boxes_use_model(self) -> bool:
        """Whether boxes run the box-prompt model as far as known now (no measurement started)."""
        setting = self.settings["prelabel"]["box_method"]
        if setting != "auto":
            return setting == "box_model"
        return self._box_choice is None or self._box_choice.method == "box_model"

    def evaluate_box_prompts(self, limit: int | None = BOX_EVALUATION_SAMPLES,
                             progress: Callable[[int, int], None] | None = None):
        """Box-prompt model (when installed) and GrabCut on the objects of the newest labels.

        Returns a :class:`~labelassist.research.box_eval.BoxEvaluation`.
        """
        inputs = self.evaluation_inputs(limit)
        if not inputs:
            raise LabelAssistError("the project has no labels yet to measure tap-to-segment against")
        return self._evaluate_boxes(inputs, progress)

    def _evaluate_boxes(self, inputs, progress=None):
        segmenter = self.box_segmenter()

        def grabcut(image, boxes):  # with the project's grabcut parameters, as a drawn box runs it
            return [self.run_prelabel("grabcut", image, PrelabelContext(box=b)).mask for b in boxes]

        segmenters = {"grabcut": grabcut}
        if segmenter is not None:
            def box_model(image, boxes):
                embedding = segmenter.embed(image)
                return [segmenter.segment(embedding, b) for b in boxes]

            segmenters = {"box_model": box_model, **segmenters}
        return evaluate_box_prompts(_BoxSamples(self.project, inputs), segmenters,
                                    boxes_per_image=BOX_EVALUATION_OBJECTS, progress=progress)

    def _measure_box_choice(self, inputs, labelled: int) -> BoxChoice:
        # May run on the worker thread: reads images, no database writes (the event is deferred).
        evaluation = self._evaluate_boxes(inputs)
        best = evaluation.best()
        if best is None:
            choice = BoxChoice("box_model", "the labels so far have no objects to draw boxes around",
                               evaluation, labelled)
        else:
            other = [m for m in evaluation.methods if m != best][0]
            choice = BoxChoice(best, f"{best}: DSC {evaluation.mean_dice(best):.2f} against {other} "
                                     f"{evaluation.mean_dice(other):.2f} on {evaluation.objects(best)} objects "
                                     f"of {len(inputs)} labelled samples", evaluation, labelled)
        self._box_choice = choice
        self.store.defer_event("box_choice", actor=self.author, method=choice.method, reason=choice.reason)
        return choice
