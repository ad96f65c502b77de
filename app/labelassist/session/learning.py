"""The session's instant learner on a thread of its own: learns each saved label, teaches from strokes.

A save hands the label to :meth:`SessionLearner.after_save`; on the learner's thread the label's
image is turned into features, the current forest is scored on it (a held-out measurement, kept
in the event log as ``learned`` so the next session starts with the record) and a new forest is
trained. Listeners then hear of the new model (the look-ahead refreshes the pre-labels it made
with the old one; the kiosk offers the open sample's new pre-label). Its own thread, because the
session's background thread prepares the next samples and must not wait seconds behind a
training; one thread, because the tablet has two cores and the pen needs the other.

Without a thread (tests, the CLI, ``labelassist simulate``) the same jobs wait in a queue until
:meth:`SessionLearner.wait` runs them on the caller's thread: a tool that only saves (an import, a
crash test) pays nothing, and one that shows what was learned (``labelassist learn``, ``simulate``)
says when the learner has caught up, as the kiosk's thread does by itself.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable

import numpy as np

from labelassist.errors import ImageReadError
from labelassist.project import Project
from labelassist.store import DamagedLabelError, LabelVersion, Sample

log = logging.getLogger(__name__)

#: Labels the learner trains on when a session opens (the newest ones).
WARM_UP_LABELS = 10
#: Seconds the kiosk's learner waits after the session opens before it learns the earlier labels.
WARM_UP_DELAY_S = 5.0
#: Held-out scores read back from the event log when a session opens.
KEPT_SCORES = 24
#: Jobs a session without a thread keeps until :meth:`SessionLearner.wait` (the newest; the forest
#: learns from the newest labels only anyway).
PENDING_JOBS = WARM_UP_LABELS + 1


class SessionLearner:
    """The instant learner of one session.

    Parameters
    ----------
    project : Project
    author : str or None
        Recorded with the ``learned`` events.
    threaded : bool
        Learn on a thread of its own (the kiosk); False learns at the save, on the caller's thread.
    enabled : bool
        ``prelabel.learn``: False learns nothing (no candidate, no teach mode).

    Attributes
    ----------
    listeners : list of callable
        ``listener(model)`` after each training round, on the learner's thread.
    """

    def __init__(self, project: Project, author: str | None, threaded: bool, enabled: bool = True):
        self.project, self.store, self.author, self.enabled = project, project.store, author, enabled
        # A daemon thread of its own, not an executor's: closing the session (a system stop has 2 s)
        # must not wait for a training to end, and the interpreter must not join it at exit.
        self._queue: queue.Queue | None = None
        if threaded and enabled:
            self._queue = queue.Queue()
            threading.Thread(target=self._serve, args=(self._queue,), name="learner", daemon=True).start()
        self._jobs: list[Future] = []
        self._pending: collections.deque = collections.deque(maxlen=PENDING_JOBS)  # without a thread
        # Saved labels waiting for the next training round (the newest: the forest keeps no more).
        self._to_learn: collections.deque = collections.deque(maxlen=WARM_UP_LABELS)
        self._round_queued = False
        self._closed = threading.Event()
        self._learner = None  # InstantLearner, made on first use (imports scikit-learn)
        self._stack_lock = threading.Lock()
        self._stack: tuple[int, np.ndarray] | None = None  # (sample id, features) of the open image
        self.listeners: list[Callable] = []
        self.failed: str | None = None  # why the learner stopped, when it did

    # -- what it knows ----------------------------------------------------------------------
    @property
    def model(self):
        """The newest :class:`~labelassist.learning.instant.LearnedModel`, or None."""
        return None if self._learner is None else self._learner.model

    def scores(self, limit: int):
        """The newest ``limit`` held-out :class:`~labelassist.learning.instant.Score` s, oldest first."""
        return () if self._learner is None else tuple(self._learner.recent_scores(limit))

    @property
    def learned(self) -> int:
        """Saved labels learned from (this session and the ones before, as far as re-learned)."""
        return 0 if self._learner is None else self._learner.learned

    @staticmethod
    def _working_shape(shape):
        from labelassist.learning.pixel_classifier import working_shape

        return working_shape(shape)

    def _instant(self):
        if self._learner is None:
            from labelassist.learning.instant import InstantLearner  # scikit-learn: off the start-up path

            self._learner = InstantLearner()
        return self._learner

    # -- running jobs -----------------------------------------------------------------------
    def _serve(self, jobs: queue.Queue) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._guarded(fn, *args))
            except Exception as exc:  # noqa: BLE001 - logged by _guarded
                future.set_exception(exc)

    def _run(self, fn: Callable, *args) -> Future | None:
        if not self.enabled or self.failed:
            return None
        future: Future = Future()
        if self._queue is None:
            self._pending.append((future, fn, args))  # run by wait(), on the caller's thread
            return future
        self._jobs = [f for f in self._jobs if not f.done()]
        self._jobs.append(future)
        self._queue.put((future, fn, args))
        return future

    def _guarded(self, fn: Callable, *args):
        try:
            return fn(*args)
        except (MemoryError, ImportError, OSError) as exc:
            # Would fail again (memory, a broken library or install): the learner stops, and
            # labelling goes on with the other pre-labels; the Label screen says so.
            self._fail(exc)
            raise
        except Exception as exc:  # noqa: BLE001 - one odd image: that job is left out, learning goes on
            if not self._closed.is_set():
                log.warning("the instant learner left a job out: %r", exc, exc_info=True)
            raise

    def _fail(self, exc: BaseException) -> None:
        log.error("the instant learner stopped: %r", exc, exc_info=True)
        self.failed = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    def wait(self, timeout: float = 120.0) -> None:
        """Until the learner has finished what it was given: the thread's jobs, or without a thread
        the queued ones, run now on this thread (``labelassist learn``, ``simulate``, tests)."""
        while self._pending:
            future, fn, args = self._pending.popleft()
            if not self.enabled or self.failed or not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._guarded(fn, *args))
            except Exception as exc:  # noqa: BLE001 - logged by _guarded; labelling goes on
                future.set_exception(exc)
        for f in list(self._jobs):
            try:
                f.result(timeout=timeout)
            except Exception:  # noqa: BLE001 - logged by _guarded
                pass

    def close(self) -> None:
        """Stop the thread without waiting: queued jobs are dropped, a training under way ends
        unheard (it changes nothing stored: its ``learned`` event is only written with a save)."""
        self.enabled = False
        self._closed.set()
        self._pending.clear()
        self._to_learn.clear()
        for f in self._jobs:
            f.cancel()
        if self._queue is not None:
            self._queue.put(None)
            self._queue = None
        self.listeners.clear()

    # -- learning ---------------------------------------------------------------------------
    def start(self, labelled: list[tuple[Sample, LabelVersion]], total: int) -> None:
        """Learn the newest labels of earlier sessions, and read back the held-out record.

        ``total`` is how many samples are labelled in all (what the first forest says it learned
        from). ``labelled`` is (sample, label version) of the newest labels, newest first (read on the
        caller's thread: the store stays on it). The learning waits :data:`WARM_UP_DELAY_S` on the
        learner's thread: the kiosk's first screen comes first, and scikit-learn is imported
        there, never on the way to it.
        """
        if not self.enabled:
            return
        record = [event.get("details") or {} for event in self.store.events("learned", newest=KEPT_SCORES)]
        self._run(self._warm_up, record, labelled[:WARM_UP_LABELS], total)

    def _warm_up(self, record: list[dict], labelled, total: int) -> None:
        if self._queue is not None and self._closed.wait(WARM_UP_DELAY_S):
            return  # closed meanwhile
        from labelassist.learning.instant import Score

        scores = []
        for d in record:
            try:
                scores.append(Score.from_event(d))
            except (KeyError, TypeError, ValueError):
                continue  # an event of another version: leave it out
        learner = self._instant()
        from labelassist.learning.instant import LabelDoesNotFit

        learner.restore_scores(scores)
        for sample, label in reversed(labelled):  # oldest first, as they were learned
            if self._closed.is_set():
                return  # the session closed: the project may be closed too
            try:
                mask = label.mask
                image = self.project.read_image(sample)
                learner.learn(sample.id, sample.name, image, mask, score=False, retrain=False, labelled=total)
            except (ImageReadError, DamagedLabelError, LabelDoesNotFit) as exc:
                log.info("the learner leaves out %s: %s", sample.name, exc)
        if labelled and not self._closed.is_set():
            self._trained(learner.retrain())

    def after_save(self, sample: Sample, mask: np.ndarray, label_id: int, image: np.ndarray | None,
                   total: int) -> None:
        """Learn a label just saved (``image``: its pixels when the caller has them, else read again;
        ``total``: how many samples are labelled now).

        Labels saved while a training runs wait together and are learned in one round (each scored
        first by the forest that learned none of them): someone saving every second never builds
        a queue of trainings, and the forest catches up in one.
        """
        with self._stack_lock:
            self._to_learn.append((sample, np.array(mask, dtype=bool), label_id, image, total))
            if self._round_queued:
                return
            self._round_queued = True
        if self._run(self._learn_round) is None:  # switched off or stopped: nothing will run it
            with self._stack_lock:
                self._to_learn.clear()
                self._round_queued = False

    def _learn_round(self) -> None:
        with self._stack_lock:
            batch = list(self._to_learn)
            self._to_learn.clear()
            self._round_queued = False
        learner = self._instant()
        from labelassist.learning.instant import LabelDoesNotFit  # loaded by _instant already

        start = time.perf_counter()
        learned = []
        for sample, mask, label_id, image, total in batch:
            stack = self._cached_stack(sample.id)
            if stack is not None and stack.shape[:2] != self._working_shape(mask.shape):
                stack = None
            try:
                if stack is None and image is None:
                    if self._closed.is_set():
                        return
                    image = self.project.read_image(sample)
                score = learner.learn(sample.id, sample.name, image, mask, stack=stack, labelled=total,
                                      retrain=False)
            except (ImageReadError, LabelDoesNotFit) as exc:
                log.info("the learner leaves out %s: %s", sample.name, exc)
                continue
            learned.append(sample.name)
            if score is not None and not self._closed.is_set():
                # Deferred: written with the next save, never a write of its own from this thread.
                self.store.defer_event("learned", actor=self.author, sample_id=sample.id, label_id=label_id,
                                       **score.to_event())
        if not learned or self._closed.is_set():
            return  # the store may be closed: the forest ends with the session
        model = learner.retrain()
        log.info("learned from %s in %.1f s (%d labels)", ", ".join(learned), time.perf_counter() - start,
                 learner.learned)
        self._trained(model)

    def _trained(self, model) -> None:
        if model is None:
            return
        for listener in list(self.listeners):
            try:
                listener(model)
            except Exception:  # noqa: BLE001 - a listener's error is its own
                log.exception("a listener of the learner failed")

    # -- teach mode -------------------------------------------------------------------------
    def _cached_stack(self, sample_id: int) -> np.ndarray | None:
        with self._stack_lock:
            if self._stack is not None and self._stack[0] == sample_id:
                return self._stack[1]
        return None

    def features(self, sample_id: int, image: np.ndarray) -> np.ndarray:
        """The features of the open image at its working scale, computed once and kept (one image
        at a time: ~100 MB at 1024 x 1024, the largest working scale)."""
        stack = self._cached_stack(sample_id)
        if stack is None:
            from labelassist.learning.instant import image_features

            stack = image_features(image)
            with self._stack_lock:
                self._stack = (sample_id, stack)
        return stack

    def prepare_teach(self, sample_id: int, image: np.ndarray) -> None:
        """Compute the open image's features ahead, on the learner's thread (the teach tool was picked)."""
        self._run(self.features, sample_id, image)

    def teach(self, sample_id: int, image: np.ndarray, object_strokes: np.ndarray,
              background_strokes: np.ndarray) -> np.ndarray:
        """The object probability of the whole image, learned from strokes painted on it.

        Raises ValueError when one class has no stroke (the caller says which is missing).
        """
        from labelassist.learning import pixel_classifier as pc

        stack = self.features(sample_id, image)
        obj, bg = _strokes_at(stack.shape[:2], object_strokes, background_strokes)
        return pc.grow_probability(pc.propose_from_scribbles(stack, obj, bg), np.shape(image)[:2])


def _strokes_at(shape: tuple[int, int], object_strokes: np.ndarray, background_strokes: np.ndarray):
    """Both strokes at the working scale: a pixel touched by a stroke belongs to the class that
    covers more of it, so neighbouring strokes of the two classes never cancel each other out."""
    import cv2

    obj = np.asarray(object_strokes, dtype=bool)
    bg = np.asarray(background_strokes, dtype=bool)
    both = obj & bg
    obj, bg = obj & ~both, bg & ~both  # painted as both: neither
    if obj.shape == tuple(shape):
        return obj, bg
    size = (shape[1], shape[0])
    fo = cv2.resize(obj.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    fb = cv2.resize(bg.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return (fo > 0) & (fo >= fb), (fb > 0) & (fb > fo)
