"""The learning loop on the command line, on real data: ``learn``, ``prelabel --method auto`` and
``simulate --from-scratch`` (issue 14, item 6). Small projects and short walks keep it to a few minutes."""

from __future__ import annotations

import json
import shutil

import pytest

from labelassist.cli import main
from labelassist.models import find_box_segmenter
from labelassist.project import Project

IMAGES = [f"{i:03d}.png" for i in range(8)]
LABELLED = IMAGES[:5]


def run(capsys, *argv):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELASSIST_HOME", str(tmp_path / "home"))


@pytest.fixture
def small_project(tmp_path, datasets, capsys):
    """8 scratch_assay frames, the first 5 with their true masks imported as labels."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in IMAGES:
        shutil.copy(datasets / "scratch_assay" / "images" / name, images / name)
    for name in LABELLED:
        shutil.copy(datasets / "scratch_assay" / "masks" / name, masks / name)
    project = tmp_path / "project"
    code, out, err = run(capsys, "init", project, "--images", images, "--masks", masks)
    assert code == 0, err
    return project


def _without_shipped_models(project) -> None:
    with Project.open(project) as p:
        settings = p.settings
        settings["prelabel"]["shipped_models"] = False
        p.save_settings(settings)


def _label_versions(project) -> int:
    with Project.open(project) as p:
        return p.store.counts()["label_versions"]


def test_learn_prints_the_learner_every_candidate_and_the_choice(capsys, small_project, tmp_path, monkeypatch):
    monkeypatch.setenv("LABELASSIST_HOME", str(tmp_path / "home"))  # the U-Net round's folder
    code, out, err = run(capsys, "learn", small_project, "--budget", "12")
    assert code == 0, err
    assert "instant learner: learned from your newest 5 labels" in out
    assert "held-out DSC" in out and "5 held-out scores new" in out
    lines = out.splitlines()
    table = {line.split()[0] for line in lines if line.split() and line.split()[0] in
             {"learned", "otsu", "previous", "shipped:scratch_assay"}}
    assert {"learned", "otsu", "previous", "shipped:scratch_assay"} <= table
    assert any(line.startswith("the kiosk will use ") for line in lines)
    # A U-Net round, as the kiosk runs it: 5 labels, the newest 2 held out to compare on.
    unet = [line for line in lines if line.startswith("U-Net: ")]
    assert len(unet) == 1 and "(trained on 3 labels, " in unet[0], out
    assert unet[0].startswith(("U-Net: a new model is installed (", "U-Net: the current pre-label stays: ")), out
    # ...which also adapts tap-to-segment's model and says what it decided (issue 15)
    if find_box_segmenter() is not None:
        taps = [line for line in lines if line.startswith("tap-to-segment: ")]
        assert len(taps) == 1 and taps[0].startswith(("tap-to-segment: installed (model 1): tap-to-segment learned",
                                                      "tap-to-segment: tap-to-segment kept as it was: boxes ")), out
        assert " on " in taps[0] and " objects of your newest labels" in taps[0], out
    assert _label_versions(small_project) == 5  # the labels are only read

    # Again: the held-out record was kept (as a session keeps it), nothing is learned twice.
    code, out, err = run(capsys, "learn", small_project, "--json", "--no-unet")
    assert code == 0, err
    d = json.loads(out)
    assert d["learner"]["enabled"] and d["learner"]["learned_from"] == 5
    assert d["learner"]["new_scores"] == 0 and len(d["learner"]["held_out"]) == 5
    methods = {c["method"]: c for c in d["candidates"]}
    assert methods["learned"]["n"] == 5
    assert d["choice"]["method"] in methods
    assert d["unet"] == {"status": "skipped", "reason": "left out (--no-unet)"}


def test_prelabel_auto_names_the_sessions_choice(capsys, small_project):
    _without_shipped_models(small_project)  # the learner against otsu and the previous frame
    code, out, err = run(capsys, "prelabel", small_project, "--method", "auto", "--samples", "005.png", "006.png")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("auto: using learned (DSC "), lines[0]
    assert "(held out)" in lines[0]
    assert lines[1].startswith("005.png: ") and "Learned from 5 of your labels." in lines[1]
    assert lines[2].startswith("006.png: ")


def test_simulate_from_scratch_reports_each_label(capsys, tmp_path, datasets, small_project):
    fresh = tmp_path / "fresh"  # the same 8 frames, no label yet
    code, _, err = run(capsys, "init", fresh, "--images", tmp_path / "images")
    assert code == 0, err
    code, out, err = run(capsys, "simulate", fresh, "--ground-truth", datasets / "scratch_assay" / "masks",
                         "--from-scratch", "--limit", "4")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["label", "sample", "pre-label", "DSC", "effort", "wait", "s"]
    rows = [line.split() for line in lines[1:5]]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    used = [r[2] for r in rows]
    # From scratch: no shipped and no imported model is ever used.
    assert set(used) <= {"otsu", "previous", "learned", "none"}, used
    for r in rows:
        assert 0.0 <= float(r[3]) <= 1.0 and float(r[5]) >= 0.0
    assert "mean correction effort over labels 2-4: " in out
    assert "mean correction effort over the first 4 labels: " in out
    assert "no U-Net round was due in this walk (the kiosk trains after 5, 10, 20, 40 ... labels)" in out
    assert _label_versions(fresh) == 0  # a copy was labelled, not the project
