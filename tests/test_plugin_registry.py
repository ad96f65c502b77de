"""One registry per project: the built-ins shared, a project's plug-ins on top and gone when it closes.

The kiosk switches projects inside one process. Before this, the registry was process-wide: a
Session on project A with ``plugins/onlya.py``, closed; a Session on project B still offered
``only_in_a``, and a step both projects name alike ran A's code in B.
"""

from __future__ import annotations

import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from labelassist.errors import PluginError
from labelassist.importer import import_images
from labelassist.models import load_model
from labelassist.project import Project
from labelassist.session import Session
from labelassist.session.assistance import Assistance
from labelassist.session.background import Background
from labelassist.session.lookahead import display_image
from labelassist.session.pool import Selection
from labelassist.workflow.inspection import InspectionContext, highlight, inspect_label
from labelassist.workflow.postprocess import suggest
from labelassist.workflow.prelabel import PrelabelContext
from labelassist.workflow.preprocess import run_pipeline
from labelassist.workflow.registry import REGISTRY, for_project, stop_helper
from labelassist.workflow.selector import Pool, combined_scores, rank, select_next

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "scratch_assay_unet.int8.onnx"

HEAD = "import numpy as np\nfrom labelassist.workflow.prelabel import Prelabel\n" \
       "from labelassist.workflow.registry import register\n\n\n"


def _prelabel(name: str, body: str) -> str:
    return (f'@register("prelabel", "{name}")\n'
            f'def {name}(image, context=None):\n'
            f'    """A test pre-label."""\n'
            f'    shape = np.asarray(image).shape[:2]\n'
            f'    return Prelabel(mask={body}, probability=None, method="{name}")\n\n\n')


# Each project has a plug-in of its own, and a file of the same name whose step is named alike
# but computes something else: everything in A, nothing in B.
PLUGINS = {
    "a": {"onlya.py": HEAD + _prelabel("only_in_a", "np.ones(shape, bool)"),
          "shared.py": HEAD + _prelabel("same_name", "np.ones(shape, bool)")},
    "b": {"onlyb.py": HEAD + _prelabel("only_in_b", "np.ones(shape, bool)") + _prelabel("otsu", "None"),
          "shared.py": HEAD + _prelabel("same_name", "np.zeros(shape, bool)")},
}

USES_THE_MODEL = HEAD + '''
@register("prelabel", "model_above_half")
def model_above_half(image, context=None):
    """The context's model, thresholded at 0.5 (the model arrives pickled in the helper)."""
    return Prelabel(mask=context.model.predict(image) > 0.5, probability=None, method="model_above_half")
'''


# One step of every kind, for the test that goes through the workflow functions.
EVERY_KIND = """import numpy as np
from labelassist.workflow.registry import register
from labelassist.workflow.results import Change, Check, Prelabel


@register("preprocess", "a_ones")
def a_ones(image):
    \"\"\"All ones.\"\"\"
    return np.ones(np.asarray(image).shape, np.float32)


@register("selector", "a_first")
def a_first(pool):
    \"\"\"The first sample of the pool.\"\"\"
    scores = np.zeros(len(pool))
    scores[0] = 1.0
    return scores


@register("prelabel", "a_everything")
def a_everything(image, context=None):
    \"\"\"Every pixel.\"\"\"
    return Prelabel(mask=np.ones(np.asarray(image).shape[:2], bool), probability=None, method="a_everything")


@register("inspect", "a_says_no")
def a_says_no(mask, context):
    \"\"\"Never content.\"\"\"
    return Check("a_says_no", 0.0, False, "A says no")


@register("postprocess", "a_clears")
def a_clears(mask):
    \"\"\"Empties the mask.\"\"\"
    new = np.zeros(mask.shape, bool)
    return new, Change.between(mask, new)
"""


