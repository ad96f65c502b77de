"""Plug-ins that hang: at import they are skipped and named, in a step call they are stopped.

A plug-in file is probed in a child process before it is imported into the app, and the steps
it registers run in one helper process that is killed when a call runs past
``REGISTRY.plugin_timeout_s``. Each test uses short limits (a few seconds) so the suite stays
fast; the time bounds asserted here are hang guards, not speed claims.
"""

from __future__ import annotations

import json
import shutil
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from labelassist.errors import PluginError
from labelassist.images import read_mask
from labelassist.importer import import_images
from labelassist.project import Project
from labelassist.session import Session
from labelassist.workflow import plugin_sandbox
from labelassist.workflow.registry import REGISTRY, for_project

LOAD_S = 3.0   # load time-out in these tests (the product default is 10 s)
CALL_S = 2.0   # call time-out in these tests (the product default is 30 s)
COUNTS: dict[str, int] = {}

HANGING_STEPS = '''
import time
import numpy as np
from labelassist.workflow.prelabel import Prelabel
from labelassist.workflow.registry import register


@register("prelabel", "never_returns")
def never_returns(image, context=None):
    """A pre-label that waits forever."""
    while True:
        time.sleep(0.05)


@register("preprocess", "spins")
def spins(image):
    """A pre-processing step stuck in a busy loop."""
    while True:
        pass


@register("preprocess", "crashes")
def crashes(image):
    """A pre-processing step with a bug."""
    return image[10 ** 9]


@register("prelabel", "uses_the_model")
def uses_the_model(image, context=None):
    """A pre-label from the context's model (whatever object it is)."""
    return Prelabel(mask=context.model.predict(image) > 0.5, probability=None, method="uses_the_model")


@register("prelabel", "brighter_than_mean")
def brighter_than_mean(image, context=None):
    """Pixels brighter than the mean (a working plug-in step beside the broken ones)."""
    grey = np.asarray(image, dtype=np.float64)
    return Prelabel(mask=grey > grey.mean(), probability=None, method="brighter_than_mean")
'''


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def _stored(project: Project) -> list[tuple]:
    return project.store.conn.execute("SELECT id, sample_id, mask FROM labels ORDER BY id").fetchall()


@pytest.fixture
def short_limits(monkeypatch):
    monkeypatch.setattr(plugin_sandbox, "PLUGIN_LOAD_TIMEOUT_S", LOAD_S)
    monkeypatch.setattr(REGISTRY, "plugin_timeout_s", CALL_S)
    REGISTRY.names("prelabel")  # the built-in steps are registered before the snapshot
    steps = {kind: dict(found) for kind, found in REGISTRY.steps.items()}
    yield
    # Each project registry's helper process and stopped steps went with it when it closed.
    REGISTRY.steps.update(steps)  # the hanging steps of these tests do not stay registered


@pytest.fixture
def project(tmp_path, datasets):
    images = tmp_path / "images"
    images.mkdir()
    for k in range(4):
        shutil.copy(datasets / "scratch_assay" / "images" / f"{k:03d}.png", images)
    project = Project.create(tmp_path / "p")
    import_images(project, [images])
    project.plugins_dir.mkdir()
    yield project
    project.close()


def _truth(datasets: Path, sample) -> np.ndarray:
    return read_mask(datasets / "scratch_assay" / "masks" / sample.name)


def test_a_plugin_that_hangs_or_exits_at_import_is_skipped_and_named(project, short_limits):
    plugins = project.plugins_dir
    (plugins / "slow.py").write_text("while True:\n    pass\n")
    (plugins / "sleeps.py").write_text("import time\ntime.sleep(3600)\n")
    (plugins / "exits.py").write_text("import os\nos._exit(3)\n")
    example = resources.files("labelassist") / "examples" / "adaptive_threshold.py"
    (plugins / "adaptive_threshold.py").write_text(example.read_text())
    started = time.monotonic()
    with Session(project, background=False) as session:
        # Hang guard: two hanging files cost two load time-outs, not forever.
        assert time.monotonic() - started < 2 * LOAD_S + 90
        assert session.plugin_errors == {
            "slow.py": f"loading took longer than {LOAD_S:g} s, so it was stopped",
            "sleeps.py": f"loading took longer than {LOAD_S:g} s, so it was stopped",
            "exits.py": "it ended the program while loading (exit code 3)",
        }
        # The good plug-in beside them loaded, and its step gives in the helper process
        # exactly what the function gives when called directly.
        step = session.assistance.registry.get("prelabel", "adaptive_threshold")
        assert step.source == "plugin:adaptive_threshold.py"
        sample = project.store.samples()[0]
        image = project.read_image(sample)
        via_helper = session.prelabel(sample.id, "adaptive_threshold")
        direct = step.func.__wrapped__(image, None, **step.resolve({}))
        assert via_helper.mask.any() and np.array_equal(via_helper.mask, direct.mask)
    for _ in range(3):
        _count("plug-in files that hang or exit at import")


