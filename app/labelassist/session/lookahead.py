"""Prepared samples: what the annotator sees when a sample opens, made ahead on the background thread.

Preparing a sample reads its image, runs the pre-processing h(x) for the screen, the pre-label
l(x) and the project model's prediction. The next few samples the selector will offer are
prepared while the annotator works on this one, so opening is instant.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import numpy as np

from labelassist.errors import LabelAssistError
from labelassist.project import Project
from labelassist.session.assistance import Assistance, load_model
from labelassist.session.assisted import Assisted
from labelassist.session.background import Background, wait_all
from labelassist.session.box_assistance import BoxAssistance
from labelassist.session.pool import Selection
from labelassist.store import LabelVersion, Sample
from labelassist.workflow import preprocess
from labelassist.workflow.prelabel import PrelabelContext
from labelassist.workflow.registry import REGISTRY, ProjectRegistry, Registry

log = logging.getLogger(__name__)


def display_image(image: np.ndarray, pipeline: list[dict[str, Any]],
                  registry: Registry | ProjectRegistry = REGISTRY) -> np.ndarray:
    """h(x): the pre-processing ``pipeline`` run on ``image``, as uint8 for the screen.

    The pipeline's steps are looked up in ``registry`` (the session's, to reach the project's
    plug-ins; default the built-in steps only).
    """
    return preprocess.to_uint8(preprocess.run_pipeline(image, pipeline, registry=registry))


class Lookahead:
    """The prepared samples of a session: a cache, and the preparations under way.

    Parameters
    ----------
    project : Project
    assistance : Assistance
        Which pre-label to run, and running it.
    selection : Selection
        Keeps the uncertainty of each prediction made while preparing.
    background : Background
        Where samples are prepared ahead; without a thread nothing is prepared ahead.
    registry : Registry or ProjectRegistry
        Where the pre-processing steps are looked up: the session's registry, with the project's
        plug-ins.
    boxes : BoxAssistance or None
        The box-prompt model, whose image embeddings are computed ahead when boxes run it.
    """

    def __init__(self, project: Project, assistance: Assistance, selection: Selection, background: Background,
                 registry: Registry | ProjectRegistry, boxes: BoxAssistance | None = None):
        self.project, self.store, self.registry = project, project.store, registry
        self.assistance, self.selection, self.background = assistance, selection, background
        self.boxes = boxes
        self._cache: dict[int, Assisted] = {}
        self._futures: dict[int, Future] = {}
        self._side_jobs: list[Future] = []  # background work no sample waits for (box embeddings)
        self._order: list[int] = []  # the samples asked for by the last ahead(), next first
        self._lock = threading.Lock()

    @property
    def settings(self) -> dict[str, Any]:
        return self.project.settings

    def take(self, sample_id: int) -> Assisted:
        """The sample prepared: from the cache, from a preparation under way, or now on this thread."""
        with self._lock:
            assisted = self._cache.pop(sample_id, None)
            future = self._futures.pop(sample_id, None)
        if assisted is None and future is not None:
            try:
                assisted = future.result()
            except LabelAssistError:
                assisted = None  # prepare again below, so the error reaches the caller
        if assisted is None:
            assisted = self.prepare(sample_id)
        return assisted

    def ahead(self, sample_ids: list[int]) -> None:
        """Prepare these samples in the background; other prepared samples are dropped."""
        if not self.background.running:
            return
        with self._lock:
            self._order = list(sample_ids)
            wanted = set(sample_ids)
            for stale in [k for k in self._cache if k not in wanted]:
                del self._cache[stale]
            for sample_id in sample_ids:
                if sample_id in self._cache or sample_id in self._futures:
                    continue
                inputs = self._inputs(sample_id)  # store reads stay on this thread
                future = self.background.submit(self._prepare_from, *inputs)
                self._futures[sample_id] = future
                future.add_done_callback(lambda f, sid=sample_id: self._keep(sid, f))

    def _keep(self, sample_id: int, future: Future) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        with self._lock:
            if self._futures.pop(sample_id, None) is future:
                self._cache[sample_id] = future.result()
        if self.assistance.learned_is_stale(future.result().prelabel) and self.background.running:
            # Made while the learner trained on a newer label, whose refresh found it not ready yet:
            # remade behind the jobs queued, never on the opening path (a second at 1 Mpx).
            job = self.background.submit(self._refresh, sample_id)
            with self._lock:
                self._side_jobs = [f for f in self._side_jobs if not f.done()] + [job]

    def refresh_learned(self, model) -> None:
        """The instant learner has a new model: remake the next prepared sample's pre-label with it.

        Runs on the learner's thread after each training, when ``learned`` is the choice: the
        sample opened next shows what the newest label taught (the ones after it are remade when
        they come next). A sample taken meanwhile keeps what it had.
        """
        choice = self.assistance.current_choice()
        if choice is None or choice.method != "learned" or self.settings["prelabel"]["method"] != "auto":
            return
        with self._lock:
            nxt = next((sid for sid in self._order if sid in self._cache), None)
        if nxt is not None:
            self._refresh(nxt)

    def _refresh(self, sample_id: int) -> None:
        """Remake one prepared sample's learned pre-label with the newest forest, if still cached."""
        with self._lock:
            assisted = self._cache.get(sample_id)
        if assisted is None or assisted.label is not None:
            return
        try:
            prelabel = self.assistance.run_prelabel("learned", assisted.image, PrelabelContext())
        except LabelAssistError as exc:
            log.info("no learned pre-label for %s: %s", assisted.sample.name, exc)
            return
        with self._lock:
            if self._cache.get(sample_id) is assisted:
                self._cache[sample_id] = replace(assisted, prelabel=prelabel)

    def prepared(self, sample_id: int) -> bool:
        """True when the sample's assistance is ready in the cache."""
        with self._lock:
            return sample_id in self._cache

    def forget(self, sample_id: int | None = None) -> None:
        """Drop one prepared sample (it was saved), or all of them (the assistance changed)."""
        with self._lock:
            if sample_id is None:
                self._cache.clear()
            else:
                self._cache.pop(sample_id, None)

    def wait(self, timeout: float = 30.0) -> None:
        """Block until the background thread has finished what it was given (tests, benchmarks)."""
        with self._lock:
            prepares = list(self._futures.values())
        wait_all(prepares, timeout)
        wait_all(list(self._side_jobs), timeout)  # complete now: a prepare queues its side jobs before it ends

    def prepare(self, sample_id: int) -> Assisted:
        """Prepare one sample now, on this thread."""
        return self._prepare_from(*self._inputs(sample_id))

    def _inputs(self, sample_id: int):
        sample = self.store.sample(sample_id)
        label = self.store.latest_label(sample_id)
        method = self.assistance.prelabel_choice(wait=not self.background.running).method
        previous = self.assistance.previous_mask(sample)
        return sample, label, method, previous

    def _prepare_from(self, sample: Sample, label: LabelVersion | None, method: str | None,
                      previous: np.ndarray | None) -> Assisted:
        # Runs on the worker thread: pixels and numpy only, no database access. A
        # re-measurement of the pre-labels queued before this job has finished by now.
        start = time.perf_counter()
        choice = self.assistance.current_choice()
        if choice is not None and self.settings["prelabel"]["method"] == "auto":
            method = choice.method
        image = self.project.read_image(sample)
        display = display_image(image, self.settings["preprocess"]["pipeline"], self.registry)
        model = load_model(self.project)
        prelabel = prediction = None
        if method is not None and label is None:
            try:
                prelabel = self.assistance.run_prelabel(method, image,
                                                        PrelabelContext(previous_mask=previous, model=model))
            except LabelAssistError as exc:
                log.info("no pre-label for %s: %s", sample.name, exc)
        if model is not None:
            try:
                if prelabel is not None and prelabel.method == "onnx":
                    probability = prelabel.probability
                else:
                    probability = model.predict(image)
                prediction = probability > model.threshold
                self.selection.note_uncertainty(sample.id, probability)
            except LabelAssistError as exc:
                log.info("no model prediction for %s: %s", sample.name, exc)
        segmenter = None if self.boxes is None else self.boxes.box_segmenter()
        if segmenter is not None and self.background.running and self.boxes.boxes_use_model():
            # A box drawn later gives a mask in milliseconds. A job of its own, queued behind this
            # one: the encoder takes most of a second on a tablet, and the sample must not wait.
            self._side_jobs = [f for f in self._side_jobs if not f.done()]
            self._side_jobs.append(self.background.submit(segmenter.embed_cached, sample.id, image))
        return Assisted(sample, image, display, prelabel, label, (time.perf_counter() - start) * 1000,
                        prediction=prediction)
