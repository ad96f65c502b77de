"""The project's model history (labelassist.models.history), on the shipped models and real projects.

Install and roll back are one atomic switch (``models/current.json``) between immutable folders, so
a roll back gives the very bytes installed before, and a process killed at any step of an install
leaves the old (model, card) pair or the new one, never a mix, and the labels untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labelassist import models
from labelassist.fileio import file_hash
from labelassist.models import ModelError
from labelassist.project import Project

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models"
MODEL_A = SHIPPED / "scratch_assay_unet.int8.onnx"
MODEL_B = SHIPPED / "usiigaci_phase_unet.int8.onnx"


@pytest.fixture(scope="module")
def template(tmp_path_factory, datasets) -> Path:
    """A project made as a user makes one: ``labelassist init`` on three scratch_assay images with masks."""
    root = tmp_path_factory.mktemp("history_template")
    images = root / "images"
    images.mkdir()
    for k in range(3):
        shutil.copy(datasets / "scratch_assay" / "images" / f"{k:03d}.png", images)
    done = subprocess.run([sys.executable, "-m", "labelassist", "init", str(root / "p"), "--images", str(images),
                           "--masks", str(datasets / "scratch_assay" / "masks")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return root / "p"


@pytest.fixture
def folder(template, tmp_path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "p"))


def _pair(project) -> tuple[str, bytes]:
    """(SHA-256 of the current model file, the bytes of its card)."""
    path = models.installed_model_path(project)
    return file_hash(path), models.card_path(path).read_bytes()


def _labels(folder: Path) -> list:
    with sqlite3.connect(folder / "labels.sqlite") as conn:
        return conn.execute("SELECT id, sample_id, mask FROM labels ORDER BY id").fetchall()


def _model_files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): file_hash(p) for p in sorted((folder / "models").rglob("*"))
            if p.is_file()}


def test_roll_back_is_bit_for_bit_and_to_no_model(folder):
    with Project.open(folder) as project:
        assert models.model_history(project) == [] and models.current_entry(project) is None
        assert models.project_model(project) is None
        models.install_model(project, MODEL_A)
        first = _pair(project)
        assert first[0] == file_hash(MODEL_A)
        models.install_model(project, MODEL_B)
        second = _pair(project)
        assert second[0] == file_hash(MODEL_B) and second != first

        history = models.model_history(project)
        assert [(e.id, e.source, e.reason) for e in history] == [
            (1, "imported", f"imported from {MODEL_A.name}"), (2, "imported", f"imported from {MODEL_B.name}")]
        assert [e.sha256 for e in history] == [first[0], second[0]]
        assert history[0].held_out_dsc == pytest.approx(0.9842) and history[0].trained_on == 0
        assert models.current_entry(project) == history[1]
        imports = project.store.events("model_import")
        assert [(e["details"]["source"], e["details"]["model_id"]) for e in imports] == [(MODEL_A.name, 1),
                                                                                      (MODEL_B.name, 2)]

        models.activate(project, 1, "rolled back by the test")
        assert _pair(project) == first  # the same model and card bytes, bit for bit
        assert models.current_entry(project) == history[0]
        assert models.project_model(project).card.raw["imported"]["from"] == MODEL_A.name

        models.activate(project, None, "no model")
        assert models.current_entry(project) is None
        assert not models.installed_model_path(project).exists() and models.project_model(project) is None

        models.activate(project, 2, "rolled forward")
        assert _pair(project) == second
        assert models.project_model(project).card.raw["imported"]["from"] == MODEL_B.name
        current = json.loads((folder / "models" / "current.json").read_text())
        assert current["id"] == 2 and current["reason"] == "rolled forward"

        with pytest.raises(ModelError, match="there is no model 7"):
            models.activate(project, 7, "no such model")
        assert _pair(project) == second


def test_a_legacy_model_becomes_entry_1_and_keeps_working(folder):
    legacy = folder / "models" / "prelabel.onnx"
    legacy.parent.mkdir(exist_ok=True)
    shutil.copyfile(MODEL_A, legacy)  # as install_model left it before the history
    shutil.copyfile(models.card_path(MODEL_A), models.card_path(legacy))
    before = _model_files(folder)
    with Project.open(folder) as project:
        # reading writes nothing
        (entry,) = models.model_history(project)
        assert (entry.id, entry.source, entry.sha256) == (1, "legacy", file_hash(MODEL_A))
        assert models.current_entry(project) == entry
        assert models.installed_model_path(project) == legacy
        assert models.project_model(project).card.name == models.read_card(models.card_path(MODEL_A)).name
        assert _model_files(folder) == before

        # the first write makes it entry 1 on disk, and current until the next one is activated
        models.install_model(project, MODEL_B)
        first, second = models.model_history(project)
        assert (first.id, first.source, first.sha256) == (1, "legacy", file_hash(MODEL_A))
        assert first.onnx == folder / "models" / "history" / "1" / "model.onnx"
        assert models.card_path(first.onnx).read_bytes() == models.card_path(MODEL_A).read_bytes()
        assert second.id == 2 and models.current_entry(project) == second
        models.activate(project, 1, "back to the legacy model")
        assert _pair(project) == (file_hash(MODEL_A), models.card_path(MODEL_A).read_bytes())
        assert models.project_model(project).card.name == models.read_card(models.card_path(MODEL_A)).name


INSTALLER = """
    import sys
    from pathlib import Path
    from labelassist import models
    from labelassist.project import Project
    project = Project.open(Path(sys.argv[1]))
    models.install_model(project, Path(sys.argv[2]))
    print("installed", flush=True)
