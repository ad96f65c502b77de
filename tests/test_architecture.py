"""The package's layering, read from its source with ``ast`` (nothing is imported or run).

Every ``import`` and ``from ... import`` in every module under ``app/labelassist`` counts,
those inside functions and methods included (an import put inside a function to dodge a
cycle is still a cycle); only imports under ``if TYPE_CHECKING:`` are left out, as they
never run. The rules:

1. **No import cycles** among labelassist modules. An edge A -> B is an import of module B
   in A: ``import labelassist.x.y`` and ``from labelassist.x import y`` (y a module) both
   point at ``labelassist.x.y``; ``from labelassist.x import name`` (name not a module)
   points at the package ``labelassist.x`` (its ``__init__``). The parent packages Python
   also runs on the way are not edges (``labelassist/__init__.py`` would otherwise close a
   cycle through every module).
2. **Kivy only in the UI**: ``kivy`` is imported only by modules under
   ``labelassist/ui/`` and by ``labelassist/smoke.py`` (the bundle's UI self-test).
3. **``labelassist/workflow/`` does no file I/O**: its steps take numpy arrays and return
   numpy arrays; reading and writing files (images, masks, the database, settings) belongs
   to the modules around it. A workflow module may not
   - import a labelassist module that reads or writes such files (``FILE_IO_MODULES``),
     the session, the command line or the UI;
   - import a library that only reads or writes files (``FILE_IO_LIBRARIES``: sqlite3,
     tifffile, imageio, PIL...);
   - call the built-in ``open``, a cv2 file or codec function (``cv2.imread``,
     ``cv2.imwrite``, ``cv2.VideoCapture``...) or a numpy file function (``np.load``,
     ``np.save``, ``np.fromfile``...), however cv2 and numpy were imported.
   Loading plug-in *code* (``registry.py`` importing ``plugins/*.py``) is not file I/O in
   this sense: it is how steps come to exist.
4. **``cli.py`` is the entry point, not a library**: only ``labelassist/__main__.py``
   imports it. What other modules need lives elsewhere (``paths.data_home``,
   ``demo_project.demo_project``); what the commands share is in ``cli_support.py``.
   (``packaging/labelassist_main.py``, the bundle's launcher, is outside the package.)
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "app" / "labelassist"

KIVY_ALLOWED = ("labelassist.ui", "labelassist.smoke")

# Modules that read or write files (or open projects, sessions, windows), with their submodules.
# Pure codecs of bytes in memory (maskcodec) are not file I/O.
FILE_IO_MODULES = frozenset({
    "labelassist.images", "labelassist.store", "labelassist.project", "labelassist.fileio",
    "labelassist.importer", "labelassist.export", "labelassist.backup",
    "labelassist.kiosk_settings", "labelassist.logsetup", "labelassist.demo_project",
    "labelassist.models", "labelassist.training", "labelassist.experiments", "labelassist.evaluation",
    "labelassist.session", "labelassist.cli", "labelassist.cli_support", "labelassist.cli_evaluate",
    "labelassist.smoke", "labelassist.ui",
})
FILE_IO_LIBRARIES = frozenset({"sqlite3", "shelve", "dbm", "tifffile", "imageio", "PIL", "skimage.io",
                               "onnxruntime", "h5py", "zarr"})
CV2_FILE_FUNCTIONS = frozenset({"imread", "imreadmulti", "imreadanimation", "imwrite", "imwritemulti",
                                "haveImageReader", "haveImageWriter", "VideoCapture", "VideoWriter",
                                "imdecode", "imdecodemulti", "imencode"})
NUMPY_FILE_FUNCTIONS = frozenset({"load", "save", "savez", "savez_compressed", "fromfile", "loadtxt",
                                  "savetxt", "genfromtxt", "memmap"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk_running_code(tree: ast.AST):
    """Every node that may run: ``ast.walk`` without the bodies of ``if TYPE_CHECKING:``."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _tree(name: str) -> ast.Module:
    return _parse(MODULES[name])


