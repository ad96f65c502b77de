"""Session calls off the UI thread: journal writes, saves, opening samples, tap-to-segment.

Threading design
----------------
``Session`` (and its single SQLite connection) is not thread-safe, and a save is a
synchronous fsynced write (5-10 ms), a pre-label or GrabCut can take much longer. So:

* exactly one worker thread runs Session calls, one at a time, in the order they were
  asked for (FIFO). Order matters: a stroke journalled before "save & next" must reach
  the journal before the save clears it, and the next sample must be chosen after the
  save marked this one as labelled;
* every call on the Session from any thread holds :attr:`SessionWorker.lock`; the UI
  thread takes it only for quick reads (settings, counts) via :meth:`SessionWorker.call_now`;
* a newer save of the same sample replaces one still waiting (coalescing, as LabelMe
  does), and so does a newer "remember where I am";
* "Save & next" is a :class:`~labelassist.session.save_flow.SaveFlow` that lives on this
  thread (:meth:`SessionWorker.review`): the UI sends frozen requests (the mask, then each
  answer of the user) and gets back the frozen state to render. With nothing to show the user
  (no inspection warning, no post-processing suggestion) submit, save and next are one job and
  one result back to the UI, so the next image is up one clock tick sooner;
* results come back on the UI thread through ``deliver`` (``kivy.clock.Clock``'s
  ``schedule_once``, which is safe to call from another thread);
* errors are logged with their stack trace and reach the UI as one plain sentence.

Drawing never waits for this thread. The only wait is at the end of the next stroke: before
that stroke is journalled, ``LabelScreen.journal`` waits for the previous stroke's journal
write, which is normally done long before. That is what "every finished stroke reaches disk
before the next one is stored" costs.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

import numpy as np

from labelassist.session.save_flow import Answer, Review, SaveFlow, SubmitMask, plain_message

log = logging.getLogger(__name__)


class _Job:
    __slots__ = ("key", "fn", "args", "kwargs", "future", "on_done", "on_error")

    def __init__(self, key, fn, args, kwargs, on_done, on_error):
        self.key, self.fn, self.args, self.kwargs = key, fn, args, kwargs
        self.future: Future = Future()
        self.on_done, self.on_error = on_done, on_error


class SessionWorker:
    """One background thread that runs calls on a :class:`labelassist.session.Session`.

    Parameters
    ----------
    session : Session
    deliver : callable(fn), optional
        Runs ``fn()`` on the UI thread (the app passes Clock-based delivery); default: call
        it on the worker thread (tests without Kivy).
    """

    def __init__(self, session, deliver: Callable[[Callable[[], None]], None] | None = None):
        self.session = session
        self.lock = threading.RLock()
        self._deliver = deliver or (lambda fn: fn())
        self._queue: deque[_Job] = deque()
        self._waiting: dict[str, _Job] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._flow: SaveFlow | None = None  # the Save & next open now (worker thread only)
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="session-worker", daemon=True)
        self._thread.start()

    # -- asking -----------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args, key: str | None = None,
               on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[str], None] | None = None, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)`` on the worker; a job with the same ``key`` still waiting is replaced."""
        job = _Job(key, fn, args, kwargs, on_done, on_error)
        with self._cond:
            if self._closed:
                raise RuntimeError("the session worker is closed")
            if key is not None and key in self._waiting:
                old = self._waiting.pop(key)
                try:
                    self._queue.remove(old)
                except ValueError:
                    pass
                # whoever waits on the replaced job learns when the newer one is done
                job.future.add_done_callback(lambda f, o=old.future: _copy_result(f, o))
            if key is not None:
                self._waiting[key] = job
            self._queue.append(job)
            self._idle.clear()
            self._cond.notify()
        return job.future

    @property
    def closed(self) -> bool:
        """Closed (the app stops or switched projects): nothing more can be asked."""
        return self._closed

    def call_now(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run a quick Session read on this thread, serialised with the worker."""
        with self.lock:
            return fn(*args, **kwargs)

    # -- the Session calls the UI makes in the background ----------------------------------
    def journal(self, sample_id: int, kind: str, indices: np.ndarray, values: np.ndarray,
                on_error=None) -> Future:
        """Session.record_edit of one finished edit (durable when the future is done)."""
        return self.submit(self.session.record_edit, sample_id, kind, indices, values, on_error=on_error)

    def save(self, sample_id: int, mask: np.ndarray, on_done=None, on_error=None, **fields) -> Future:
        """Session.save of a mask copy; a newer save of the same sample waiting replaces it."""
        return self.submit(self.session.save, sample_id, np.array(mask, dtype=bool, copy=True),
                           key=f"save:{sample_id}", on_done=on_done, on_error=on_error, **fields)

    def review(self, request: SubmitMask | Answer, on_done=None, on_error=None) -> Future:
        """One step of "Save & next" on the worker: a :class:`SubmitMask` starts a new
        :class:`SaveFlow` (which, with nothing to show the user, saves and opens the next sample
        in this same job); an :class:`Answer` is the user's choice on the flow open now.

        ``on_done`` gets the flow's new :class:`Review`, or None when the answer changed nothing
        (a second tap, an answer to a flow that was replaced). ``on_error`` gets a plain sentence
        when the flow raised (a failed submit, inspection or highlight: nothing was saved); a
        failed save or open is a state of the flow (``SAVE_FAILED``, ``OPEN_FAILED``).
        """
        session = self.session

        def work() -> Review | None:
            if isinstance(request, SubmitMask):
                self._flow = SaveFlow(session, request.sample_id, request.mask, request.strokes)
                return self._flow.start()
            flow = self._flow
            if flow is None:
                return None
            before = flow.state
            after = flow.answer(request)
            return None if after is before else after

        work.__name__ = "review"
        return self.submit(work, on_done=on_done, on_error=on_error)

    def remember(self, **state) -> Future:
        """Session.remember, coalesced: only the newest screen state waiting is written."""
        with self._cond:
            old = self._waiting.get("remember")
            if old is not None and old in self._queue:
                state = {**old.kwargs, **state}
        return self.submit(self.session.remember, key="remember", **state)

    # -- lifecycle --------------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every job asked for so far is done; False on timeout."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued jobs (saves must reach disk), then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._idle.set()
                    self._cond.wait()
                if not self._queue and self._closed:
                    self._idle.set()
                    return
                job = self._queue.popleft()
                if job.key is not None and self._waiting.get(job.key) is job:
                    del self._waiting[job.key]
            try:
                with self.lock:
                    result = job.fn(*job.args, **job.kwargs)
            except BaseException as exc:  # noqa: BLE001 - reported to the UI in plain words
                log.error("%s failed", getattr(job.fn, "__name__", job.fn), exc_info=exc)
                job.future.set_exception(exc)
                if job.on_error is not None:
                    message = plain_message(exc)
                    self._deliver(lambda m=message, cb=job.on_error: cb(m))
            else:
                job.future.set_result(result)
                if job.on_done is not None:
                    self._deliver(lambda r=result, cb=job.on_done: cb(r))
            with self._cond:
                if not self._queue:
                    self._idle.set()


def _copy_result(source: Future, target: Future) -> None:
    if target.done():
        return
    if source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


__all__ = ["SessionWorker", "plain_message"]
