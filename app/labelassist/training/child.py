"""The trainer child process: ``labelassist _train-round FOLDER``.

The UI process (``session/training.py``) writes a round folder and starts this as a separate
process (:func:`labelassist.training.request.trainer_command`) with stdin and stdout as pipes.
The child

* lowers its own priority first (:func:`lower_priority`), so labelling never waits for it;
* sends its stderr, and the log, to ``FOLDER/trainer.log``;
* dies with the UI: a thread blocked on stdin sees EOF and ends the process at once (every
  platform), and on Linux ``PR_SET_PDEATHSIG`` does the same when the parent dies;
* stops at the next step when a line ``stop`` arrives on stdin (exit 1, no result);
* prints one JSON object per line on stdout as it goes::

      {"stage": "read"|"train"|"export"|"int8"|"score", "step": int, "steps": int, "seconds": float}
      {"stage": "done", "status": "ok"|"failed", "reason": str}

* writes only inside FOLDER, ``result.json`` last (:func:`labelassist.training.tablet_round.run_round`).

Exit code 0 on ``ok`` and on a clean ``failed`` (``result.json`` says why); non-zero otherwise.
A developer replays a round with the same command line. torch is imported only in :func:`main`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

__all__ = ["lower_priority", "limit_torch_threads", "main", "watch_stdin", "die_with_parent"]

EXIT_STOPPED = 1
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def lower_priority() -> None:
    """Idle priority and one thread for every library, before the work starts.

    Linux: ``SCHED_IDLE`` (``os.nice(19)`` where refused); Windows: ``IDLE_PRIORITY_CLASS`` and
    background mode; elsewhere ``os.nice(19)``. Then threadpoolctl, OpenCV and torch get one
    thread (torch when it is loaded already; the round sets its threads where it imports it, so
    a round killed while reading never pays for importing torch).
    """
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, "1")  # for libraries not loaded yet
    if sys.platform.startswith("linux") and hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError):
            _nice()
    elif os.name == "nt":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        process = kernel32.GetCurrentProcess()
        kernel32.SetPriorityClass(process, 0x00000040)  # IDLE_PRIORITY_CLASS
        kernel32.SetPriorityClass(process, 0x00100000)  # PROCESS_MODE_BACKGROUND_BEGIN
    else:
        _nice()
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    import cv2

    cv2.setNumThreads(1)
    if "torch" in sys.modules:
        limit_torch_threads(1)


def limit_torch_threads(threads: int) -> None:
    """torch's intra-op and inter-op threads (the latter only before any inter-op work started)."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def _nice() -> None:
    try:
        os.nice(19 - os.nice(0))
    except (OSError, AttributeError):
        pass


def die_with_parent(parent: int) -> None:
    """Linux: be killed when the parent dies (``PR_SET_PDEATHSIG``), and end now if it already has.

    ``parent`` is ``os.getppid()`` as read at the start; a parent of 1 (init) means the UI died
    before that. Note that the signal comes when the parent *thread* that started the child ends.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent == 1 or os.getppid() != parent:  # the parent died before prctl: nobody would kill us
        os._exit(EXIT_STOPPED)


def watch_stdin(stop: threading.Event, fd: int = 0) -> threading.Thread:
    """A daemon thread that ends the process on EOF (the UI died) and sets ``stop`` on a ``stop`` line.

    It reads the file descriptor itself, not ``sys.stdin``: a daemon thread blocked inside
    ``sys.stdin``'s buffer would abort the interpreter's shutdown ("could not acquire lock").
    """

    def watch() -> None:
        pending = b""
        try:
            while chunk := os.read(fd, 4096):
                *lines, pending = (pending + chunk).split(b"\n")
                if any(line.strip() == b"stop" for line in lines):
                    stop.set()
        except OSError:
            pass
        os._exit(EXIT_STOPPED)

    thread = threading.Thread(target=watch, name="trainer-stdin", daemon=True)
    thread.start()
    return thread


def _say(message: dict) -> None:
    try:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        os._exit(EXIT_STOPPED)  # nobody reads us any more: the UI is gone


def _log_to_folder(folder: Path) -> None:
    """stderr and the ``logging`` records go to ``FOLDER/trainer.log`` (appended)."""
    log = open(folder / "trainer.log", "ab", buffering=0)  # noqa: SIM115 - for the process's life
    os.dup2(log.fileno(), 2)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def main(folder: str) -> int:
    """Run the round of ``folder`` as the trainer child; returns the exit code."""
    started = time.monotonic()
    parent = os.getppid()
    folder_path = Path(folder).resolve()
    die_with_parent(parent)
    stop = threading.Event()
    watch_stdin(stop)
    if not folder_path.is_dir():
        print(f"labelassist: error: {folder} is not a round folder", file=sys.stderr)
        return 2
    _log_to_folder(folder_path)
    logging.getLogger(__name__).info("round %s, pid %d", folder_path, os.getpid())
    try:
        lower_priority()
        from labelassist.training.tablet_round import RoundStopped, run_round

        try:
            result = run_round(folder_path, _say, stop=stop.is_set, started=started)
        except RoundStopped:
            print("stopped by the UI", file=sys.stderr)
            return EXIT_STOPPED
        logging.getLogger(__name__).info("round %s: %s", result.status, result.reason)
        return 0
    except Exception:  # noqa: BLE001 - every failure becomes a failed result, with its traceback in the log
        traceback.print_exc(file=sys.stderr)
        reason = "training stopped on an unexpected error (details in trainer.log)"
        try:
            from labelassist.training.request import RoundResult

            RoundResult(status="failed", reason=reason).write(folder_path)
        except Exception:  # noqa: BLE001 - cannot even write the result: a crash
            traceback.print_exc(file=sys.stderr)
            return 1
        _say({"stage": "done", "status": "failed", "reason": reason})
        return 0
