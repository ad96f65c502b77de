"""The session's U-Net trainer: when a round is due, what it is compared with, install and roll back.

Real scratch_assay projects, real ONNX models, the real trainer process (torch) where a round
runs; the kiosk side never imports torch (checked in a driver process).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from labelassist import models
from labelassist.fileio import file_hash
from labelassist.importer import import_images
from labelassist.models import SHIPPED_DIR, history
from labelassist.project import Project
from labelassist.session import Session
from labelassist.session.training_rules import (
    IDLE_S,
    held_out_count,
    round_due,
    should_install,
)
from labelassist.training.request import RoundResult
from labelassist.workflow.metrics import dice

APP = Path(__file__).resolve().parents[1] / "app"


def _project(tmp_path, datasets, count, shipped=False, learn=False, name="scratch_assay"):
    src = datasets / name
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((src / "images").iterdir())[:count]:
        shutil.copy(path, images)
    project = Project.create(tmp_path / "project")
    project.settings["prelabel"]["shipped_models"] = shipped
    project.settings["prelabel"]["learn"] = learn
    project.save_settings()
    import_images(project, [images], masks=src / "masks")  # every sample labelled (source "import")
    return project


def _labels(project) -> list[tuple[int, int, str]]:
    """(sample id, label id, blob hash) of every label version: what no round may change."""
    import hashlib

    rows = project.store.conn.execute("SELECT sample_id, id, mask FROM labels ORDER BY id").fetchall()
    return [(r[0], r[1], hashlib.sha256(r[2]).hexdigest()) for r in rows]


# -- the schedule and the decision ------------------------------------------------------------


def test_rounds_fall_due_at_5_10_20_40_labels_and_when_idle_with_enough_new_labels():
    assert not round_due(4, 0, IDLE_S * 10)  # never before 5 labels
    assert round_due(5, 0, 0.0) and round_due(7, 0, 0.0)  # the first milestone passed (a round missed)
    assert not round_due(6, 5, 0.0) and not round_due(9, 5, 0.0)
    assert round_due(10, 5, 0.0) and round_due(20, 10, 0.0) and round_due(40, 20, 0.0)
    assert not round_due(39, 20, 0.0)
    # Idle: at least max(3, 25 % of the last round's labels) new ones.
    assert not round_due(7, 5, IDLE_S)  # 2 new
    assert round_due(8, 5, IDLE_S) and not round_due(8, 5, IDLE_S - 1)
    assert not round_due(24, 20, IDLE_S) and round_due(25, 20, IDLE_S)  # 25 % of 20 = 5
    assert [held_out_count(n) for n in (5, 10, 15, 20, 40, 100)] == [2, 2, 3, 4, 8, 8]


def test_a_new_model_is_installed_only_when_better_on_the_same_labels():
    better = should_install({1: 0.9, 2: 0.92, 3: 0.5}, {1: 0.8, 2: 0.85})  # label 3: no incumbent score
    assert better.install and better.labels == 2
    assert better.candidate_mean == pytest.approx(0.91) and better.incumbent_mean == pytest.approx(0.825)
    assert "91 %" in better.reason and "82 %" in better.reason
    tie = should_install({1: 0.905, 2: 0.905}, {1: 0.9, 2: 0.9})  # within the margin: kept
    assert not tie.install and tie.reason.startswith("the current pre-label stays: the new model matches")
    assert "90.5 %" in tie.reason and "90.0 %" in tie.reason  # a point or less apart: with a decimal
    few = should_install({1: 1.0}, {1: 0.0})
    assert not few.install and "too few" in few.reason
    nan = should_install({1: 0.9, 2: 0.9, 3: 0.9}, {1: float("nan"), 2: 0.5, 3: 0.5})  # a NaN is no evidence
    assert nan.install and nan.labels == 2


def test_the_trainers_progress_lines_are_checked_before_anyone_shows_them():
    from labelassist.training.request import progress_line

    assert progress_line(b'{"stage": "train", "step": 3, "steps": 9, "seconds": 1.5}') == \
        {"stage": "train", "step": 3, "steps": 9}
    assert progress_line("not json") is None and progress_line('{"stage": "rm -rf"}') is None
    assert progress_line('{"stage": "train", "step": "x", "steps": {"a": 1}}') == {"stage": "train"}


# -- consider, install, roll back (real models, no trainer process) ---------------------------


def _candidate(round_, source: Path, worse: bool) -> RoundResult:
    """A round's result made by hand from a real model: the shipped fp32 U-Net, or the same with its
    output bias at -20 (everything background); its held-out DSC measured through the kiosk's path."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    if worse:
        for init in model.graph.initializer:
            if init.name == "net.head.bias":
                init.CopyFrom(numpy_helper.from_array(np.full((1,), -20.0, np.float32), init.name))
    onnx.save(model, str(round_.folder / "candidate.onnx"))
    card = json.loads(source.with_suffix(".json").read_text())
    card.update(name="scratch_assay_tablet_unet", version=f"tablet.{round_.number}")
    (round_.folder / "candidate.json").write_text(json.dumps(card))
    net = models.Model(round_.folder / "candidate.onnx")
    held = {}
    for sample, label_id, mask, _ in round_.held_out:
        prob = net.predict(_image(sample, round_))
        held[label_id] = dice(mask, prob >= net.threshold)
    result = RoundResult(status="ok", reason="trained by hand", variant="fp32", onnx="candidate.onnx",
                         sha256=file_hash(round_.folder / "candidate.onnx"), card="candidate.json",
                         held_out=held, held_out_fp32=held, held_out_int8={}, recipe="fine-tune", steps=0,
                         seconds={}, trained_on=[lid for _, lid, _ in round_.trained_on])
    result.write(round_.folder)
    return result


