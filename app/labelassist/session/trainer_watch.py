"""Watching the trainer process: its progress lines, and when to stop it.

The trainer runs at idle priority, so a busy tablet may give it no CPU for a while: silence
counts only while it works (its CPU seconds, where the OS tells them), and a round that stays
starved is stopped after :data:`STARVED_BUDGETS` times its budget. Used by
:class:`labelassist.session.training.SessionTrainer` on its watcher thread.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from labelassist.training.request import progress_line

__all__ = ["SILENT_S", "STARVED_BUDGETS", "cpu_seconds", "kill", "round_budget", "watch_trainer"]

#: The trainer is stopped when it says nothing for this long while it runs (CPU seconds where the OS
#: tells them, else wall seconds), or after STARVED_BUDGETS x its budget in all (a tablet that stays
#: too busy for it: it runs at idle priority).
SILENT_S = 60.0
STARVED_BUDGETS = 5


def round_budget(folder: Path, default_s: float) -> float:
    """Wall seconds after which a round is stopped: :data:`STARVED_BUDGETS` times its budget, the
    U-Net's and the prompt stage's (``request.json``), ``default_s`` when it cannot be read."""
    try:
        request = json.loads((Path(folder) / "request.json").read_text())
        seconds = float(request["budget_s"]) + float((request.get("prompt") or {}).get("budget_s", 0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        seconds = default_s
    return STARVED_BUDGETS * seconds


def watch_trainer(proc: subprocess.Popen, started: float, budget: float, heard: Callable[[dict], None],
                  stop_asked: Callable[[], str | None]) -> str | None:
    """Read the trainer's progress lines until it ends; kill it when it must stop.

    Parameters
    ----------
    proc : subprocess.Popen
        The trainer, stdout a pipe of JSON lines.
    started : float
        ``time.monotonic()`` when the round started.
    budget : float
        Wall seconds after which it is stopped (:func:`round_budget`).
    heard : callable
        ``heard(line)`` for each valid progress line (:func:`~labelassist.training.request.progress_line`).
    stop_asked : callable
        Returns why the session wants it stopped (Pause, closing), or None.

    Returns
    -------
    str or None
        Why it was stopped (it is killed then); None when it ended by itself.
    """
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for raw in proc.stdout:
            lines.put(raw)
        lines.put(None)

    threading.Thread(target=read, name="trainer-stdout", daemon=True).start()
    stopped, ended = None, False
    last = started
    heard_cpu = cpu_seconds(proc.pid)  # the trainer's CPU seconds at its last progress line
    # Until the process has ended: its output closed alone is not its end (a hung child is killed).
    while proc.poll() is None or not ended:
        try:
            raw = lines.get(timeout=1.0)
        except queue.Empty:
            raw = ""
        if raw is None:
            ended = True
            if proc.poll() is None:
                time.sleep(0.2)
        elif raw:
            line = progress_line(raw)
            if line is not None:
                last = time.monotonic()
                heard(line)
        if raw:
            heard_cpu = cpu_seconds(proc.pid)
        now = time.monotonic()
        # A trainer at idle priority on a busy tablet gets no CPU: silent, not hung. Where the OS
        # says how much CPU it used (Linux), silence counts only while it runs.
        cpu = cpu_seconds(proc.pid)
        silent = now - last > SILENT_S if cpu is None or heard_cpu is None else cpu - heard_cpu > SILENT_S
        stopped = stop_asked()
        if stopped is None and silent:
            stopped = f"the trainer said nothing for {SILENT_S:.0f} s of work"
        elif stopped is None and now - started > budget:
            stopped = f"the trainer ran longer than {budget:.0f} s"
        if stopped:
            kill(proc)
            return stopped
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds a process has used (Linux ``/proc``; None elsewhere or when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def kill(process: subprocess.Popen) -> None:
    try:
        process.kill()
    except OSError:  # already gone
        pass
