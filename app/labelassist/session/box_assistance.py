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

import cv2
import numpy as np

from labelassist.errors import LabelAssistError
from labelassist.fileio import file_hash
from labelassist.project import Project
from labelassist.research.box_eval import evaluate_box_prompts
from labelassist.session.assistance import Assistance, LabelledImages, remeasure_due
from labelassist.session.assisted import Assisted
from labelassist.session.background import Background
from labelassist.session.prompting import (LARGE_SHARE, ObjectPrompt, ObjectProposal, nothing_found,
                                          proposal_words)
from labelassist.store import DamagedLabelError
from labelassist.workflow.objects import object_at
from labelassist.workflow.prelabel import PrelabelContext
from labelassist.workflow.results import Prelabel

log = logging.getLogger(__name__)

# Tap-to-segment: the box-prompt model and GrabCut are compared on objects (spread over sizes) of the
# newest labelled samples; GrabCut takes up to seconds per box, so both are bounded.
BOX_EVALUATION_SAMPLES = 4
BOX_EVALUATION_OBJECTS = 8
#: The events' ``assistance`` of a tap-to-segment prompt answered (any method).
SEGMENT_ASSISTANCE = ("object:box_model", "object:grabcut", "object:watershed", "prelabel:box_model")
#: The newest labels whose largest object sets how large a proposal may be before it is called out.
LARGEST_OBJECT_LABELS = 4


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
    tap_method: str = "watershed"  # what a tap alone runs: box_model or watershed


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
        self._adapted = None  # (segmenter with the adapted decoder or the base, its history entry)
        self._generation = 0  # counts decoder changes (prompt_model_changed)
        self._segment_used = False  # tap-to-segment answered a prompt in this session
        self._largest_share: tuple[int, float] | None = None  # (labels counted, share)

    @property
    def settings(self) -> dict[str, Any]:
        return self.project.settings

    def segment_box(self, sample_id: int, box: tuple[float, float, float, float],
                    current: Assisted | None = None) -> Prelabel:
        """Tap-to-segment with a drawn box, the whole answer (research and the CLI; the kiosk
        asks :meth:`propose` for one object)."""
        segmenter = self.box_segmenter()
        if segmenter is None or self.box_choice(wait=not self.background.running).method == "grabcut":
            return self.assistance.prelabel(sample_id, "grabcut", current, box=box)
        image = self.assistance.image_of(self.store.sample(sample_id), current)
        embedding = segmenter.embed_cached(sample_id, image)
        mask = segmenter.segment(embedding, box)
        self.store.defer_event("prelabel", actor=self.author, sample_id=sample_id, assistance="prelabel:box_model")
        return Prelabel(mask=mask, probability=None, method="box_model")

    def propose(self, sample_id: int, prompt: ObjectPrompt, current: Assisted | None = None) -> ObjectProposal:
        """One object for a prompt, never added: the screen shows it with Add and Discard.

        ``segment`` prompts run the promptable model when one is installed and :meth:`box_choice`
        says so (for a box: measured better than GrabCut; for taps alone: better than the
        seeded watershed, or adapted to the project when unmeasured), else GrabCut for a box and
        the seeded watershed for taps; ``wand`` prompts run the magic wand. The answer is cut to the object the
        prompt points at (:func:`labelassist.workflow.objects.object_at`). Bad prompts raise
        :class:`~labelassist.errors.LabelAssistError` with one line saying what to do.
        """
        if prompt.empty:
            raise LabelAssistError("tap on the object or draw a box around it first")
        sample = self.store.sample(sample_id)
        image = self.assistance.image_of(sample, current)
        note = None
        if prompt.tool == "wand":
            method = "flood"
            result = self.assistance.run_prelabel("flood", image, PrelabelContext(points=list(prompt.points)))
            mask, note = result.mask, result.note
        else:
            segmenter = self.box_segmenter()
            choice = self.box_choice(wait=not self.background.running) if segmenter is not None else None
            use_model = choice is not None and (choice.method if prompt.box is not None
                                                else choice.tap_method) == "box_model"
            if use_model:
                method = "box_model"
                embedding = segmenter.embed_cached(sample_id, image)
                mask = segmenter.segment(embedding, prompt.box, points=prompt.points, negative=prompt.negative)
            elif prompt.box is not None:
                method = "grabcut"
                context = PrelabelContext(box=prompt.box, points=list(prompt.points),
                                          background_points=list(prompt.negative))
                mask = self.assistance.run_prelabel(method, image, context).mask
            else:
                method = "watershed"
                # "Not object" taps add to the background; the image border stays background too
                # (without it one "not object" tap would let the object flood the whole image).
                frame = np.zeros(image.shape[:2], bool)
                frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
                context = PrelabelContext(points=list(prompt.points), background_points=list(prompt.negative),
                                          background_scribble=frame)
                mask = self.assistance.run_prelabel(method, image, context).mask
            self._segment_used = True
        mask = object_at(mask, prompt.points, prompt.box)
        self.store.defer_event("prelabel", actor=self.author, sample_id=sample_id, assistance=f"object:{method}",
                               box=list(prompt.box) if prompt.box else None, taps=len(prompt.points),
                               negative_taps=len(prompt.negative), pixels=int(mask.sum()))
        if not mask.any():
            return ObjectProposal(prompt, None, method, "", nothing_found(prompt))
        words, problem = proposal_words(prompt, mask, note, max(LARGE_SHARE, 1.5 * self.largest_object_share()))
        return ObjectProposal(prompt, mask, method, words, problem)

    def segment_used(self) -> bool:
        """Whether tap-to-segment has answered a prompt in this project (this session or an earlier
        one, as its events say): only then is the box-prompt model's decoder worth adapting."""
        if not self._segment_used:
            self._segment_used = self.store.has_event("prelabel", SEGMENT_ASSISTANCE)
        return self._segment_used

    def largest_object_share(self) -> float:
        """The share of the image the largest object of the newest labels covers (0 without labels).

        Read again when labels were added; a proposal much larger than this is called out.
        """
        labelled = len(self.store.labelled_ids())
        if self._largest_share is None or self._largest_share[0] != labelled:
            shares = [0.0]
            for _, label in self.store.latest_labels(newest=LARGEST_OBJECT_LABELS):
                try:
                    mask = label.mask
                except DamagedLabelError:
                    continue
                n, _, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
                if n > 1:
                    shares.append(float(stats[1:, cv2.CC_STAT_AREA].max()) / mask.size)
            self._largest_share = (labelled, max(shares))
        return self._largest_share[1]

    def box_segmenter(self):
        """The box-prompt model tap-to-segment runs (LiteMedSAM, with the project's adapted decoder
        when one is installed: :mod:`labelassist.session.prompt_model`), else None.

        Looked for once per session (loading it takes seconds).
        """
        base = self.base_segmenter()
        if base is None:
            return None
        generation = self._generation
        adapted = self._adapted
        if adapted is None:
            entry = self._prompt_entry()
            adapted = (base, None)
            if entry is not None:
                try:
                    if file_hash(entry.onnx) != entry.sha256:
                        raise LabelAssistError(f"{entry.onnx} is not the file that was installed")
                    adapted = (base.with_decoder(entry.onnx), entry)
                except (LabelAssistError, OSError) as exc:
                    # LiteMedSAM's own decoder runs, and nothing claims the broken one does
                    log.warning("the adapted tap-to-segment model is not used: %s", exc)
            if generation == self._generation:  # not if the decoder changed meanwhile
                self._adapted = adapted
        return adapted[0]

    def prompt_entry(self):
        """The history entry of the adapted decoder in use, or None (LiteMedSAM's own)."""
        self.box_segmenter()
        return None if self._adapted is None else self._adapted[1]

    def _prompt_entry(self):
        from labelassist.session.prompt_model import PromptModels

        return PromptModels(self.project, self.author, self).current_entry()

    def base_segmenter(self):
        """LiteMedSAM with its own decoder when installed, else None (looked for once per session)."""
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
        self._adapted = None

    def prompt_model_changed(self) -> None:
        """The adapted decoder was installed or rolled back: use the new one and measure again."""
        self._generation += 1  # a measurement or a lookup under way for the old one is not kept
        self._adapted = None
        self._box_choice = None
        self._box_measuring = -1

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
            return BoxChoice("grabcut", why, tap_method="watershed")
        if setting != "auto":
            return BoxChoice(setting, "chosen in the project settings",
                             tap_method="box_model" if setting == "box_model" else "watershed")
        labelled = len(self.store.labelled_ids())
        # Unmeasured, a tap runs the model only once it has learned the project's objects: LiteMedSAM's
        # own decoder learned from boxes, and finds next to nothing from one tap (bench_prompt_adapt).
        taps = "box_model" if self.prompt_entry() is not None else "watershed"
        if labelled == 0:
            return BoxChoice("box_model", "no labels yet to compare the box-prompt model with GrabCut",
                             tap_method=taps)
        current = self._box_choice
        if current is not None and not remeasure_due(current.labelled_at, labelled):
            return current
        inputs = self._evaluation_inputs(BOX_EVALUATION_SAMPLES)
        if wait or not self.background.running:
            return self._measure_box_choice(inputs, labelled)
        if self._box_measuring != labelled:
            self._box_measuring = labelled
            self.background.submit(self._measure_box_choice, inputs, labelled)
        return current or BoxChoice("box_model", "measuring the box-prompt model against GrabCut", tap_method=taps)

    def boxes_use_model(self) -> bool:
        """Whether boxes or taps run the box-prompt model as far as known now (no measurement started):
        then each image's embedding is worth computing ahead."""
        setting = self.settings["prelabel"]["box_method"]
        if setting != "auto":
            return setting == "box_model"
        choice = self._box_choice
        return choice is None or "box_model" in (choice.method, choice.tap_method)

    def evaluate_box_prompts(self, limit: int | None = BOX_EVALUATION_SAMPLES,
                             progress: Callable[[int, int], None] | None = None, points: bool = False):
        """Box-prompt model (when installed) and GrabCut on the objects of the newest labels.

        Labels the adapted decoder (or the pre-label model) trained on are left out. With
        ``points`` each object is also prompted with one tap at its interior point (the model,
        and the watershed GrabCut's kiosk falls back to for taps), and where the project's
        adapted decoder is in use, LiteMedSAM's own decoder is measured beside it
        (``litemedsam``: before adaptation). Returns a
        :class:`~labelassist.research.box_eval.BoxEvaluation`.
        """
        inputs = self._evaluation_inputs(limit)
        if not inputs:
            raise LabelAssistError("the project has no labels yet to measure tap-to-segment against")
        return self._evaluate_boxes(inputs, progress, points=points, base=points)

    def _evaluation_inputs(self, limit):
        """The newest labels neither the pre-label model nor the adapted decoder trained on."""
        from labelassist.session.training_rules import trained_on

        entry = self.prompt_entry()
        return self.assistance.evaluation_inputs(
            limit, also_trained_on=None if entry is None else trained_on(entry, self.project.name))

    def _evaluate_boxes(self, inputs, progress=None, points: bool = False, base: bool = False):
        segmenter = self.box_segmenter()

        def grabcut(image, boxes):  # with the project's grabcut parameters, as a drawn box runs it
            return [self.assistance.run_prelabel("grabcut", image, PrelabelContext(box=b)).mask for b in boxes]

        def watershed(image, taps):  # what a tap runs without the model
            return [object_at(self.assistance.run_prelabel("watershed", image, PrelabelContext(points=[t])).mask,
                              [t]) for t in taps]

        last: dict = {}

        def embed(model, image):  # boxes and taps on one image share its embedding
            key = (id(model.encoder), id(image))
            if key not in last:
                last.clear()
                last[key] = model.embed(image)
            return last[key]

        def by_box(model):
            def run(image, boxes):
                embedding = embed(model, image)
                return [model.segment(embedding, b) for b in boxes]
            return run

        def by_tap(model):
            def run(image, taps):
                embedding = embed(model, image)
                return [model.segment(embedding, points=[t]) for t in taps]
            return run

        segmenters, taps = {"grabcut": grabcut}, {}
        if segmenter is not None:
            segmenters = {"box_model": by_box(segmenter), **segmenters}
            taps["box_model"] = by_tap(segmenter)
            own = self.base_segmenter()
            if base and own is not segmenter:
                segmenters["litemedsam"] = by_box(own)
                taps["litemedsam"] = by_tap(own)
        if points:
            taps["watershed"] = watershed
        return evaluate_box_prompts(_BoxSamples(self.project, inputs), segmenters,
                                    boxes_per_image=BOX_EVALUATION_OBJECTS, progress=progress,
                                    point_segmenters=taps if points else None)

    def _measure_box_choice(self, inputs, labelled: int) -> BoxChoice:
        # May run on the worker thread: reads images, no database writes (the event is deferred).
        generation = self._generation
        evaluation = self._evaluate_boxes(inputs, points=True)
        best = evaluation.best()
        taps = {m: evaluation.mean_dice(m, "point") for m in evaluation.point_methods
                if evaluation.objects(m, "point")}
        tap_method = max(taps, key=lambda m: (taps[m], m == "box_model")) if taps else "box_model"
        if best is None:
            unmeasured = "box_model" if self.prompt_entry() is not None else "watershed"
            why = ("the labels so far have no objects to draw boxes around" if inputs else
                   "no labels left that tap-to-segment did not learn from")
            choice = BoxChoice("box_model", why, evaluation, labelled, tap_method=unmeasured)
        else:
            other = [m for m in evaluation.methods if m != best][0]
            tap_words = (f"; a tap runs {tap_method}: DSC {taps[tap_method]:.2f}" if taps else "")
            choice = BoxChoice(best, f"{best}: DSC {evaluation.mean_dice(best):.2f} against {other} "
                                     f"{evaluation.mean_dice(other):.2f} on {evaluation.objects(best)} objects "
                                     f"of {len(inputs)} labelled samples{tap_words}", evaluation, labelled,
                               tap_method=tap_method)
        if generation != self._generation:
            return choice  # measured on a decoder replaced meanwhile: the next ask measures again
        self._box_choice = choice
        self.store.defer_event("box_choice", actor=self.author, method=choice.method, reason=choice.reason,
                               tap_method=choice.tap_method)
        return choice