def _image(sample, round_):
    from labelassist.images import read_image

    request = json.loads((round_.folder / "request.json").read_text())
    path = next(it["path"] for it in request["held_out"] if it["sample_id"] == sample.id)
    return read_image(path)


def test_a_worse_model_is_never_installed_and_roll_back_is_bit_for_bit(tmp_path, datasets, monkeypatch):
    monkeypatch.setenv("LABELASSIST_HOME", str(tmp_path / "home"))  # the round folders
    project = _project(tmp_path, datasets, 10)
    session = Session(project, background=False, train=False)
    try:
        if not session.trainer.available:
            pytest.fail("torch is not installed: the trainer cannot be tested (run make setup)")
        # An imported model that fits these images badly (phase contrast): the pre-label to beat.
        session.import_model(SHIPPED_DIR / "usiigaci_phase_unet.int8.onnx")
        first = history.current_entry(project)
        first_sha, first_card = file_hash(first.onnx), first.onnx.with_suffix(".json").read_bytes()
        assert session.prelabel_choice().method is not None

        round_ = session.trainer.prepare_round()
        held_ids = {s.id for s, _, _, _ in round_.held_out}
        assert len(held_ids) == held_out_count(10) == 2
        assert held_ids.isdisjoint({sid for sid, _, _ in round_.trained_on})
        newest = sorted(project.store.latest_labels(), key=lambda p: -p[1].id)[:2]
        assert held_ids == {s.id for s, _ in newest}  # the newest labels are held out
        labels_before = _labels(project)

        _candidate(round_, SHIPPED_DIR / "scratch_assay_unet.onnx", worse=True)
        outcome = session.trainer.consider(round_)
        assert outcome["status"] == "kept", outcome
        assert outcome["candidate_dsc"] < outcome["incumbent_dsc"]
        assert history.current_entry(project).id == first.id and len(history.model_history(project)) == 1
        assert file_hash(models.installed_model_path(project)) == first_sha

        round_ = session.trainer.prepare_round()
        _candidate(round_, SHIPPED_DIR / "scratch_assay_unet.onnx", worse=False)
        outcome = session.trainer.consider(round_)
        assert outcome["status"] == "installed", outcome
        # The next samples use the new model at once, while auto measures again (not the threshold).
        provisional = session.assistance.current_choice()
        assert provisional.method == "onnx" and "just installed" in provisional.reason
        current = history.current_entry(project)
        assert current.source == "tablet" and current.id != first.id
        card = json.loads(current.onnx.with_suffix(".json").read_text())
        assert set(card["tablet"]["held_out_samples"]).isdisjoint(card["tablet"]["trained_on_samples"])
        assert "matches your newest 2 labels" in current.reason
        # auto now measures on the labels the new model did not train on only.
        inputs = session.assistance.evaluation_inputs(12)
        assert {s.id for s, _, _ in inputs} == set(card["tablet"]["held_out_samples"])
        assert current.trained_on == 8
        assert session.prelabel_choice().method == "onnx"  # the new model is the project's pre-label
        words = session.prelabel_words()
        assert words.startswith("Pre-label learned on this tablet from 8 of your labels: matches your last 2 at "), \
            words

        session.roll_back(first.id)
        assert file_hash(models.installed_model_path(project)) == first_sha
        assert models.installed_model_path(project).with_suffix(".json").read_bytes() == first_card
        session.roll_back(None)
        assert models.project_model(project) is None
        session.roll_back(current.id)
        assert history.current_entry(project).id == current.id
        assert _labels(project) == labels_before  # nothing the rounds did touched a label
        events = [e["action"] for e in project.store.events()]
        assert events.count("training_started") == 2 and events.count("model_rollback") == 3
    finally:
        session.close()
    rounds = [e["details"]["status"] for e in project.store.events("training_round")]
    assert rounds == ["kept", "installed"]
    project.close()