"""


@pytest.mark.parametrize("step", ["copied", "history", "switched"])
def test_a_kill_at_any_step_of_an_install_leaves_one_whole_model(folder, step):
    with Project.open(folder) as project:
        models.install_model(project, MODEL_A)
        old = _pair(project)
    labels = _labels(folder)
    assert labels  # the masks imported by init
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(INSTALLER), str(folder), str(MODEL_B)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, LABELASSIST_INSTALL_PAUSE_AT=step))
    try:
        seen = []
        for line in child.stderr:
            seen.append(line)
            if line.strip() == f"AT {step}":
                break
        assert seen and seen[-1].strip() == f"AT {step}", "".join(seen)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    with Project.open(folder) as project:
        path = models.installed_model_path(project)
        models.check_model(path)  # the current model and its card still work together
        pair = _pair(project)
        if step in ("copied", "history"):  # before the switch: the old pair, bit for bit
            assert pair == old
        else:  # after it: the new model with its own card
            assert pair[0] == file_hash(MODEL_B)
            assert json.loads(pair[1])["imported"]["from"] == MODEL_B.name
        assert _labels(folder) == labels

        # the next install goes on from there; a leftover .tmp folder is ignored, then removed
        leftover = folder / "models" / "history" / "9.tmp"
        leftover.mkdir()
        (leftover / "model.onnx").write_bytes(b"half a model")
        assert [e.id for e in models.model_history(project)][0] == 1
        models.install_model(project, MODEL_B)
        assert not leftover.exists()
        ids = [e.id for e in models.model_history(project)]
        assert ids == sorted(set(ids)) and ids[0] == 1
        assert _pair(project)[0] == file_hash(MODEL_B)
        models.check_model(models.installed_model_path(project))
        assert sorted(p.name for p in (folder / "models" / "history").iterdir()) == sorted(map(str, ids))


def test_a_second_writer_waits_for_the_first(folder):
    """An import from the command line while another process is installing: one after the other."""
    import threading

    with Project.open(folder) as project:
        models.install_model(project, MODEL_A)
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(INSTALLER), str(folder), str(MODEL_B)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=dict(os.environ, LABELASSIST_INSTALL_PAUSE_AT="copied"))
        try:
            for line in child.stderr:
                if line.strip() == "AT copied":
                    break
            second = threading.Thread(target=models.install_model, args=(project, MODEL_B))
            second.start()
            second.join(timeout=3)
            assert second.is_alive()  # waiting for the first writer
            assert [e.id for e in models.model_history(project)] == [1]
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
        second.join(timeout=120)
        assert not second.is_alive()
        assert [e.id for e in models.model_history(project)] == [1, 2]
        assert _pair(project)[0] == file_hash(MODEL_B)
        assert sorted(p.name for p in (folder / "models" / "history").iterdir()) == ["1", "2"]


@pytest.mark.parametrize("damaged", ["history.json", "current.json"])
def test_a_damaged_history_file_is_one_clear_error_and_keeps_the_models(folder, damaged):
    with Project.open(folder) as project:
        models.install_model(project, MODEL_A)
        models.install_model(project, MODEL_B)
    (folder / "models" / damaged).write_text('{"entries": [{"id": 1, "na', encoding="utf-8")
    before = _model_files(folder)
    with Project.open(folder) as project:
        for call in (lambda: models.current_entry(project),
                     lambda: models.add_model(project, MODEL_A, {"name": "x"}, "imported", "test"),
                     lambda: models.activate(project, 1, "test"),
                     lambda: models.prune(project, keep=0),
                     lambda: models.install_model(project, MODEL_A)):
            with pytest.raises(ModelError) as err:
                call()
            message = str(err.value)
            assert damaged in message and "\n" not in message and "the model files are kept" in message
        if damaged == "current.json":
            with pytest.raises(ModelError, match="current.json"):
                models.project_model(project)
        else:
            with pytest.raises(ModelError, match="history.json"):
                models.model_history(project)
    assert _model_files(folder) == before  # nothing deleted, nothing rewritten
    done = subprocess.run([sys.executable, "-m", "labelassist", "model", "import", str(folder), str(MODEL_A)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("labelassist: error:")]
    assert len(errors) == 1 and damaged in errors[0], done.stderr
    assert _model_files(folder) == before


def test_prune_keeps_the_current_model_the_newest_and_every_import(folder):
    card = json.loads(models.card_path(MODEL_A).read_text())
    with Project.open(folder) as project:
        models.install_model(project, MODEL_A)  # 1, imported
        for n in range(2, 10):  # 2..9, learned on the tablet
            tablet_card = dict(card, name="p_tablet_unet", version=f"tablet.{n}",
                               training_data={"trained_on": list(range(n))})
            extra = {"model.fp32.onnx": SHIPPED / "scratch_assay_unet.onnx"} if n == 9 else None
            entry = models.add_model(project, MODEL_A, tablet_card, "tablet", f"round {n}", extra=extra)
            assert entry.id == n and entry.trained_on == n and entry.source == "tablet"
        # an int8 model keeps its full-precision weights beside it (the next round warm-starts from them)
        assert file_hash(entry.onnx.with_name("model.fp32.onnx")) == file_hash(SHIPPED / "scratch_assay_unet.onnx")
        models.activate(project, 3, "rolled back to round 3")
        models.install_model(project, MODEL_B)  # 10, imported, current
        models.activate(project, 3, "rolled back to round 3 again")

        assert models.prune(project, keep=5) == [2, 4, 5]
        ids = [e.id for e in models.model_history(project)]
        assert ids == [1, 3, 6, 7, 8, 9, 10]
        assert sorted(int(p.name) for p in (folder / "models" / "history").iterdir()) == ids
        assert models.current_entry(project).id == 3 and models.check_model(models.installed_model_path(project))
        assert models.prune(project, keep=5) == []
        # ids are never reused, also after a prune removed the newest tablet entries
        assert models.prune(project, keep=0) == [6, 7, 8, 9]
        assert [e.id for e in models.model_history(project)] == [1, 3, 10]
        assert models.add_model(project, MODEL_A, card, "tablet", "round 11").id == 11
        # a cut in the middle of a prune leaves a folder nothing points at: the next add removes it
        assert json.loads((folder / "models" / "history.json").read_text())["pruned"] == [2, 4, 5, 6, 7, 8, 9]
        leftover = folder / "models" / "history" / "4"
        leftover.mkdir()
        (leftover / "model.onnx").write_bytes(b"the rest of a pruned model")
        assert models.add_model(project, MODEL_A, card, "tablet", "round 12").id == 12
        assert not leftover.exists()


def test_a_model_whose_bytes_are_not_the_checked_ones_is_not_added(folder):
    from labelassist.models import history

    with Project.open(folder) as project:
        models.install_model(project, MODEL_A)
        before = _model_files(folder)
        card = json.loads(MODEL_B.with_suffix(".json").read_text())
        with pytest.raises(ModelError, match="changed after it was checked"):
            history.add_model(project, MODEL_B, card, "tablet", "test", expected_sha256=file_hash(MODEL_A))
        assert _model_files(folder) == before  # no entry, no folder, the current model unchanged
        entry = history.add_model(project, MODEL_B, card, "tablet", "test", expected_sha256=file_hash(MODEL_B))
        assert entry.sha256 == file_hash(MODEL_B)


def test_a_current_model_the_history_does_not_list_is_not_used_nor_removed(folder):
    with Project.open(folder) as project:
        models.install_model(project, MODEL_A)
        current = json.loads((folder / "models" / "current.json").read_text())
        stray = folder / "models" / "history" / "7"
        shutil.copytree(folder / "models" / "history" / str(current["id"]), stray)
        (folder / "models" / "current.json").write_text(json.dumps(dict(current, id=7)))
        with pytest.raises(ModelError, match="does not list"):
            models.installed_model_path(project)
        from labelassist.models import history

        card = json.loads(MODEL_B.with_suffix(".json").read_text())
        entry = history.add_model(project, MODEL_B, card, "imported", "test")  # a later install heals it
        assert stray.is_dir()  # the folder current.json names is never removed as a leftover
        history.activate(project, entry.id, "test")
        assert models.installed_model_path(project) == entry.onnx