def _make_project(tmp_path: Path, datasets: Path, key: str, first: int) -> Project:
    images = tmp_path / f"images-{key}"
    images.mkdir()
    for k in (first, first + 1):  # copies: a test never writes beside the shared datasets
        shutil.copy(datasets / "scratch_assay" / "images" / f"{k:03d}.png", images)
    project = Project.create(tmp_path / f"project-{key}")
    import_images(project, [images])
    project.plugins_dir.mkdir()
    for name, text in PLUGINS[key].items():
        (project.plugins_dir / name).write_text(text, encoding="utf-8")
    return project


@pytest.fixture
def two_projects(tmp_path, datasets):
    projects = [_make_project(tmp_path, datasets, "a", 0), _make_project(tmp_path, datasets, "b", 2)]
    yield projects
    for project in projects:
        project.close()
    stop_helper()


def _sample(project: Project):
    sample = project.store.samples()[0]
    return sample, project.read_image(sample)


def test_a_closed_projects_plugins_are_not_offered_in_the_next_session(two_projects):
    a, b = two_projects
    with Session(a, background=False) as session:
        sample, _ = _sample(a)
        assert session.prelabel(sample.id, "only_in_a").mask.all()
        assert session.prelabel(sample.id, "same_name").mask.all()
    with Session(b, background=False) as session:
        assert session.plugin_errors == {
            "onlyb.py (step 'otsu')": "a built-in prelabel step is already called 'otsu' and a plug-in cannot "
                                      "replace it; rename the plug-in's step"}
        sample, _ = _sample(b)
        with pytest.raises(PluginError, match="there is no prelabel step called 'only_in_a'"):
            session.prelabel(sample.id, "only_in_a")
        assert session.prelabel(sample.id, "only_in_b").mask.all()
        assert not session.prelabel(sample.id, "same_name").mask.any()  # B's step, not A's
        assert session.prelabel(sample.id, "otsu").method == "otsu"  # the built-in, untouched
        assert "only_in_a" not in REGISTRY.names("prelabel")


def test_each_project_registry_layers_its_own_plugins_on_the_shared_builtins(two_projects):
    a, b = two_projects
    builtins = {kind: dict(found) for kind, found in REGISTRY.steps.items()}
    with for_project(a.plugins_dir) as in_a, for_project(b.plugins_dir) as in_b:
        # Both open at once, each with its own plug-ins; the shared built-ins gained nothing.
        assert {"only_in_a", "same_name"} <= set(in_a.names("prelabel")) and "only_in_b" not in in_a.names("prelabel")
        assert {"only_in_b", "same_name"} <= set(in_b.names("prelabel")) and "only_in_a" not in in_b.names("prelabel")
        assert in_a.failed_plugins == {} and list(in_b.failed_plugins) == ["onlyb.py (step 'otsu')"]
        assert {kind: dict(found) for kind, found in REGISTRY.steps.items()} == builtins
        assert in_a.get("prelabel", "otsu") is in_b.get("prelabel", "otsu") is builtins["prelabel"]["otsu"]
        assert set(in_a.steps["prelabel"]) == set(in_a.names("prelabel"))
        assert in_b.get("prelabel", "only_in_b").source == "plugin:onlyb.py"
        # The same file name and step name in two projects: each runs its own code, in its own helper.
        _, image = _sample(a)
        assert in_a.get("prelabel", "same_name")(image, None).mask.all()
        assert not in_b.get("prelabel", "same_name")(image, None).mask.any()
        assert in_a.get("prelabel", "same_name")(image, None).mask.all()
        assert in_a.sandbox.helper.process.pid != in_b.sandbox.helper.process.pid
        # Closed: A's plug-ins, module and helper process are gone; B goes on.
        in_a.close()
        assert in_a.names("prelabel") == sorted(builtins["prelabel"])
        with pytest.raises(PluginError, match="no prelabel step called 'only_in_a'"):
            in_a.get("prelabel", "only_in_a")
        assert in_a.sandbox.helper.process is None
        assert "labelassist_plugin_onlya" not in sys.modules
        assert "labelassist_plugin_onlyb" in sys.modules
        assert in_b.get("prelabel", "only_in_b")(image, None).mask.all()
    assert "labelassist_plugin_onlyb" not in sys.modules and in_b.sandbox.helper.process is None


