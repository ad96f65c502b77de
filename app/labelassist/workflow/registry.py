"""Named workflow steps with declared parameters, and plug-ins per project.

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

The built-in steps live in :data:`REGISTRY`, shared by the whole process. Users
extend the tool without editing the package: a Python file dropped in a
project's ``plugins/`` folder, or an installed package that declares the
``labelassist.plugins`` entry point, registers more steps with :func:`register`.
Those belong to one project: :func:`for_project` gives a
:class:`ProjectRegistry`, the built-ins with that project's plug-ins layered on
top, with the same lookup API (``get``, ``names``, ``steps``,
``failed_plugins``); closing it unloads them, and no other project ever sees
them (the kiosk switches projects inside one process). A plug-in that fails to
load is reported by name and skipped; it never takes the session down.

The workflow functions that look steps up by name
(:func:`~labelassist.workflow.preprocess.run_pipeline`,
:func:`~labelassist.workflow.postprocess.suggest`,
:func:`~labelassist.workflow.inspection.inspect_label` and ``highlight``,
:func:`~labelassist.workflow.selector.combined_scores`, ``rank`` and
``select_next``) take the registry to look in as ``registry=``: a session passes
its project's; without one they see the built-in steps only, which is what a
caller with no project means.

Plug-ins are kept from doing harm without meaning to:

* plug-in files run under time-outs (:mod:`labelassist.workflow.plugin_sandbox`):
  each is imported once in a child process first, and its steps run in the
  project's helper process, stopped and named when a call takes longer than
  :attr:`ProjectRegistry.plugin_timeout_s`. Built-in steps and steps from
  installed packages are called directly, with no overhead;
* a plug-in may not take the name of a built-in step: that one step is
  refused, logged and listed with the plug-ins that were not loaded
  (``failed_plugins``, key ``"file.py (step 'name')"``), the rest of the file
  loads;
* what a plug-in file prints while it loads goes to the log, and the helper
  processes print nothing, so a command's output (``--json`` too) stays its own;
* what a plug-in file's step returns is checked against its kind's contract
  (:mod:`labelassist.workflow.plugin_results`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import logging
import math
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from labelassist.errors import PluginError
from labelassist.workflow import plugin_sandbox
from labelassist.workflow.plugin_results import check_result
from labelassist.workflow.plugin_sandbox import PLUGIN_CALL_TIMEOUT_S, PluginSandbox, one_line

log = logging.getLogger(__name__)

KINDS = ("selector", "preprocess", "prelabel", "inspect", "postprocess")
ENTRY_POINT_GROUP = "labelassist.plugins"


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


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise PluginError(f"unknown step kind {kind!r} (known: {', '.join(KINDS)})")


def _clash(existing: Step | None, loading: str, kind: str, name: str) -> str | None:
    """Why the plug-in being loaded (source ``loading``) may not register ``name`` (None if it may).

    A plug-in may not take the name of a built-in step. A plug-in step may replace another
    plug-in's step of the same name (the later file, in sorted order, wins).
    """
    if existing is None or loading == "builtin" or existing.source != "builtin":
        return None
    return (f"a built-in {kind} step is already called '{name}' and a plug-in cannot replace it; "
            "rename the plug-in's step")


def _refuse(failed: dict[str, str], loading: str, name: str, reason: str) -> None:
    # Refused, not replaced: a plug-in that silently swaps a built-in step changes what the
    # project computes under a name people trust.
    key = f"{loading.split(':', 1)[-1]} (step '{name}')"
    failed[key] = reason
    log.warning("plug-in %s was not loaded: %s", key, reason)


def _no_step(kind: str, name: str, known) -> PluginError:
    return PluginError(f"there is no {kind} step called {name!r} (known: {', '.join(sorted(known)) or 'none'})")


# The project registry whose plug-in file this thread is importing: the file's register() calls
# go there, never into the shared built-ins.
_LOADING = threading.local()


class Registry:
    """The built-in steps, by kind and name, shared by every project (:data:`REGISTRY`).

    A project's plug-ins are not kept here: :meth:`for_project` layers them on top, in a
    :class:`ProjectRegistry` of their own.

    Attributes
    ----------
    steps : dict
        kind -> name -> :class:`Step`: the built-ins, and what installed packages register when
        they are imported (once per process).
    plugin_timeout_s : float
        Seconds one call of a plug-in step may take, for every project that does not set its own.
    """

    def __init__(self, plugin_timeout_s: float = PLUGIN_CALL_TIMEOUT_S) -> None:
        self.steps: dict[str, dict[str, Step]] = {k: {} for k in KINDS}
        self.failed_plugins: dict[str, str] = {}
        self.plugin_timeout_s = plugin_timeout_s
        self._loading = "builtin"  # the source of what registers here now

    def register(self, kind: str, name: str | None = None, params: tuple[Param, ...] | list = ()):
        """Decorator that registers ``func`` as step ``name`` of ``kind``.

        While a project's plug-in file is being imported (in this thread), the step goes to that
        project's registry instead.

        Examples
        --------
        >>> @register("postprocess", "fill_holes", params=[Param("max_area", int, 0, low=0)])
        ... def fill_holes(mask, max_area=0): ...
        """
        loading = getattr(_LOADING, "into", None)
        if loading is not None:
            return loading.register(kind, name, params)
        _check_kind(kind)

        def decorate(func: Callable) -> Callable:
            step_name = name or func.__name__
            clash = _clash(self.steps[kind].get(step_name), self._loading, kind, step_name)
            if clash is not None:
                _refuse(self.failed_plugins, self._loading, step_name, clash)
                return func
            self.steps[kind][step_name] = Step(kind=kind, name=step_name, func=func, params=tuple(params),
                                               doc=func.__doc__ or "", source=self._loading)
            return func

        return decorate

    def get(self, kind: str, name: str) -> Step:
        """Return the step, or raise PluginError listing what exists."""
        _check_kind(kind)
        try:
            return self.steps[kind][name]
        except KeyError:
            raise _no_step(kind, name, self.steps[kind]) from None

    def names(self, kind: str) -> list[str]:
        """Names registered for ``kind``, sorted."""
        return sorted(self.steps[kind])

    def for_project(self, plugins_dir: str | Path | None, entry_points: bool = True) -> "ProjectRegistry":
        """The built-in steps with the plug-ins of one project on top, loaded now.

        Parameters
        ----------
        plugins_dir : path or None
            The project's ``plugins/`` folder (``*.py``, sorted; a missing folder has none).
        entry_points : bool
            Also load installed packages' ``labelassist.plugins`` entry points.

        Returns
        -------
        ProjectRegistry
            Close it with the project: its plug-ins and their helper process go with it.
        """
        layer = ProjectRegistry(self, plugins_dir)
        layer.load_plugins(entry_points=entry_points)
        return layer


class ProjectRegistry:
    """The built-in steps with one project's plug-ins layered on top.

    Looked up like the shared registry (``get``, ``names``, ``steps``, ``failed_plugins``); a
    plug-in step is found first, but a plug-in can never take a built-in's name. Get one with
    :func:`for_project`; :meth:`close` (or a ``with`` block) unloads the plug-ins.

    Parameters
    ----------
    base : Registry
        The built-in steps.
    plugins_dir : path, optional
        The project's ``plugins/`` folder.

    Attributes
    ----------
    own : dict
        kind -> name -> :class:`Step`: the steps of this project's plug-ins only.
    failed_plugins : dict
        Plug-ins that were not loaded, name -> reason.
    sandbox : PluginSandbox
        Where the plug-in files' steps run (one helper process for this project).
    """

    def __init__(self, base: Registry, plugins_dir: str | Path | None = None) -> None:
        self.base = base
        self.plugins_dir = Path(plugins_dir) if plugins_dir is not None else None
        self.own: dict[str, dict[str, Step]] = {k: {} for k in KINDS}
        self.failed_plugins: dict[str, str] = {}
        self.sandbox = PluginSandbox(load=_steps_of_file, timeout=lambda: self.plugin_timeout_s,
                                     check=check_result)
        self._timeout_s: float | None = None
        self._modules: dict[str, Any] = {}  # the sys.modules entries this project's files made
        self._loading = "builtin"
        self._loading_file: Path | None = None

    def __enter__(self) -> "ProjectRegistry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def plugin_timeout_s(self) -> float:
        """Seconds one call of a plug-in step may take (the shared registry's unless set here)."""
        return self.base.plugin_timeout_s if self._timeout_s is None else self._timeout_s

    @plugin_timeout_s.setter
    def plugin_timeout_s(self, seconds: float) -> None:
        self._timeout_s = seconds

    @property
    def steps(self) -> dict[str, dict[str, Step]]:
        """kind -> name -> Step, built-ins and plug-ins together (a fresh dict: register to add)."""
        return {kind: {**self.base.steps[kind], **self.own[kind]} for kind in KINDS}

    def get(self, kind: str, name: str) -> Step:
        """Return the step, or raise PluginError listing what exists."""
        _check_kind(kind)
        step = self.own[kind].get(name)
        if step is None:
            step = self.base.steps[kind].get(name)
        if step is None:
            raise _no_step(kind, name, {**self.base.steps[kind], **self.own[kind]})
        return step

    def names(self, kind: str) -> list[str]:
        """Names registered for ``kind``, sorted."""
        return sorted({*self.base.steps[kind], *self.own[kind]})

    def register(self, kind: str, name: str | None = None, params: tuple[Param, ...] | list = ()):
        """Decorator that registers ``func`` as this project's step ``name`` of ``kind``.

        A step of a plug-in file is called in the project's helper process (see the module
        docstring); one that takes a built-in's name is refused and listed in ``failed_plugins``.
        """
        _check_kind(kind)

        def decorate(func: Callable) -> Callable:
            step_name = name or func.__name__
            existing = self.own[kind].get(step_name) or self.base.steps[kind].get(step_name)
            clash = _clash(existing, self._loading, kind, step_name)
            if clash is not None:
                _refuse(self.failed_plugins, self._loading, step_name, clash)
                return func
            call = func
            if self._loading_file is not None and not plugin_sandbox.in_helper():
                call = self.sandbox.wrap(self._loading_file, kind, step_name, func)
            self.own[kind][step_name] = Step(kind=kind, name=step_name, func=call, params=tuple(params),
                                             doc=func.__doc__ or "", source=self._loading)
            return func

        return decorate

    def load_plugin_file(self, path: str | Path, probe: bool = True) -> bool:
        """Import one plug-in file; on any error record it by name and return False.

        With ``probe`` (the default) the file is first imported in a child process; one that
        takes longer than :data:`~labelassist.workflow.plugin_sandbox.PLUGIN_LOAD_TIMEOUT_S` is
        skipped.
        """
        path = Path(path)
        if probe and not plugin_sandbox.in_helper():
            problem = probe_plugin_files([path]).get(path)
            if problem is not None:
                self.failed_plugins[path.name] = problem
                log.warning("plug-in %s skipped: %s", path, problem)
                return False
        module_name = f"labelassist_plugin_{path.stem}"
        self._loading = f"plugin:{path.name}"
        self._loading_file = path.resolve()
        outer, _LOADING.into = getattr(_LOADING, "into", None), self
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise ImportError("not a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = self._modules[module_name] = module
            with _output_to_log(path):
                spec.loader.exec_module(module)
            return True
        except BaseException as exc:  # noqa: BLE001 - a plug-in must never take the session down
            if isinstance(exc, KeyboardInterrupt):
                raise
            sys.modules.pop(module_name, None)
            self._modules.pop(module_name, None)
            self.failed_plugins[path.name] = one_line(exc)
            log.warning("plug-in %s skipped: %s\n%s", path, one_line(exc), traceback.format_exc())
            return False
        finally:
            _LOADING.into = outer
            self._loading = "builtin"
            self._loading_file = None

    def load_plugins(self, folder: str | Path | None = None, entry_points: bool = True) -> dict[str, str]:
        """Load plug-ins from ``folder`` (default: the project's) and from installed packages.

        Returns the plug-ins that failed in this call, name -> reason (all failures so far stay
        in ``failed_plugins``). Steps the helper stopped after a time-out may run again.
        """
        folder = self.plugins_dir if folder is None else Path(folder)
        before = dict(self.failed_plugins)
        self.failed_plugins = {}
        self.sandbox.stopped.clear()
        if folder is not None and folder.is_dir():
            paths = [p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")]
            problems = probe_plugin_files(paths) if paths and not plugin_sandbox.in_helper() else {}
            for path in paths:
                if problems.get(path) is not None:
                    self.failed_plugins[path.name] = problems[path]
                    log.warning("plug-in %s skipped: %s", path, problems[path])
                else:
                    self.load_plugin_file(path, probe=False)
        if entry_points:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                # What the package registers when it is imported (once per process) is shared, like
                # the built-ins; what its entry point registers into the given registry is this
                # project's.
                self._loading = self.base._loading = f"package:{ep.value}"
                shared_failures = dict(self.base.failed_plugins)
                try:
                    loaded = ep.load()
                    if callable(loaded):
                        loaded(self)
                except BaseException as exc:  # noqa: BLE001
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    self.failed_plugins[ep.name] = one_line(exc)
                    log.warning("plug-in %s skipped: %s", ep.name, one_line(exc))
                finally:
                    self._loading = self.base._loading = "builtin"
                    self.failed_plugins.update(
                        {k: v for k, v in self.base.failed_plugins.items() if shared_failures.get(k) != v})
        failed, self.failed_plugins = self.failed_plugins, {**before, **self.failed_plugins}
        return failed

    def close(self) -> None:
        """Unload this project's plug-ins: their steps, modules and helper process are gone."""
        self.sandbox.close()
        for module_name, module in self._modules.items():
            if sys.modules.get(module_name) is module:
                del sys.modules[module_name]
        self._modules.clear()
        self.own = {k: {} for k in KINDS}


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


def _steps_of_file(path: str) -> dict[tuple[str, str], Callable]:
    """In a probe or helper process: import one plug-in file on its own; its steps by (kind, name).

    Each file gets a registry of its own, so two projects' files that name a step alike never
    meet in the helper.
    """
    layer = ProjectRegistry(REGISTRY)
    path = Path(path)
    if not layer.load_plugin_file(path, probe=False):
        raise PluginError(f"{plugin_sandbox.where(path)} could not be loaded again: {layer.failed_plugins[path.name]}")
    return {(kind, name): step.func for kind, found in layer.own.items() for name, step in found.items()}


def probe_plugin_files(paths: list[Path], timeout: float | None = None) -> dict[Path, str | None]:
    """Import each file once in a child process; the reason a file must be skipped, else None
    (:func:`labelassist.workflow.plugin_sandbox.probe_files`)."""
    return plugin_sandbox.probe_files(paths, _steps_of_file, timeout)


def stop_helper() -> None:
    """Stop every plug-in helper process, if any runs (at exit; a later call starts a fresh one)."""
    plugin_sandbox.stop_all()


REGISTRY = Registry()
register = REGISTRY.register
get = REGISTRY.get
names = REGISTRY.names
for_project = REGISTRY.for_project