def imported_names(name: str) -> list[tuple[str, int]]:
    """(dotted name, line) of everything module ``name`` imports: ``import a.b`` gives ``a.b``,
    ``from a import b`` gives ``a.b`` (a module, or a name defined in ``a``: :func:`_target`
    tells them apart); relative imports are resolved."""
    is_package = MODULES[name].name == "__init__.py"
    found = []
    for node in _walk_running_code(_tree(name)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found += [(f"{base}.{alias.name}" if alias.name != "*" else base, node.lineno) for alias in node.names]
    return found


def _target(dotted: str) -> str | None:
    """The labelassist module an imported name points at (see rule 1), or None outside the package."""
    while dotted:
        if dotted in MODULES:
            return dotted
        dotted = dotted.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the labelassist modules it imports (rule 1)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for dotted, _ in imported_names(name):
            target = _target(dotted)
            if target is not None and target != name:
                graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's strongly connected components with more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _cycle_path(graph: dict[str, set[str]], component: frozenset[str]) -> str:
    """One cycle inside a component, as ``a -> b -> a``, for the failure message."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = min(w for w in graph[path[-1]] if w in component)
        if nxt in seen:
            return " -> ".join(path[path.index(nxt):] + [nxt])
        path.append(nxt)
        seen.add(nxt)


def _in(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


# -- the tests ------------------------------------------------------------------------------

def test_the_reader_sees_the_package_and_imports_inside_functions():
    assert {"labelassist.cli", "labelassist.ui.app", "labelassist.workflow.registry"} <= set(MODULES)
    graph = import_graph()
    # cli.py imports the smoke test inside a function only: it must still be an edge
    assert "labelassist.smoke" in graph["labelassist.cli"]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_there_is_no_import_cycle():
    graph = import_graph()
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles: " + "; ".join(_cycle_path(graph, c) for c in cycles)


def test_kivy_is_imported_only_by_the_ui_and_the_smoke_test():
    offenders = [f"{name}:{line} imports {dotted}" for name in MODULES if not _in(name, KIVY_ALLOWED)
                 for dotted, line in imported_names(name) if _in(dotted, ("kivy",))]
    assert not offenders, "\n".join(offenders)


def _workflow_file_io(name: str) -> list[str]:
    tree = _tree(name)
    problems = [f"{name}:{line} imports {dotted}" for dotted, line in imported_names(name)
                if _in(dotted, FILE_IO_MODULES) or _in(dotted, FILE_IO_LIBRARIES)
                or (dotted.startswith("cv2.") and dotted[4:] in CV2_FILE_FUNCTIONS)
                or (dotted.startswith("numpy.") and dotted[6:] in NUMPY_FILE_FUNCTIONS)]
    # what cv2 and numpy are called in this module (``import numpy as np``)
    aliases = {"cv2": "cv2", "numpy": "numpy"}
    for node in _walk_running_code(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in ("cv2", "numpy"):
                    aliases[a.asname or a.name] = a.name
    for node in _walk_running_code(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            problems.append(f"{name}:{node.lineno} calls open()")
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in aliases:
            module = aliases[func.value.id]
            if (module, func.attr) in {("cv2", f) for f in CV2_FILE_FUNCTIONS} | \
                    {("numpy", f) for f in NUMPY_FILE_FUNCTIONS}:
                problems.append(f"{name}:{node.lineno} calls {module}.{func.attr}")
    return problems


def test_workflow_does_no_file_io():
    workflow = [name for name in MODULES if _in(name, ("labelassist.workflow",))]
    assert "labelassist.workflow.prelabel" in workflow
    problems = [p for name in workflow for p in _workflow_file_io(name)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source, expected", [
    ("import cv2\nimg = cv2.imread('x.png')\n", "calls cv2.imread"),
    ("import numpy as np\ndef f():\n    return np.load('x.npy')\n", "calls numpy.load"),
    ("def f(p):\n    from labelassist import images\n    return images.read_image(p)\n", "imports labelassist.images"),
    ("from labelassist.store import Store\n", "imports labelassist.store"),
    ("def f(p):\n    with open(p) as fh:\n        return fh.read()\n", "calls open()"),
])
def test_the_workflow_rule_catches_file_io(monkeypatch, tmp_path, source, expected):
    fake = tmp_path / "step.py"
    fake.write_text(source)
    monkeypatch.setitem(MODULES, "labelassist.workflow.fake_step", fake)
    assert any(expected in p for p in _workflow_file_io("labelassist.workflow.fake_step"))


def test_cli_is_imported_only_by_main():
    importers = sorted(name for name, targets in import_graph().items() if "labelassist.cli" in targets)
    assert importers == ["labelassist.__main__"]


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = {start}, [start]
    while stack:
        for w in graph.get(stack.pop(), ()):
            if w not in seen:
                seen.add(w)
                stack.append(w)
    return seen


def test_the_kiosk_never_imports_torch_the_trainer_runs_in_a_process_of_its_own():
    """Nothing the kiosk can import, at any level (imports inside functions count), imports torch
    or onnx: the U-Net trainer (labelassist.training.child) is started as a process, and the
    kiosk talks to it through labelassist.training.request alone."""
    graph = import_graph()
    reachable = _reachable(graph, "labelassist.ui.app")
    assert {"labelassist.session.training", "labelassist.training.request"} <= reachable
    offenders = [f"{name}:{line} imports {dotted}" for name in sorted(reachable)
                 for dotted, line in imported_names(name) if _in(dotted, ("torch", "onnx"))]
    assert not offenders, "\n".join(offenders)
    assert not reachable & {"labelassist.training.child", "labelassist.training.tablet_round",
                            "labelassist.training.warm_start", "labelassist.training.core"}
    # The trainer's side does import torch: the rule above is not vacuous.
    assert any(_in(d, ("torch",)) for d, _ in imported_names("labelassist.training.tablet_round"))