def test_a_project_time_out_follows_the_shared_default_until_set(two_projects, monkeypatch):
    a, _ = two_projects
    monkeypatch.setattr(REGISTRY, "plugin_timeout_s", 12.0)
    with for_project(a.plugins_dir, entry_points=False) as registry:
        assert registry.plugin_timeout_s == 12.0
        registry.plugin_timeout_s = 5.0
        assert registry.plugin_timeout_s == 5.0 and REGISTRY.plugin_timeout_s == 12.0


def test_a_model_travels_to_the_helper_as_its_file(two_projects):
    a, _ = two_projects
    model = load_model(MODEL, threads=1)
    copy = pickle.loads(pickle.dumps(model))
    assert (copy.path, copy.card, copy.threads) == (model.path, model.card, model.threads)
    assert pickle.loads(pickle.dumps(model)) is copy  # made once per process
    (a.plugins_dir / "uses_the_model.py").write_text(USES_THE_MODEL, encoding="utf-8")
    _, image = _sample(a)
    with for_project(a.plugins_dir, entry_points=False) as registry:
        via_helper = registry.get("prelabel", "model_above_half")(image, PrelabelContext(model=model))
    assert via_helper.mask.any() and np.array_equal(via_helper.mask, model.predict(image) > 0.5)


def test_installed_packages_register_through_their_entry_point(two_projects, monkeypatch):
    """What a package registers when imported is shared (it is imported once per process); what its
    entry point registers into the registry it is given belongs to that project."""
    import importlib.metadata

    from labelassist.workflow import registry as registry_mod

    def import_package():  # importing the package: module-level registrations, once per process
        @registry_mod.register("postprocess", "from_the_package")
        def from_the_package(mask):
            """Unchanged."""
            return mask, None

        registry_mod.register("prelabel", "otsu")(lambda image, context=None: None)  # refused
        return lambda project_registry: project_registry.register("inspect", "per_project")(lambda m, c: None)

    class EntryPoint:
        name, value = "demo-package", "demo_package:plugin"
        load = staticmethod(import_package)

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [EntryPoint()])
    before = REGISTRY.get("prelabel", "otsu")
    try:
        with for_project(two_projects[0].plugins_dir) as registry:
            assert registry.get("inspect", "per_project").source == "package:demo_package:plugin"
            assert registry.get("postprocess", "from_the_package").source == "package:demo_package:plugin"
            assert "per_project" not in REGISTRY.steps["inspect"]
            assert REGISTRY.steps["prelabel"]["otsu"] is before
            assert registry.failed_plugins == {"demo_package:plugin (step 'otsu')": (
                "a built-in prelabel step is already called 'otsu' and a plug-in cannot replace it; "
                "rename the plug-in's step")}
    finally:
        REGISTRY.steps["postprocess"].pop("from_the_package", None)
        REGISTRY.failed_plugins.pop("demo_package:plugin (step 'otsu')", None)


