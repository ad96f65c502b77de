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
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from labelassist.errors import PluginError

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
            if self.type is int and float(value) != int(value):
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
    _loading: str = "builtin"

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
            self.steps[kind][step_name] = Step(
                kind=kind,
                name=step_name,
                func=func,
                params=tuple(params),
                doc=func.__doc__ or "",
                source=self._loading,
            )
            return func

        return decorate

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
    def load_plugin_file(self, path: str | Path) -> bool:
        """Import one plug-in file; on any error record it by name and return False."""
        path = Path(path)
        module_name = f"labelassist_plugin_{path.stem}"
        self._loading = f"plugin:{path.name}"
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise ImportError("not a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
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

    def load_plugins(self, folder: str | Path | None = None, entry_points: bool = True) -> dict[str, str]:
        """Load plug-ins from ``folder`` (``*.py``, sorted) and from installed packages.

        Returns the plug-ins that failed in this call, name -> reason (all failures
        so far stay in ``failed_plugins``).
        """
        self._ensure_builtins()
        before = dict(self.failed_plugins)
        self.failed_plugins = {}
        if folder is not None and Path(folder).is_dir():
            for path in sorted(Path(folder).glob("*.py")):
                if not path.name.startswith("_"):
                    self.load_plugin_file(path)
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


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"syntax error on line {exc.lineno}: {exc.msg}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


REGISTRY = Registry()
register = REGISTRY.register
get = REGISTRY.get
names = REGISTRY.names