# -- the real trainer process -------------------------------------------------------------------

DRIVER = textwrap.dedent("""
    import json, sys, time
    from labelassist.project import Project
    from labelassist.session import Session

    project = Project.open(sys.argv[1])
    session = Session(project, author="driver", background=True, train=True)
    assert session.trainer.available
    events = []

    def heard(event):  # every progress line, as the Admin screen hears it
        events.append(event)
        print(json.dumps({"event": {k: v for k, v in event.items() if k in ("stage", "at", "round")}}), flush=True)

    session.trainer.listeners.append(heard)
    assert session.trainer.start_round(force=True, budget_s=float(sys.argv[2]), prompt=False)
    print(json.dumps({"pid": session.trainer.pid}), flush=True)
    outcome = session.trainer.wait(timeout=300)
    stages = sorted({e.get("stage") for e in events if e.get("stage")})
    print(json.dumps({"outcome": outcome, "stages": stages, "torch": "torch" in sys.modules,
                      "sklearn": "sklearn" in sys.modules}), flush=True)
    session.close()
    project.close()
""")


def _driver(tmp_path, project, budget_s, env=None):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=str(APP), LABELASSIST_HOME=str(tmp_path / "home"), **(env or {}))
    return subprocess.Popen([sys.executable, str(script), str(project.folder), str(budget_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_a_round_trains_in_its_own_process_and_the_kiosk_never_imports_torch(tmp_path, datasets):
    project = _project(tmp_path, datasets, 8, shipped=True)
    labels_before = _labels(project)
    project.close()
    proc = _driver(tmp_path, project, 10)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    result = lines[-1]
    assert result["torch"] is False  # the kiosk's process: torch only ever in the trainer's
    outcome = result["outcome"]
    assert outcome["status"] in ("installed", "kept"), outcome
    assert {"train", "export", "score"} <= set(result["stages"])
    # The decision is the rule on the recorded numbers: better by the margin, on the same labels.
    assert (outcome["status"] == "installed") == (outcome["candidate_dsc"] >= outcome["incumbent_dsc"] + 0.01)
    assert outcome["held_out"] == 2 and outcome["trained_on"] == 6
    assert outcome["candidate_dsc"] >= 0.8  # fine-tuned from the shipped scratch_assay U-Net
    project = Project.open(project.folder)
    try:
        assert _labels(project) == labels_before
        events = project.store.events("training_round")
        assert events[-1]["details"]["status"] == outcome["status"]
        entry = history.current_entry(project)
        assert (entry is not None and entry.source == "tablet") == (outcome["status"] == "installed")
        if entry is not None:
            models.check_model(entry.onnx)
    finally:
        project.close()


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie (exited, not yet reaped by init) counts as gone.
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL and /proc: Linux")
def test_killing_the_app_during_training_ends_the_trainer_and_keeps_labels_and_model(tmp_path, datasets):
    project = _project(tmp_path, datasets, 8, shipped=False)
    models.install_model(project, SHIPPED_DIR / "usiigaci_phase_unet.int8.onnx")  # not trained on these images
    model_sha = file_hash(models.installed_model_path(project))
    labels_before = _labels(project)
    project.close()
    proc = _driver(tmp_path, project, 60, env={"LABELASSIST_TRAINER_PAUSE_AT": "train"})
    child, paused = None, False
    for line in proc.stdout:  # until the trainer holds in its training stage
        message = json.loads(line)
        child = message.get("pid", child)
        paused = paused or message.get("event", {}).get("stage") == "paused"
        if paused and child is not None:
            break
    assert paused and child is not None, proc.stderr.read()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert _gone(child, 5.0), "the trainer outlived the app by more than 5 s"
    project = Project.open(project.folder)
    try:
        assert _labels(project) == labels_before
        assert file_hash(models.installed_model_path(project)) == model_sha
        assert project.store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        session = Session(project, background=False)  # the next session records the round as failed
        try:
            assert session.trainer.last_outcome["status"] == "failed"
            assert "stopped during training" in session.trainer.last_outcome["reason"]
        finally:
            session.close()
        assert project.store.events("training_round")[-1]["details"]["status"] == "failed"
    finally:
        project.close()



@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL: Linux")
def test_a_trainer_killed_mid_round_is_a_failed_round_and_changes_nothing(tmp_path, datasets, monkeypatch):
    monkeypatch.setenv("LABELASSIST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LABELASSIST_TRAINER_PAUSE_AT", "export")  # killed after training, before the model
    project = _project(tmp_path, datasets, 6)
    models.install_model(project, SHIPPED_DIR / "usiigaci_phase_unet.int8.onnx")  # not trained on these images
    model_sha = file_hash(models.installed_model_path(project))
    labels_before = _labels(project)
    session = Session(project, background=False, train=True)
    try:
        heard = []
        session.trainer.listeners.append(heard.append)
        assert session.trainer.start_round(force=True, budget_s=12, prompt=False)
        deadline = time.monotonic() + 180
        while not any(e.get("stage") == "paused" for e in heard) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any(e.get("stage") == "paused" for e in heard), heard
        os.kill(session.trainer.pid, signal.SIGKILL)
        outcome = session.trainer.wait(timeout=60)
        assert outcome["status"] == "failed" and "without a result" in outcome["reason"], outcome
        assert session.trainer.state == "idle" and session.trainer.failures == 1
        # The project's model keeps working, untouched; no label changed.
        assert file_hash(models.installed_model_path(project)) == model_sha
        assert session.model() is not None
        assert _labels(project) == labels_before
    finally:
        session.close()
    assert project.store.events("training_round")[-1]["details"]["status"] == "failed"
    project.close()


def test_a_data_home_that_cannot_be_written_never_fails_a_save(tmp_path, datasets, monkeypatch):
    """The round's folder cannot be made (a file where the app's data folder should be): the label is
    saved, the round is recorded as failed and the schedule moves on (not retried at every save)."""
    (tmp_path / "home").write_text("not a folder")
    monkeypatch.setenv("LABELASSIST_HOME", str(tmp_path / "home"))
    src = datasets / "scratch_assay"
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((src / "images").iterdir())[:7]:
        shutil.copy(path, images)
    project = Project.create(tmp_path / "project")
    project.settings["prelabel"]["learn"] = False
    project.save_settings()
    import_images(project, [images])
    from labelassist.images import read_mask

    session = Session(project, background=False, train=True)
    try:
        for _ in range(6):  # the 5th save makes a round due
            opened = session.next()
            truth = read_mask(src / "masks" / opened.sample.name)
            session.save(opened.sample.id, truth)
        assert project.store.counts()["label_versions"] == 6
        outcome = session.trainer.last_outcome
        assert outcome["status"] == "failed" and "could not be written" in outcome["reason"], outcome
        assert session.trainer.failures == 1 and session.trainer.state == "idle"
    finally:
        session.close()
    assert [e["details"]["status"] for e in project.store.events("training_round")] == ["failed"]
    project.close()


def test_a_model_changed_during_a_round_or_a_card_that_lies_is_never_installed(tmp_path, datasets, monkeypatch):
    monkeypatch.setenv("LABELASSIST_HOME", str(tmp_path / "home"))
    project = _project(tmp_path, datasets, 10)
    session = Session(project, background=False, train=False)
    try:
        session.import_model(SHIPPED_DIR / "usiigaci_phase_unet.int8.onnx")
        first = history.current_entry(project)
        # The user switches the model off while a round trains: the round's model is not installed.
        round_ = session.trainer.prepare_round(measure=True)
        _candidate(round_, SHIPPED_DIR / "scratch_assay_unet.onnx", worse=False)
        session.roll_back(None)
        outcome = session.trainer.consider(round_)
        assert outcome["status"] == "stopped" and "changed the model" in outcome["reason"], outcome
        assert history.current_entry(project) is None
        session.roll_back(first.id)
        # A card the kiosk's own import check refuses (threshold 2.0) is not installed either.
        round_ = session.trainer.prepare_round(measure=True)
        _candidate(round_, SHIPPED_DIR / "scratch_assay_unet.onnx", worse=False)
        card = json.loads((round_.folder / "candidate.json").read_text())
        card["threshold"] = 2.0
        (round_.folder / "candidate.json").write_text(json.dumps(card))
        outcome = session.trainer.consider(round_)
        assert outcome["status"] == "failed" and "threshold" in outcome["reason"], outcome
        assert history.current_entry(project).id == first.id
        # The model file replaced after its result was written (SHA-256 no longer the result's).
        round_ = session.trainer.prepare_round(measure=True)
        _candidate(round_, SHIPPED_DIR / "scratch_assay_unet.onnx", worse=False)
        result = json.loads((round_.folder / "result.json").read_text())
        shutil.copy(SHIPPED_DIR / "usiigaci_phase_unet.onnx", round_.folder / "candidate.onnx")
        assert file_hash(round_.folder / "candidate.onnx") != result["sha256"]
        outcome = session.trainer.consider(round_)
        assert outcome["status"] == "failed", outcome
        assert history.current_entry(project).id == first.id
        assert [e.id for e in history.model_history(project)] == [first.id]
    finally:
        session.close()
    project.close()