def test_project_b_never_sees_project_a_steps_through_the_workflow_functions(two_projects, tmp_path):
    """Two sessions' registries open at once, A with a plug-in of every kind and B with none: the
    workflow functions and the session's parts find A's steps through A's registry only."""
    project = two_projects[0]  # settings, store and images for the session's parts
    folder_a, folder_b = tmp_path / "plugins-a", tmp_path / "plugins-b"
    folder_a.mkdir()
    folder_b.mkdir()
    (folder_a / "every_kind.py").write_text(EVERY_KIND, encoding="utf-8")
    sample, image = _sample(project)
    mask = np.zeros(image.shape[:2], bool)
    mask[5:20, 5:20] = True
    pool = Pool(np.random.default_rng(1).random((6, 3)).astype(np.float32), np.zeros(6, bool))
    nothing = InspectionContext()

    def selection(registry, weights):
        project.settings["selector"]["weights"] = weights
        return Selection(project, registry=registry).ranking()

    def prelabel(registry):
        return Assistance(project, None, Background(False), registry=registry).run_prelabel(
            "a_everything", image, PrelabelContext())

    with for_project(folder_a, entry_points=False) as in_a, for_project(folder_b, entry_points=False) as in_b:
        assert in_a.failed_plugins == {} and in_b.failed_plugins == {}
        # A reaches each of its steps through the workflow functions and the session's parts.
        assert np.array_equal(run_pipeline(image, [{"step": "a_ones"}], registry=in_a),
                              np.ones(image.shape, np.float32))
        assert (display_image(image, [{"step": "a_ones"}], in_a) == 255).all()
        assert select_next(pool, {"a_first": 1.0}, registry=in_a) == 0
        assert rank(pool, {"a_first": 1.0}, registry=in_a)[0] == 0
        assert combined_scores(pool, {"a_first": 1.0}, registry=in_a)[0] == 1.0
        assert selection(in_a, {"a_first": 1.0})[0].scores == {"a_first": 1.0}
        report = inspect_label(mask, nothing, {"a_says_no": {}}, 0.5, registry=in_a)
        assert report.warning and [c.name for c in report.failed] == ["a_says_no"]
        assert not highlight(mask, "a_says_no", nothing, registry=in_a).any()
        [suggestion] = suggest(mask, [{"step": "a_clears"}], registry=in_a)
        assert suggestion.step == "a_clears" and not suggestion.mask.any()
        assert prelabel(in_a).mask.all()
        # B, open at the same time, and the built-ins alone (a caller with no project) see none of them.
        for registry in (in_b, REGISTRY):
            with pytest.raises(PluginError, match="no preprocess step called 'a_ones'"):
                run_pipeline(image, [{"step": "a_ones"}], registry=registry)
            with pytest.raises(PluginError, match="no preprocess step called 'a_ones'"):
                display_image(image, [{"step": "a_ones"}], registry)
            for choose in (select_next, rank, combined_scores):
                with pytest.raises(PluginError, match="no selector step called 'a_first'"):
                    choose(pool, {"a_first": 1.0}, registry=registry)
            with pytest.raises(PluginError, match="no selector step called 'a_first'"):
                selection(registry, {"a_first": 1.0})
            with pytest.raises(PluginError, match="no inspect step called 'a_says_no'"):
                inspect_label(mask, nothing, {"a_says_no": {}}, 0.5, registry=registry)
            with pytest.raises(PluginError, match="no inspect step called 'a_says_no'"):
                highlight(mask, "a_says_no", nothing, registry=registry)
            with pytest.raises(PluginError, match="no postprocess step called 'a_clears'"):
                suggest(mask, [{"step": "a_clears"}], registry=registry)
            with pytest.raises(PluginError, match="no prelabel step called 'a_everything'"):
                prelabel(registry)
            # The built-in steps work through B as through the shared registry.
            assert select_next(pool, {"sequential": 1.0}, registry=registry) == 0
            assert [r.sample.id for r in selection(registry, {"sequential": 1.0})][0] == sample.id


def test_two_sessions_open_at_once_each_see_only_their_own_plugins(two_projects):
    a, b = two_projects
    for path in b.plugins_dir.iterdir():  # project B without plug-ins
        path.unlink()
    with Session(a, background=False) as in_a, Session(b, background=False) as in_b:
        sample_a, _ = _sample(a)
        sample_b, _ = _sample(b)
        assert in_a.prelabel(sample_a.id, "only_in_a").mask.all()
        with pytest.raises(PluginError, match="there is no prelabel step called 'only_in_a'"):
            in_b.prelabel(sample_b.id, "only_in_a")
        assert in_a.prelabel(sample_a.id, "only_in_a").mask.all()  # opening B took nothing from A
        assert "only_in_a" in in_a.registry.names("prelabel")
        assert "only_in_a" not in in_b.registry.names("prelabel") and in_b.plugin_errors == {}
    assert "only_in_a" not in in_a.registry.names("prelabel")  # closed with its session