def test_a_prelabel_step_that_never_returns_is_stopped_and_the_session_goes_on(project, datasets, short_limits):
    (project.plugins_dir / "steps.py").write_text(HANGING_STEPS)
    with Session(project, background=False) as session:
        assert session.plugin_errors == {}
        first = session.next()
        session.save(first.sample.id, _truth(datasets, first.sample))
        before = _stored(project)
        project.settings["prelabel"]["method"] = "never_returns"
        started = time.monotonic()
        second = session.next()  # the pre-label is stopped after CALL_S: the sample opens without one
        assert time.monotonic() - started < CALL_S + 60  # hang guard
        assert second is not None and second.sample.id != first.sample.id
        assert second.prelabel is None or second.prelabel.is_placeholder
        # Asked for again by hand: a plain error at once, naming the step and the file.
        with pytest.raises(PluginError, match=r"^the plug-in step 'never_returns' \(plugins/steps.py\) did not "
                                              rf"finish within {CALL_S:g} s and was stopped; it stays off"):
            session.prelabel(second.sample.id, "never_returns")
        # The other step of the same file still works (a fresh helper process).
        working = session.prelabel(second.sample.id, "brighter_than_mean")
        assert working.mask.shape == (second.sample.height, second.sample.width) and working.mask.any()
        truth = _truth(datasets, second.sample)
        session.save(second.sample.id, truth)
        assert _stored(project)[:len(before)] == before
        assert np.array_equal(project.store.latest_label(second.sample.id).mask, truth)
    _count("plug-in steps that never return")


def test_a_preprocess_step_that_spins_ends_in_a_plain_error_and_labels_stay(project, datasets, short_limits):
    (project.plugins_dir / "steps.py").write_text(HANGING_STEPS)
    with Session(project, background=False) as session:
        first = session.next()
        session.save(first.sample.id, _truth(datasets, first.sample))
        before = _stored(project)
        project.settings["preprocess"]["pipeline"] = [{"step": "spins"}]
        started = time.monotonic()
        with pytest.raises(PluginError, match=r"^the plug-in step 'spins' \(plugins/steps.py\) did not finish "
                                              rf"within {CALL_S:g} s and was stopped$"):
            session.next()
        assert time.monotonic() - started < CALL_S + 60  # hang guard
        # A plug-in step with a bug: a plain PluginError naming it, not an IndexError.
        project.settings["preprocess"]["pipeline"] = [{"step": "crashes"}]
        with pytest.raises(PluginError, match=r"^the plug-in step 'crashes' \(plugins/steps.py\) failed: IndexError"):
            session.next()
        # Back to no pre-processing: labelling goes on, nothing stored was touched.
        session.set_pipeline([], confirm=True)
        again = session.next()
        assert again.display.dtype == np.uint8
        assert _stored(project) == before
        session.save(again.sample.id, _truth(datasets, again.sample))
        assert _stored(project)[:len(before)] == before and len(_stored(project)) == len(before) + 1
    _count("plug-in steps that never return")
    _count("plug-in steps that raise")


def test_arguments_that_cannot_go_to_the_helper_run_in_a_thread_under_the_same_time_out(project, short_limits):
    from labelassist.workflow.prelabel import PrelabelContext

    (project.plugins_dir / "steps.py").write_text(HANGING_STEPS)
    registry = for_project(project.plugins_dir)
    assert registry.failed_plugins == {}
    image = project.read_image(project.store.samples()[0])

    class LambdaModel:  # holds a lambda: cannot be pickled, so it cannot go to the helper process
        def __init__(self, predict):
            self.predict = predict

    quick = PrelabelContext(model=LambdaModel(lambda im: np.ones(im.shape[:2], np.float32)))
    with registry:
        result = registry.get("prelabel", "uses_the_model")(image, quick)
        assert result.mask.all()
        stuck = PrelabelContext(model=LambdaModel(lambda im: time.sleep(3600)))
        started = time.monotonic()
        with pytest.raises(PluginError,
                           match=rf"'uses_the_model' \(plugins/steps.py\) did not finish within {CALL_S:g} s"):
            registry.get("prelabel", "uses_the_model")(image, stuck)
        assert time.monotonic() - started < CALL_S + 30  # hang guard
    _count("plug-in steps that never return")


def test_builtin_steps_stay_direct_calls():
    step = REGISTRY.get("prelabel", "otsu")
    assert not isinstance(step.func, plugin_sandbox._InHelper)
    assert step.source == "builtin"


def test_report_plugin_cases():
    """Runs last in this file: the counts go to tests/artifacts (and docs/reliability.md)."""
    artifacts = Path(__file__).with_name("artifacts")
    artifacts.mkdir(exist_ok=True)
    (artifacts / "plugin_timeout_counts.json").write_text(json.dumps(COUNTS))
    print("plug-in time-out cases:", COUNTS)
    assert sum(COUNTS.values()) >= 5, COUNTS
