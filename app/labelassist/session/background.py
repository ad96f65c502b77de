"""The session's one background thread: preparing samples ahead, and measurements no save waits for.

One thread, so jobs run in the order they were queued: a re-measurement of the pre-labels queued
before a preparation has finished when that preparation starts.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


class Background:
    """A single worker thread, or none (everything runs on demand on the caller's thread).

    Parameters
    ----------
    enabled : bool
        Start a thread (the kiosk); False for tests and the CLI.
    """

    def __init__(self, enabled: bool):
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="prepare") if enabled else None

    @property
    def running(self) -> bool:
        """Whether jobs go to the thread (False: not enabled, or shut down)."""
        return self._executor is not None

    def submit(self, fn: Callable, *args) -> Future:
        """Queue ``fn(*args)`` behind the jobs already queued."""
        return self._executor.submit(fn, *args)

    def shutdown(self) -> None:
        """Stop the thread; queued jobs that have not started are dropped."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def wait_all(futures: list[Future], timeout: float) -> None:
    """Wait for each future in turn; their errors are not raised here."""
    for f in futures:
        try:
            f.result(timeout=timeout)
        except Exception:  # noqa: BLE001 - errors surface again when the sample is opened
            pass
