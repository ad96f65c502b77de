"""Named workflow steps with declared parameters, and plug-in loading.

Every step of the assisted-labelling workflow is a plain function registered
under a *kind* and a *name*:

==============  ==========================================================
kind            signature
==============  ==========================================================
``selector``    ``s(pool, **params) -> ndarray`` scores in [0, 1], one per
                candidate of the pool
``preprocess``  ``h(image, **params) -> ndarray`` float32 image in [0, 1]
``prelabel``    ``l(image, context, **params) -> Prelabel``
``inspect``     ``g(mask, context, **params) -> Check`` (score in [0, 1])
``postprocess`` ``p(mask, **params) -> (mask, Change)``
==============  ==========================================================

Parameters are declared with :class:`Param` so that a UI can render a slider
or a switch for each one, and so that values read from ``project.toml`` are
checked (type and range) before the function ever runs.

Users extend the tool without editing the package: a Python file dropped in a
project's ``plugins/`` folder, or an installed package that declares the
``labelassist.plugins`` entry point, registers more steps with
:func:`register`. A plug-in that fails to load is reported by name and
skipped; it never takes the session down.

Plug-in files run under time-outs, so a plug-in that never returns cannot hang
the kiosk:

* before a file is imported into the app it is imported once in a child
  process (:data:`PLUGIN_LOAD_TIMEOUT_S`); a file that takes longer, or that
  kills its process while loading, is reported by name and skipped;
* the steps a plug-in file registers run in one reusable helper process
  (spawned on first use, fed through a pipe); a call that does not finish
  within :attr:`Registry.plugin_timeout_s` is stopped by killing that process
  and ends as a :class:`~labelassist.errors.PluginError` naming the step and the
  file. A step that timed out once fails at once for the rest of the session
  (until plug-ins are loaded again), so a hung step costs one time-out, not one
  per sample. An error a plug-in step raises that is not a
  :class:`~labelassist.errors.LabelAssistError` becomes a PluginError too.

Built-in steps and steps from installed packages (entry points) are called
directly, with no overhead.

Plug-ins are also kept from doing harm without meaning to:

* a plug-in may not take the name of a built-in step: that one step is
  refused, logged and listed with the plug-ins that were not loaded
  (:attr:`Registry.failed_plugins`, key ``"file.py (step 'name')"``), the rest
  of the file loads;
* what a plug-in file prints while it loads goes to the log, and the helper
  processes print nothing, so a command's output (``--json`` too) stays its own;
* what a plug-in file's step returns is checked against its kind's contract
  (type, shape, dtype, finite values) and a wrong result is a PluginError naming
  the step and the file, not a Python error later on.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import importlib
import importlib.metadata
import importlib.util
import io
import logging
import math
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from labelassist.errors import LabelAssistError, PluginError

log = logging.getLogger(__name__)

KINDS = ("selector", "preprocess", "prelabel", "inspect", "postprocess")
ENTRY_POINT_GROUP = "labelassist.plugins"

#: Seconds a plug-in file may take to import before it is skipped.
PLUGIN_LOAD_TIMEOUT_S = 10.0
#: Default seconds one call of a plug-in step may take (``Registry.plugin_timeout_s``).
PLUGIN_CALL_TIMEOUT_S = 30.0
# Extra seconds allowed for starting a helper process (a fresh Python importing numpy and
# OpenCV; slow on a busy two-core tablet). Not part of any plug-in's time-out.
_SPAWN_SLACK_S = 60.0
# True inside the helper processes: plug-ins are imported and called directly there.
_IN_HELPER = False


@dataclass(frozen=True)
class Param:
    """One parameter of a workflow step, declared for validation and for the UI.

    Parameters
    ----------
    name : str
        Keyword argument name.
    type : type
        ``int``, ``float``, ``bool`` or ``str``.
    default : Any
        Value used when the project does not set one.
    low, high : float, optional
        Inclusive range for numbers.
    choices : tuple, optional
        Allowed values for strings (a UI shows them as buttons).
    help : str
        One plain sentence for the UI, with the unit (pixels, percent...).
    """

    name: str
    type: type
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    help: str = ""

    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` converted to the declared type, or raise PluginError."""
        if self.type is bool:
            if isinstance(value, bool):
                return value
            raise PluginError(f"{where}: parameter '{self.name}' must be true or false, got {value!r}")
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PluginError(f"{where}: parameter '{self.name}' must be a number, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                # NaN passes every range check (its comparisons are all false); inf has no int.
                raise PluginError(f"{where}: parameter '{self.name}' must be a finite number, got {value!r}")
            if self.type is int and isinstance(value, float) and not value.is_integer():
                raise PluginError(f"{where}: parameter '{self.name}' must be a whole number, got {value!r}")
            value = self.type(value)
            if self.low is not None and value < self.low or self.high is not None and value > self.high:
                raise PluginError(
                    f"{where}: parameter '{self.name}' = {value} is outside its range "
                    f"[{self.low if self.low is not None else '-inf'}, {self.high if self.high is not None else 'inf'}]"
                )
            return value
        if self.type is str:
            if not isinstance(value, str):
                raise PluginError(f"{where}: parameter '{self.name}' must be text, got {value!r}")
            if self.choices is not None and value not in self.choices:
                raise PluginError(
                    f"{where}: parameter '{self.name}' = {value!r} is not one of {', '.join(map(str, self.choices))}"
                )
            return value
        return value


@dataclass(frozen=True)
class Step:
    """A registered workflow function and what is known about it."""

    kind: str
    name: str
    func: Callable
    params: tuple[Param, ...] = ()
    doc: str = ""
    source: str = "builtin"

    @property
    def title(self) -> str:
        """First line of the docstring: what the UI shows next to the name."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else self.name

    def resolve(self, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """Merge ``values`` over the declared defaults, checking each one.

        Unknown keys are an error: a typo in ``project.toml`` must not be ignored.
        """
        values = dict(values or {})
        where = f"{self.kind} '{self.name}'"
        known = {p.name: p for p in self.params}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise PluginError(
                f"{where} has no parameter {', '.join(map(repr, unknown))}"
                f" (it takes: {', '.join(known) or 'none'})"
            )
        return {name: p.check(values.get(name, p.default), where) for name, p in known.items()}

    def __call__(self, *args, **params):
        return self.func(*args, **self.resolve(params))


@dataclass
class Registry:
    """All known steps, by kind and name, plus the plug-ins that failed to load."""

    steps: dict[str, dict[str, Step]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failed_plugins: dict[str, str] = field(default_factory=dict)
    plugin_timeout_s: float = PLUGIN_CALL_TIMEOUT_S
    _loading: str = "builtin"
    _loading_file: Path | None = None
    _stopped: dict[tuple[str, str], str] = field(default_factory=dict)
    _helper: "_Helper | None" = None

    def register(self, kind: str, name: str | None = None, params: tuple[Param, ...] | list = ()):
        """Decorator that registers ``func`` as step ``name`` of ``kind``.

        Examples
        --------
        >>> @register("postprocess", "fill_holes", params=[Param("max_area", int, 0, low=0)])
        ... def fill_holes(mask, max_area=0): ...
        """
        if kind not in KINDS:
            raise PluginError(f"unknown step kind {kind!r} (known: {', '.join(KINDS)})")

        def decorate(func: Callable) -> Callable:
            step_name = name or func.__name__
            clash = self._clash(kind, step_name)
            if clash is not None:
                # Refused, not replaced: a plug-in that silently swaps a built-in step changes what
                # every project computes under a name people trust.
                where = f"{self._loading.split(':', 1)[-1]} (step '{step_name}')"
                self.failed_plugins[where] = clash
                log.warning("plug-in %s was not loaded: %s", where, clash)
                return func
            call = func
            if self._loading_file is not None and not _IN_HELPER:
                call = _InHelper(self, self._loading_file, kind, step_name, func)
            self.steps[kind][step_name] = Step(
                kind=kind,
                name=step_name,
                func=call,
                params=tuple(params),
                doc=func.__doc__ or "",
                source=self._loading,
            )
            return func

        return decorate

    def _clash(self, kind: str, name: str) -> str | None:
        """Why a plug-in may not register ``name`` under ``kind`` (None when it may).

        A plug-in may not take the name of a built-in step. A plug-in step may replace another
        plug-in's step of the same name, as before: in one process the steps of a project opened
        earlier are still registered when the next project's plug-ins load, and the newly opened
        project's own file must win.
        """
        existing = self.steps[kind].get(name)
        if existing is None or self._loading == "builtin" or existing.source != "builtin":
            return None
        return (f"a built-in {kind} step is already called '{name}' and a plug-in cannot replace it; "
                "rename the plug-in's step")

    def get(self, kind: str, name: str) -> Step:
        """Return the step, or raise PluginError listing what exists."""
        self._ensure_builtins()
        if kind not in KINDS:
            raise PluginError(f"unknown step kind {kind!r} (known: {', '.join(KINDS)})")
        try:
            return self.steps[kind][name]
        except KeyError:
            known = ", ".join(sorted(self.steps[kind])) or "none"
            raise PluginError(f"there is no {kind} step called {name!r} (known: {known})") from None

    def names(self, kind: str) -> list[str]:
        """Names registered for ``kind``, sorted."""
        self._ensure_builtins()
        return sorted(self.steps[kind])

    def _ensure_builtins(self) -> None:
        # The built-in steps register themselves when their modules are imported.
        import labelassist.workflow  # noqa: F401  (side effect: registration)

    # -- plug-ins ---------------------------------------------------------------------------
    def load_plugin_file(self, path: str | Path, probe: bool = True) -> bool:
        """Import one plug-in file; on any error record it by name and return False.

        With ``probe`` (the default) the file is first imported in a child process;
        one that takes longer than :data:`PLUGIN_LOAD_TIMEOUT_S` is skipped.
        """
        path = Path(path)
        # The built-ins first: a plug-in's step is checked against them (see _clash), and a
        # built-in module imported during the plug-in's import must not count as the plug-in's.
        self._ensure_builtins()
        if probe and not _IN_HELPER:
            problem = probe_plugin_files([path]).get(path)
            if problem is not None:
                self.failed_plugins[path.name] = problem
                log.warning("plug-in %s skipped: %s", path, problem)
                return False
        module_name = f"labelassist_plugin_{path.stem}"
        self._loading = f"plugin:{path.name}"
        self._loading_file = path.resolve()
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise ImportError("not a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            with _output_to_log(path):
                spec.loader.exec_module(module)
            return True
        except BaseException as exc:  # noqa: BLE001 - a plug-in must never take the session down
            if isinstance(exc, KeyboardInterrupt):
                raise
            sys.modules.pop(module_name, None)
            self.failed_plugins[path.name] = _one_line(exc)
            log.warning("plug-in %s skipped: %s\n%s", path, _one_line(exc), traceback.format_exc())
            return False
        finally:
            self._loading = "builtin"
            self._loading_file = None

    def load_plugins(self, folder: str | Path | None = None, entry_points: bool = True) -> dict[str, str]:
        """Load plug-ins from ``folder`` (``*.py``, sorted) and from installed packages.

        Returns the plug-ins that failed in this call, name -> reason (all failures
        so far stay in ``failed_plugins``).
        """
        self._ensure_builtins()
        before = dict(self.failed_plugins)
        self.failed_plugins = {}
        self._stopped.clear()
        if folder is not None and Path(folder).is_dir():
            paths = [p for p in sorted(Path(folder).glob("*.py")) if not p.name.startswith("_")]
            problems = probe_plugin_files(paths) if paths and not _IN_HELPER else {}
            for path in paths:
                if problems.get(path) is not None:
                    self.failed_plugins[path.name] = problems[path]
                    log.warning("plug-in %s skipped: %s", path, problems[path])
                else:
                    self.load_plugin_file(path, probe=False)
        if entry_points:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                self._loading = f"package:{ep.value}"
                try:
                    loaded = ep.load()
                    if callable(loaded):
                        loaded(self)
                except BaseException as exc:  # noqa: BLE001
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    self.failed_plugins[ep.name] = _one_line(exc)
                    log.warning("plug-in %s skipped: %s", ep.name, _one_line(exc))
                finally:
                    self._loading = "builtin"
        failed, self.failed_plugins = self.failed_plugins, {**before, **self.failed_plugins}
        return failed


@contextlib.contextmanager
def _output_to_log(path: Path):
    """What a plug-in file prints while it is imported goes to the log, not the terminal.

    A command's output is for the user (and for scripts reading ``--json``): a plug-in's
    greeting or a library's warning printed at import would break both. Python-level only
    (``sys.stdout``/``sys.stderr``), so other threads' descriptors are left alone.
    """
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        try:
            yield
        finally:
            text = captured.getvalue().strip()
            if text:
                log.info("plug-in %s printed while loading:\n%s", path, text[:4000])


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"syntax error on line {exc.lineno}: {exc.msg}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- plug-ins under time-outs -------------------------------------------------------------------
def _where(path: Path) -> str:
    return f"plugins/{path.name}"


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
        import os

        def watch() -> None:  # even while a plug-in spins in a loop, this thread gets its turn
            multiprocessing.connection.wait([parent.sentinel])
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _drop_output() -> None:
    """Send this process's stdout and stderr to the null device, at the descriptor level too
    (a crash message written by C code or by the interpreter at exit bypasses ``sys.stderr``)."""
    import os

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


def probe_plugin_files(paths: list[Path], timeout: float | None = None) -> dict[Path, str | None]:
    """Import each file once in a child process; the reason a file must be skipped, else None.

    A file that takes longer than ``timeout`` seconds (default :data:`PLUGIN_LOAD_TIMEOUT_S`)
    is stopped with its process, and so is one that ends its process; the others are probed
    in a fresh process. Errors a file raises are left to the real import, which reports them.
    If no helper process can be started at all, the files are not probed (None for each).
    """
    limit = PLUGIN_LOAD_TIMEOUT_S if timeout is None else float(timeout)
    results: dict[Path, str | None] = {Path(p): None for p in paths}
    todo = [Path(p) for p in paths]
    while todo:
        conn, child = _spawn().Pipe()
        proc = _spawn().Process(target=_probe_main, args=(child, [str(p) for p in todo]),
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


def _probe_main(conn, paths: list[str]) -> None:
    _child_setup(quiet=True)
    REGISTRY._ensure_builtins()  # numpy, OpenCV...: not counted against the first plug-in
    for index, path in enumerate(paths):
        conn.send(("start", index))
        REGISTRY.load_plugin_file(path, probe=False)
        conn.send(("done", index))


class _Pickler(pickle.Pickler):
    """Pickles what a step is given or returns; the project's model travels as its file name."""

    def persistent_id(self, obj):
        kind = type(obj)
        if kind.__name__ == "Model" and kind.__module__ == "labelassist.models":
            return ("model", str(obj.path), obj.card.to_dict(), obj.threads)
        if kind.__name__ == "ndarray" and not obj.flags.writeable:
            return ("readonly", obj.copy())
        return None


class _Unpickler(pickle.Unpickler):
    _models: dict = {}

    def persistent_load(self, pid):
        if pid[0] == "readonly":
            array = pid[1]
            array.flags.writeable = False
            return array
        if pid[0] == "model":
            import json

            from labelassist.models import Model

            key = (pid[1], json.dumps(pid[2], sort_keys=True, default=str), pid[3])
            if key not in self._models:
                self._models[key] = Model(pid[1], card=pid[2], threads=pid[3])
            return self._models[key]
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
    line = _one_line(exc)
    line = line if len(line) <= 200 else line[:197] + "..."
    trace = "Traceback (most recent call last):\n" + "".join(traceback.format_tb(exc.__traceback__)) + line
    return (type(exc).__module__, type(exc).__qualname__, isinstance(exc, LabelAssistError), str(exc),
            line, trace)


def _helper_main(conn) -> None:
    """The plug-in helper process: load plug-in files as needed, call steps, send results back.

    Its output is dropped: what a step prints would land in the middle of a command's output
    (and break ``--json``); its errors come back through the pipe and the parent logs them.
    """
    _child_setup(quiet=True)
    loaded: dict[str, tuple] = {}
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            origin, kind, name, args, kwargs = _loads(data)
            path = Path(origin)
            stamp = (path.stat().st_mtime_ns, path.stat().st_size)
            if loaded.get(origin) != stamp:
                REGISTRY.failed_plugins.pop(path.name, None)
                if not REGISTRY.load_plugin_file(path, probe=False):
                    raise PluginError(f"{_where(path)} could not be loaded again: {REGISTRY.failed_plugins[path.name]}")
                loaded[origin] = stamp
            step = REGISTRY.steps[kind][name]
        except BaseException as exc:  # noqa: BLE001
            conn.send_bytes(_dumps(("raised", _error_info(exc))))
            continue
        conn.send_bytes(b"started")
        try:
            reply = ("ok", step.func(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
            reply = ("raised", _error_info(exc))
        try:
            payload = _dumps(reply)
        except Exception as exc:  # noqa: BLE001
            payload = _dumps(("raised", ("builtins", "TypeError", False,
                                         f"it returned something that cannot be passed back ({_one_line(exc)})",
                                         f"it returned something that cannot be passed back ({_one_line(exc)})",
                                         "")))
        conn.send_bytes(payload)


_HELPER_LOCK = threading.Lock()


class _Helper:
    """One reusable helper process for plug-in steps; killed and replaced after a time-out."""

    def __init__(self) -> None:
        self.process = None
        self.conn = None
        self.lock = threading.Lock()

    def stop(self) -> None:
        if self.process is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.process = self.conn = None

    def _start(self) -> None:
        REGISTRY._ensure_builtins()
        conn, child = _spawn().Pipe()
        process = _spawn().Process(target=_helper_main, args=(child,), name="labelassist-plugins", daemon=True)
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


class _InHelper:
    """Stands in for a plug-in file's step function: calls it in the helper under a time-out."""

    def __init__(self, registry: "Registry", path: Path, kind: str, name: str, func: Callable):
        functools.update_wrapper(self, func)
        self.registry, self.path, self.kind, self.name, self.func = registry, path, kind, name, func

    def _describe(self) -> str:
        return f"the plug-in step '{self.name}' ({_where(self.path)})"

    def __call__(self, *args, **kwargs):
        registry = self.registry
        timeout = float(registry.plugin_timeout_s)
        stopped = registry._stopped.get((self.kind, self.name))
        if stopped is not None:
            raise PluginError(f"{stopped}; it stays off until the project is opened again")
        try:
            payload = _dumps((str(self.path), self.kind, self.name, args, kwargs))
        except Exception as exc:  # noqa: BLE001 - e.g. an object that cannot be pickled in the context
            log.warning("%s runs in a thread, not the helper process (%s)", self._describe(), _one_line(exc))
            outcome = _call_in_thread(self.func, args, kwargs, timeout)
        else:
            with _HELPER_LOCK:
                if registry._helper is None:
                    registry._helper = _Helper()
            outcome = registry._helper.call(payload, timeout)
        status, value = outcome
        if status == "ok":
            return _checked_result(self.kind, args, value, self._describe())
        if status == "timeout":
            message = f"{self._describe()} did not finish within {timeout:g} s and was stopped"
            registry._stopped[(self.kind, self.name)] = message
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


def _describe_value(value: Any) -> str:
    """What a step returned, in a few words (never its pixels)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return "None" if value is None else f"a {type(value).__name__}"


def _checked_array(value: Any, shape: tuple, what: str, describe: str, kinds: str = "b") -> Any:
    """``value`` as an array of ``shape`` whose dtype kind is in ``kinds``, else PluginError."""
    import numpy as np

    if not isinstance(value, np.ndarray) or value.shape != tuple(shape) or value.dtype.kind not in kinds:
        raise PluginError(f"{describe} returned {_describe_value(value)} as its {what}; "
                          f"expected {'a bool' if kinds == 'b' else 'a numeric'} array of shape {tuple(shape)}")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise PluginError(f"{describe} returned NaN or infinite values in its {what}")
    return value


def _checked_result(kind: str, args: tuple, value: Any, describe: str) -> Any:
    """A plug-in file's step result checked against its kind's contract (see the module docstring).

    A wrong result would otherwise fail later, far from the plug-in, as a Python error with no
    name attached ("unexpected error: ValueError: masks differ in size"); here it becomes one
    PluginError naming the step and its file. A pre-label mask of integers is accepted as
    non-zero = foreground (a common way to write a mask), any other dtype is refused.

    Raises
    ------
    PluginError
        The result does not fit: wrong type, shape or dtype, NaN, or a score outside [0, 1].
    """
    import numpy as np

    if kind == "preprocess":
        image = np.asarray(args[0])
        out = _checked_array(value, image.shape, "image", describe, kinds="f")
        if out.dtype != np.float32:
            raise PluginError(f"{describe} returned {_describe_value(value)}; expected float32 {image.shape}")
        return out
    if kind == "prelabel":
        from labelassist.workflow.prelabel import Prelabel

        shape = np.asarray(args[0]).shape[:2]
        if not isinstance(value, Prelabel):
            raise PluginError(f"{describe} returned {_describe_value(value)}; a pre-label step returns a Prelabel "
                              f"(mask of shape {shape}, probability or None, method)")
        mask = value.mask
        if isinstance(mask, np.ndarray) and mask.dtype.kind in "iu" and mask.shape == shape:
            mask = mask != 0
        mask = _checked_array(mask, shape, "mask", describe)
        probability = value.probability
        if probability is not None:
            probability = _checked_array(probability, shape, "probability", describe, kinds="f")
            if probability.size and not (probability.min() >= 0.0 and probability.max() <= 1.0):
                raise PluginError(f"{describe} returned a probability outside [0, 1]")
        if mask is value.mask:
            return value
        return dataclasses.replace(value, mask=mask)
    if kind == "postprocess":
        from labelassist.workflow.postprocess import Change

        shape = np.asarray(args[0]).shape
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Change)):
            raise PluginError(f"{describe} returned {_describe_value(value)}; a post-processing step returns "
                              "(mask, Change)")
        _checked_array(value[0], shape, "mask", describe)
        return value
    if kind == "inspect":
        from labelassist.workflow.inspect import Check

        if not isinstance(value, Check):
            raise PluginError(f"{describe} returned {_describe_value(value)}; an inspection step returns a Check")
        score = value.score
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise PluginError(f"{describe} returned a score of {score!r}; a Check's score lies between 0 and 1")
        return value
    if kind == "selector":
        n = len(args[0])
        try:
            scores = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise PluginError(f"{describe} returned {_describe_value(value)}; a selector strategy returns "
                              f"{n} scores between 0 and 1") from None
        if scores.shape != (n,) or not np.isfinite(scores).all():
            raise PluginError(f"{describe} returned {_describe_value(scores)}; a selector strategy returns "
                              f"{n} finite scores between 0 and 1")
        return value
    return value


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


def stop_helper() -> None:
    """Stop the plug-in helper process, if one runs (at exit; a later call starts a fresh one)."""
    if REGISTRY._helper is not None:
        REGISTRY._helper.stop()


REGISTRY = Registry()
register = REGISTRY.register
get = REGISTRY.get
names = REGISTRY.names
atexit.register(stop_helper)
