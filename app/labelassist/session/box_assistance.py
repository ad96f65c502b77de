"""Which box method tap-to-segment runs, and the measurement behind the choice.

``prelabel.box_method = "auto"`` compares the box-prompt model (LiteMedSAM, when installed) with
GrabCut on the objects of the newest labels (boxes = the objects' bounding boxes) and takes the
better; measured again as labels come in (:func:`~labelassist.session.assistance.remeasure_due`),
on the background thread in the kiosk. No database writes here except deferred events.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any, Callable

from labelassist.errors import LabelAssistError
from labelassist.project import Project
from labelassist.research.box_eval import evaluate_box_prompts
from labelassist.session.assistance import Assistance, LabelledImages, remeasure_due
from labelassist.session.assisted import Assisted
from labelassist.session.background import Background
from labelassist.workflow.prelabel import PrelabelContext
from labelassist.workflow.results import Prelabel

log = logging.getLogger(__name__)

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


class _BoxSamples(LabelledImages):
    def __iter__(self):
        return ((sample.name, image, mask) for sample, image, mask, _ in super().__iter__())


class BoxAssistance:
    """What a box drawn for tap-to-segment runs in one session, and the runs.

    Parameters
    ----------
    project : Project
    author : str or None
        Recorded with the events.
    background : Background
        Where a due measurement runs when the caller does not wait for it.
    assistance : Assistance
        Runs GrabCut with the project's parameters, and gives the newest labels.
    """

    def __init__(self, project: Project, author: str | None, background: Background, assistance: Assistance):
        self.project, self.store, self.author, self.background = project, project.store, author, background
        self.assistance = assistance
        self._box_choice: BoxChoice | None = None
        self._box_measuring = -1
        self._segmenter_lookup = SegmenterLookup.NOT_YET
        self._segmenter = None  # the box-prompt model, when the lookup FOUND one

    @property
    def settings(self) -> dict[str, Any]:
        return self.project.settings

    def segment_box(self, sample_id: int, box: tuple[float, float, float, float],
                    current: Assisted | None = None) -> Prelabel:
        """Tap-to-segment with a drawn box: the box-prompt model or GrabCut, as :meth:`box_choice` says."""
        segmenter = self.box_segmenter()
        if segmenter is None or self.box_choice(wait=not self.background.running).method == "grabcut":
            return self.assistance.prelabel(sample_id, "grabcut", current, box=box)
        image = self.assistance.image_of(self.store.sample(sample_id), current)
        embedding = segmenter.embed_cached(sample_id, image)
        mask = segmenter.segment(embedding, box)
        self.store.defer_event("prelabel", actor=self.author, sample_id=sample_id, assistance="prelabel:box_model")
        return Prelabel(mask=mask, probability=None, method="box_model")

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
        inputs = self.assistance.evaluation_inputs(BOX_EVALUATION_SAMPLES)
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
        inputs = self.assistance.evaluation_inputs(limit)
        if not inputs:
            raise LabelAssistError("the project has no labels yet to measure tap-to-segment against")
        return self._evaluate_boxes(inputs, progress)

    def _evaluate_boxes(self, inputs, progress=None):
        segmenter = self.box_segmenter()

        def grabcut(image, boxes):  # with the project's grabcut parameters, as a drawn box runs it
            return [self.assistance.run_prelabel("grabcut", image, PrelabelContext(box=b)).mask for b in boxes]

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
