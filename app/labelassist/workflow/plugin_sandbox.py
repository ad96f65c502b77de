"""Plug-in files run in child processes, under time-outs.

A plug-in that never returns must not hang the kiosk, and what it prints must not land in a
command's output. This module knows nothing of step kinds or registries: the caller hands it the
function that loads one plug-in file (a module-level function, so that it pickles by reference
into a spawned child).

* :func:`probe_files` imports each file once in a child process before the app imports it
  (:data:`PLUGIN_LOAD_TIMEOUT_S`); a file that takes longer, or that ends its process while
  loading, is named with the reason and skipped.
* :class:`PluginSandbox` runs one project's plug-in steps in one reusable helper process
  (spawned on first use, fed through a pipe). A call that does not finish within the project's
  time-out is stopped by killing that process and ends as a
  :class:`~labelassist.errors.PluginError` naming the step and the file; the step then fails at
  once until the plug-ins are loaded again, so a hung step costs one time-out, not one per
  sample. An error a step raises that is not a :class:`~labelassist.errors.LabelAssistError`
  becomes a PluginError too.
* Arguments and results travel pickled. Read-only arrays stay read-only on arrival; a
  :class:`~labelassist.models.Model` travels as its file (``Model.__reduce__``). Arguments that
  cannot be pickled run the step in a thread under the same time-out instead.

The helper processes print nothing: their errors come back through the pipe and the parent logs
them.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import io
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import traceback
import weakref
from pathlib import Path
from typing import Any, Callable

import numpy as np

from labelassist.errors import LabelAssistError, PluginError

log = logging.getLogger(__name__)

#: Seconds a plug-in file may take to import before it is skipped.
PLUGIN_LOAD_TIMEOUT_S = 10.0
#: Default seconds one call of a plug-in step may take (``Registry.plugin_timeout_s``).
PLUGIN_CALL_TIMEOUT_S = 30.0
# Extra seconds allowed for starting a helper process (a fresh Python importing numpy and
# OpenCV; slow on a busy two-core tablet). Not part of any plug-in's time-out.
_SPAWN_SLACK_S = 60.0
# True inside the helper processes: plug-ins are imported and called directly there.
_IN_HELPER = False

#: ``load(path)`` imports one plug-in file in a child process and returns its steps as
#: ``{(kind, name): function}``; it raises when the file cannot be loaded.
LoadFile = Callable[[str], dict]


def in_helper() -> bool:
    """True inside a probe or helper process (plug-ins are called directly there)."""
    return _IN_HELPER


def one_line(exc: BaseException) -> str:
    """An exception as one line for the user: its type and the first line of its message."""
    if isinstance(exc, SyntaxError):
        return f"syntax error on line {exc.lineno}: {exc.msg}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def where(path: Path) -> str:
    """How messages name a plug-in file."""
    return f"plugins/{Path(path).name}"


def _spawn():
    return multiprocessing.get_context("spawn")


def _child_setup(quiet: bool = False) -> None:
    """In a helper process: Ctrl-C is the parent's business, and a dead parent ends the child.

    The child's log records go nowhere: what it finds goes back through the pipe, and the parent
    logs it to the log file (a child's record would otherwise reach the terminal through
    logging's last-resort handler, traceback and all). With ``quiet`` its output is dropped too
    (the probe: the parent's own import of the same file prints whatever the file prints).
    """
    global _IN_HELPER
    _IN_HELPER = True
    logging.getLogger().addHandler(logging.NullHandler())
    if quiet:
        _drop_output()
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # pragma: no cover - not the main thread
        pass
    parent = multiprocessing.parent_process()
    if parent is not None:
        def watch() -> None:  # even while a plug-in spins in a loop, this thread gets its turn
            multiprocessing.connection.wait([parent.sentinel])
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _drop_output() -> None:
    """Send this process's stdout and stderr to the null device, at the descriptor level too
    (a crash message written by C code or by the interpreter at exit bypasses ``sys.stderr``)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        try:
            if stream is not None:
                stream.flush()
            os.dup2(null, fd)
        except (OSError, ValueError):
            pass
    os.close(null)


# -- the probe: each file imported once in a child ---------------------------------------------
def probe_files(paths: list[Path], load: LoadFile, timeout: float | None = None) -> dict[Path, str | None]:
    """Import each file once in a child process; the reason a file must be skipped, else None.

    Parameters
    ----------
    paths : list of Path
        The plug-in files, in loading order.
    load : callable
        Module-level function that imports one file in the child (see :data:`LoadFile`).
    timeout : float, optional
        Seconds one file may take (default :data:`PLUGIN_LOAD_TIMEOUT_S`).

    Returns
    -------
    dict
        Path -> reason, or None. A file that takes longer than ``timeout`` is stopped with its
        process, and so is one that ends its process; the others are probed in a fresh process.
        Errors a file raises are left to the real import, which reports them. If no helper
        process can be started at all, the files are not probed (None for each).
    """
    limit = PLUGIN_LOAD_TIMEOUT_S if timeout is None else float(timeout)
    results: dict[Path, str | None] = {Path(p): None for p in paths}
    todo = [Path(p) for p in paths]
    while todo:
        conn, child = _spawn().Pipe()
        proc = _spawn().Process(target=_probe_main, args=(child, [str(p) for p in todo], load),
                                name="labelassist-plugin-probe", daemon=True)
        try:
            proc.start()
        except OSError as exc:
            log.warning("plug-ins are loaded without a time-out: no helper process could start (%s)", exc)
            return results
        child.close()
        rest: list[Path] = []
        try:
            waiting_start = True
            for index, path in enumerate(todo):
                try:
                    if not conn.poll(_SPAWN_SLACK_S if waiting_start and index == 0 else limit):
                        raise TimeoutError
                    conn.recv()  # ("start", index)
                    waiting_start = False
                    if not conn.poll(limit):
                        results[path] = f"loading took longer than {limit:g} s, so it was stopped"
                        rest = todo[index + 1:]
                        break
                    conn.recv()  # ("done", index)
                except TimeoutError:
                    log.warning("plug-ins are loaded without a time-out: the helper process did not start")
                    return results
                except (EOFError, OSError):
                    proc.join(5)
                    if index == 0 and waiting_start:
                        log.warning("plug-ins are loaded without a time-out: the helper process ended at once")
                        return results
                    results[path] = f"it ended the program while loading (exit code {proc.exitcode})"
                    rest = todo[index + 1:]
                    break
        finally:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            conn.close()
        todo = rest
    return results


def _probe_main(conn, paths: list[str], load: LoadFile) -> None:
    # The built-in steps (numpy, OpenCV...) were imported while ``load`` was unpickled, before
    # the first "start": they are not counted against the first plug-in.
    _child_setup(quiet=True)
    for index, path in enumerate(paths):
        conn.send(("start", index))
        try:
            load(path)
        except Exception:  # noqa: BLE001 - errors are the real import's to report
            pass
        conn.send(("done", index))


# -- what travels through the pipe --------------------------------------------------------------
class _Pickler(pickle.Pickler):
    """Pickles what a step is given or returns; a read-only array arrives read-only."""

    def persistent_id(self, obj):
        if type(obj) is np.ndarray and not obj.flags.writeable:
            return ("readonly", obj.copy())
        return None


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        if pid[0] == "readonly":
            array = pid[1]
            array.flags.writeable = False
            return array
        raise pickle.UnpicklingError(f"unknown reference {pid[0]!r}")


def _dumps(obj) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _loads(data: bytes):
    return _Unpickler(io.BytesIO(data)).load()


def _error_info(exc: BaseException) -> tuple:
    # The log gets where it failed and the first line of the message (at most 200 characters),
    # never the rest: a careless plug-in may put a whole array (pixels) in its message.
    line = one_line(exc)
    line = line if len(line) <= 200 else line[:197] + "..."
    trace = "Traceback (most recent call last):\n" + "".join(traceback.format_tb(exc.__traceback__)) + line
    return (type(exc).__module__, type(exc).__qualname__, isinstance(exc, LabelAssistError), str(exc),
            line, trace)


# -- the helper process --------------------------------------------------------------------------
def _helper_main(conn, load: LoadFile) -> None:
    """The plug-in helper process: load plug-in files as needed, call steps, send results back.

    Each file's steps are kept apart (by its path), so two files naming a step alike never
    swap. Its output is dropped: what a step prints would land in the middle of a command's
    output (and break ``--json``); its errors come back through the pipe and the parent logs them.
    """
    _child_setup(quiet=True)
    loaded: dict[str, tuple] = {}  # path -> (stamp, {(kind, name): function})
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            origin, kind, name, args, kwargs = _loads(data)
            path = Path(origin)
            stamp = (path.stat().st_mtime_ns, path.stat().st_size)
            if origin not in loaded or loaded[origin][0] != stamp:
                loaded[origin] = (stamp, load(origin))
            func = loaded[origin][1][(kind, name)]
        except BaseException as exc:  # noqa: BLE001
            conn.send_bytes(_dumps(("raised", _error_info(exc))))
            continue
        conn.send_bytes(b"started")
        try:
            reply = ("ok", func(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
            reply = ("raised", _error_info(exc))
        try:
            payload = _dumps(reply)
        except Exception as exc:  # noqa: BLE001
            payload = _dumps(("raised", ("builtins", "TypeError", False,
                                         f"it returned something that cannot be passed back ({one_line(exc)})",
                                         f"it returned something that cannot be passed back ({one_line(exc)})",
                                         "")))
        conn.send_bytes(payload)


# Every helper process started, so that one call at exit stops them all.
_HELPERS: "weakref.WeakSet[_Helper]" = weakref.WeakSet()


class _Helper:
    """One reusable helper process for plug-in steps; killed and replaced after a time-out."""

    def __init__(self, load: LoadFile) -> None:
        self.load = load
        self.process = None
        self.conn = None
        self.lock = threading.Lock()
        _HELPERS.add(self)

    def stop(self) -> None:
        if self.process is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.process = self.conn = None

    def _start(self) -> None:
        conn, child = _spawn().Pipe()
        process = _spawn().Process(target=_helper_main, args=(child, self.load), name="labelassist-plugins",
                                   daemon=True)
        process.start()
        child.close()
        self.process, self.conn = process, conn

    def call(self, payload: bytes, timeout: float) -> tuple[str, Any]:
        """("ok", result) / ("raised", info) / ("timeout", None) / ("ended", exit code)."""
        with self.lock:
            fresh = self.process is None or not self.process.is_alive()
            if fresh:
                self.stop()
                self._start()
            try:
                self.conn.send_bytes(payload)
                # Loading the plug-in file in the helper (and starting it) is not the step's time.
                if not self.conn.poll(PLUGIN_LOAD_TIMEOUT_S + (_SPAWN_SLACK_S if fresh else 0.0)):
                    self.stop()
                    return "timeout", None
                first = self.conn.recv_bytes()
                if first != b"started":
                    return _loads(first)
                if not self.conn.poll(timeout):
                    self.stop()
                    return "timeout", None
                return _loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                code = self.process.exitcode if self.process is not None else None
                if self.process is not None:
                    self.process.join(5)
                    code = self.process.exitcode
                self.stop()
                return "ended", code


class PluginSandbox:
    """Where one project's plug-in steps run: its helper process and the steps it stopped.

    Parameters
    ----------
    load : callable
        Module-level function that loads one plug-in file in the helper (:data:`LoadFile`).
    timeout : callable
        Returns the seconds a call may take; read at each call, so a changed setting counts.
    check : callable
        ``check(kind, args, result, describe)`` returns the result checked against its kind's
        contract, or raises PluginError.
    """

    def __init__(self, load: LoadFile, timeout: Callable[[], float], check: Callable) -> None:
        self.load, self.timeout, self.check = load, timeout, check
        self.stopped: dict[tuple[str, str], str] = {}
        self.helper: _Helper | None = None
        self._lock = threading.Lock()

    def wrap(self, path: Path, kind: str, name: str, func: Callable) -> Callable:
        """A stand-in for a plug-in file's step ``func`` that calls it here."""
        return _InHelper(self, Path(path), kind, name, func)

    def call(self, payload: bytes, timeout: float) -> tuple[str, Any]:
        with self._lock:
            if self.helper is None:
                self.helper = _Helper(self.load)
        return self.helper.call(payload, timeout)

    def close(self) -> None:
        """Stop the helper process, if one runs (a later call starts a fresh one)."""
        if self.helper is not None:
            self.helper.stop()


class _InHelper:
    """Stands in for a plug-in file's step function: calls it in the helper under a time-out."""

    def __init__(self, sandbox: PluginSandbox, path: Path, kind: str, name: str, func: Callable):
        functools.update_wrapper(self, func)
        self.sandbox, self.path, self.kind, self.name, self.func = sandbox, path, kind, name, func

    def _describe(self) -> str:
        return f"the plug-in step '{self.name}' ({where(self.path)})"

    def __call__(self, *args, **kwargs):
        sandbox = self.sandbox
        timeout = float(sandbox.timeout())
        stopped = sandbox.stopped.get((self.kind, self.name))
        if stopped is not None:
            raise PluginError(f"{stopped}; it stays off until the project is opened again")
        try:
            payload = _dumps((str(self.path), self.kind, self.name, args, kwargs))
        except Exception as exc:  # noqa: BLE001 - e.g. an object that cannot be pickled in the context
            log.warning("%s runs in a thread, not the helper process (%s)", self._describe(), one_line(exc))
            outcome = _call_in_thread(self.func, args, kwargs, timeout)
        else:
            outcome = sandbox.call(payload, timeout)
        status, value = outcome
        if status == "ok":
            return sandbox.check(self.kind, args, value, self._describe())
        if status == "timeout":
            message = f"{self._describe()} did not finish within {timeout:g} s and was stopped"
            sandbox.stopped[(self.kind, self.name)] = message
            log.warning("%s", message)
            raise PluginError(message)
        if status == "ended":
            raise PluginError(f"{self._describe()} ended its helper process (exit code {value})")
        module, qualname, is_ours, text, line, trace = value
        if is_ours:  # a plain message the plug-in chose for the user
            log.info("%s: %s", self._describe(), line)
        else:
            log.warning("%s failed: %s\n%s", self._describe(), line, trace)
        if is_ours:
            try:
                cls = getattr(importlib.import_module(module), qualname)
                error = cls(text)
            except Exception:  # noqa: BLE001
                error = PluginError(text)
            raise error
        raise PluginError(f"{self._describe()} failed: {line}")


def _call_in_thread(func: Callable, args: tuple, kwargs: dict, timeout: float) -> tuple[str, Any]:
    # Fallback when the arguments cannot be sent to the helper process: a thread cannot be
    # killed, so a hung call is abandoned (it goes on in the background) and reported.
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["ok"] = func(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001
            box["raised"] = _error_info(exc)

    thread = threading.Thread(target=run, daemon=True, name="plugin-call")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return "timeout", None
    return ("ok", box["ok"]) if "ok" in box else ("raised", box["raised"])


def stop_all() -> None:
    """Stop every plug-in helper process (at exit; a later call starts a fresh one)."""
    for helper in list(_HELPERS):
        helper.stop()


atexit.register(stop_all)
