"""The Session: the whole workflow without a window, on real data."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from labelassist.cli import main
from labelassist.errors import LabelAssistError, PluginError
from labelassist.images import read_mask
from labelassist.importer import import_images
from labelassist.project import Project
from labelassist.session import Session
from labelassist.workflow.metrics import dice
from labelassist.workflow.registry import REGISTRY


def _project(tmp_path, datasets, name, count=None, masks=False):
    src = datasets / name
    images = tmp_path / f"{name}-images"
    images.mkdir()
    for path in sorted((src / "images").iterdir())[:count]:
        shutil.copy(path, images)
    project = Project.create(tmp_path / f"{name}-project")
    import_images(project, [images], masks=src / "masks" if masks else None)
    return project


def _truth(datasets, name, sample):
    return read_mask(datasets / name / "masks" / sample.name.replace(".tif", ".png"))


@pytest.fixture
def scratch(tmp_path, datasets):
    project = _project(tmp_path, datasets, "scratch_assay", count=12)
    project.settings["priors"]["segments"] = 2
    project.save_settings()
    yield project
    project.close()


def test_next_gives_a_prepared_sample_and_the_cache_is_warm_for_the_following(scratch, datasets):
    with Session(scratch, lookahead=2) as session:
        first = session.next()
        assert first.display.dtype == np.uint8 and first.display.shape == first.image.shape[:2]
        assert first.prelabel is not None and first.prelabel.method == "otsu"  # nothing measured yet
        upcoming = [r.sample.id for r in session.ranking(top=3)][1:3]
        session.save(first.sample.id, _truth(datasets, "scratch_assay", first.sample), strokes=4)
        session.wait_prepared()
        following = session._next_ids(1)[0]
        assert session.prepared(following), "the worker should have prepared the next sample"
        second = session.next()
        assert second.sample.id == following and second.sample.id != first.sample.id
        assert upcoming  # the ranking had more samples to prepare
        saved = scratch.store.latest_label(first.sample.id)
        assert saved.strokes == 4 and saved.source == "manual" and saved.seconds >= 0
        assert [e["assistance"] for e in scratch.store.events("save_label")] == ["prelabel:otsu"]


def test_samples_prepared_ahead_are_the_ones_opened_next(tmp_path, datasets):
    """With the default weights (sequence_aware re-ranks after every label) each next() is a cache hit."""
    project = Project.create(tmp_path / "pool")
    for name in ("isbi2012_membrane", "t98g_timelapse", "scratch_assay"):
        folder = tmp_path / name
        folder.mkdir()
        for path in sorted((datasets / name / "images").iterdir())[:6]:
            shutil.copy(path, folder)
        import_images(project, [folder])
    project.settings["prelabel"]["method"] = "otsu"  # no re-measurement between the steps
    with Session(project, lookahead=2) as session:
        assisted = session.next()
        opened = [assisted.sample.id]
        for _ in range(6):
            session.save(assisted.sample.id, np.zeros(assisted.image.shape[:2], bool))
            session.wait_prepared()
            ready = {s.id for s in session.store.samples() if session.prepared(s.id)}
            assisted = session.next()
            assert assisted.sample.id in ready, f"opened {assisted.sample.id}, prepared {sorted(ready)}"
            opened.append(assisted.sample.id)
        assert len(set(opened)) == 7
    project.close()


def test_sequence_aware_selection_draws_from_every_set_before_repeating(tmp_path, datasets):
    project = Project.create(tmp_path / "pool")
    sources = {}
    for name in ("isbi2012_membrane", "t98g_timelapse", "scratch_assay"):
        folder = tmp_path / name
        folder.mkdir()
        for path in sorted((datasets / name / "images").iterdir())[:10]:
            shutil.copy(path, folder)
        report = import_images(project, [folder])
        sources.update({sid: name for sid in report.sample_ids})
    project.settings["selector"]["weights"] = {"sequence_aware": 1.0, "cherry_pick": 0.0}
    with Session(project, background=False) as session:
        picked = []
        for _ in range(3):
            assisted = session.next()
            picked.append(sources[assisted.sample.id])
            session.save(assisted.sample.id, np.zeros(assisted.image.shape[:2], bool))
        assert sorted(picked) == sorted(set(sources.values())), picked
    project.close()


def test_prelabel_choice_follows_the_measured_best_and_switches_off(tmp_path, datasets):
    project = _project(tmp_path, datasets, "isbi2012_membrane", count=8, masks=True)
    with Session(project, background=False) as session:
        choice = session.prelabel_choice()
        # Every shipped model is a candidate for every project: the scratch-assay U-Net, trained on
        # another kind of image, still fits EM membranes best (measured 0.86 on these 8, previous 0.79).
        assert choice.method == "shipped:scratch_assay", choice.reason
        ranking = [s.method for s in choice.evaluation.ranking()]
        assert set(ranking) == {"shipped:scratch_assay", "shipped:usiigaci_phase", "previous", "otsu"}
        assert ranking.index("previous") < ranking.index("otsu")
        # Without the shipped models: consecutive EM slices, the previous slice's label beats Otsu
        # (measured 0.79 vs 0.42 on all 30).
        project.settings["prelabel"]["shipped_models"] = False
        session._choice = None
        choice = session.prelabel_choice()
        assert choice.method == "previous", choice.reason
        assert [s.method for s in choice.evaluation.ranking()] == ["previous", "otsu"]
        project.settings["prelabel"]["min_dsc"] = 0.95
        session._choice = None
        off = session.prelabel_choice()
        assert off.method is None and "below 0.95" in off.reason
    project.close()


def test_submit_flags_a_wrong_segment_count_and_suggests_post_processing(scratch, datasets):
    with Session(scratch, background=False) as session:
        assisted = session.next()
        truth = _truth(datasets, "scratch_assay", assisted.sample)
        ok = session.submit(assisted.sample.id, truth)
        assert ok.report is not None
        cut = truth.copy()
        rows, cols = np.nonzero(truth)
        cut[:, int(np.median(cols))] = False  # split the segment the median column crosses
        holed = cut.copy()
        y, x = int(np.median(rows)), int(np.median(cols)) + 15
        holed[y - 4:y + 4, x - 4:x + 4] = False
        flagged = session.submit(assisted.sample.id, holed)
        assert flagged.warning
        assert any(c.name == "segment_count" and "expected 2" in c.message for c in flagged.report.failed)
        steps = {s.step: s for s in flagged.suggestions}
        assert "fill_holes" in steps
        assert steps["fill_holes"].change.added >= 64
        assert not np.array_equal(steps["fill_holes"].mask, holed)


def test_stroke_journal_survives_a_restart_and_is_cleared_by_saving(tmp_path, datasets):
    project = _project(tmp_path, datasets, "scratch_assay", count=3)
    with Session(project, background=False) as session:
        assisted = session.next()
        sid = assisted.sample.id
        mask = assisted.start_mask
        flat = np.flatnonzero(mask)
        session.record_edit(sid, "prelabel", flat, np.ones(flat.size, bool))
        stroke = np.ravel_multi_index((np.full(40, 100), np.arange(200, 240)), mask.shape)
        session.record_edit(sid, "stroke", stroke, np.ones(40, bool))
        expected = mask.copy()
        expected.ravel()[stroke] = True
        session.remember(sample_id=sid, zoom=2.5)
    project.close()
    # A new process: the same project opened again recovers the edits and the screen state.
    with Project.open(project.folder) as project, Session(project, background=False) as session:
        assert session.unsaved_samples() == [sid]
        assert session.resume_state() == {"sample_id": sid, "zoom": 2.5}
        reopened = session.open(sid)
        assert np.array_equal(reopened.start_mask, expected)
        session.save(sid, reopened.start_mask)
        assert session.unsaved_samples() == []
        assert np.array_equal(project.store.latest_label(sid).mask, expected)


def test_changing_the_pipeline_after_labelling_needs_confirmation(scratch, datasets):
    with Session(scratch, background=False) as session:
        assisted = session.next()
        session.set_pipeline([{"step": "clahe", "clip_limit": 2.0}])  # no labels yet: fine
        session.save(assisted.sample.id, _truth(datasets, "scratch_assay", assisted.sample))
        with pytest.raises(LabelAssistError, match="confirm"):
            session.set_pipeline([{"step": "gamma", "gamma": 0.7}])
        assert scratch.settings["preprocess"]["pipeline"] == [{"step": "clahe", "clip_limit": 2.0}]
        session.set_pipeline([{"step": "gamma", "gamma": 0.7}], confirm=True)
        events = scratch.store.events("pipeline")
        assert [e["details"]["confirmed"] for e in events] == [False, True]
        with pytest.raises(PluginError, match="no preprocess step called 'sharpen'"):
            session.set_pipeline([{"step": "sharpen"}], confirm=True)


def test_example_plugin_is_found_and_used_and_a_broken_one_is_skipped(tmp_path, datasets):
    project = _project(tmp_path, datasets, "scratch_assay", count=4, masks=True)
    plugins = project.plugins_dir
    plugins.mkdir()
    example = resources.files("labelassist") / "examples" / "adaptive_threshold.py"
    (plugins / "adaptive_threshold.py").write_text(example.read_text())
    (plugins / "broken.py").write_text("def oops(:\n    pass\n")
    (plugins / "raises.py").write_text("raise RuntimeError('missing licence key')\n")
    with Session(project, background=False) as session:
        assert session.plugin_errors["broken.py"].startswith("syntax error on line 1")
        assert session.plugin_errors["raises.py"] == "RuntimeError: missing licence key"
        assert session.assistance.registry.get("prelabel", "adaptive_threshold").source == \
            "plugin:adaptive_threshold.py"
        evaluation = session.evaluate_prelabels(methods=["otsu", "adaptive_threshold"])
        assert {s.method for s in evaluation.ranking()} == {"otsu", "adaptive_threshold"}
        result = session.prelabel(project.store.samples()[0].id, "adaptive_threshold")
        assert result.mask.dtype == bool and result.mask.any()
    project.close()


def test_bad_input_gives_clear_errors(scratch, tmp_path):
    with Session(scratch, background=False) as session:
        scratch.settings["selector"]["weights"] = {"random": 0.0, "sequential": 0.0}
        with pytest.raises(PluginError, match="weights are zero"):
            session.next()
        scratch.settings["selector"]["weights"] = {"random": 1.0}
        blank = np.zeros((64, 64), np.uint16)
        with pytest.raises(PluginError, match="blank"):
            REGISTRY.get("prelabel", "otsu")(blank, None)
        scratch.settings["prelabel"]["method"] = "magic"
        with pytest.raises(PluginError, match="no prelabel step called 'magic'"):
            session.next()


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_select_evaluate_inspect(capsys, tmp_path, datasets, monkeypatch):
    monkeypatch.setenv("LABELASSIST_HOME", str(tmp_path / "home"))
    src = datasets / "scratch_assay"
    assert _run(capsys, "init", tmp_path / "p", "--images", src / "images", "--masks", src / "masks")[0] == 0
    code, out, err = _run(capsys, "select", tmp_path / "p", "--top", "3", "--json")
    assert code == 0 and json.loads(out) == []  # every sample is labelled
    settings = tmp_path / "p" / "project.toml"
    settings.write_text(settings.read_text().replace("# segments = (not set)", "segments = 2"))
    code, out, err = _run(capsys, "inspect", tmp_path / "p", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["labels"] == 60
    assert result["warnings"] == 1  # 020.png has a real third segment
    [warned] = [r for r in result["results"] if r["warning"]]
    assert warned["name"] == "020.png" and "3 segments, expected 2" in warned["failed"][0]["message"]
    code, out, err = _run(capsys, "evaluate", "prelabel", "--images", datasets / "isbi2012_membrane" / "images",
                          "--masks", datasets / "isbi2012_membrane" / "masks", "--json")
    assert code == 0, err
    evaluation = json.loads(out)
    assert evaluation["best"] == "previous"
    assert [s["method"] for s in evaluation["summaries"]] == ["previous", "otsu"]
    assert {"dice_mean", "dice_median", "dice_q1", "dice_q3", "effort_mean", "ms_mean", "n"} <= set(
        evaluation["summaries"][0])
    code, out, err = _run(capsys, "evaluate", "prelabel", tmp_path / "p", "--images", "x")
    assert code == 1 and "either PROJECT or --images" in err


def test_states_warnings_and_settings_updates(scratch, datasets):
    with Session(scratch, background=False) as session:
        first = session.next()
        truth = _truth(datasets, "scratch_assay", first.sample)
        erased = truth.copy()
        rows, cols = np.nonzero(truth)
        erased[:, :int(np.median(cols))] = False  # one of the two segments is gone
        submission = session.submit(first.sample.id, erased)
        assert submission.warning
        warned_id = session.save(first.sample.id, erased, report=submission.report)
        assert session.current.label.id == warned_id  # further edits start from the saved version
        second = session.next()
        ok = session.submit(second.sample.id, _truth(datasets, "scratch_assay", second.sample))
        session.save(second.sample.id, _truth(datasets, "scratch_assay", second.sample), report=ok.report)
        third = session.ranking(top=2)
        session.set_flag(third[0].sample.id, True)
        session.set_flag(third[1].sample.id, False)
        states = session.sample_states()
        assert states[first.sample.id] == "warning" and states[second.sample.id] == "labelled"
        assert states[third[0].sample.id] == "relevant" and states[third[1].sample.id] == "not_now"
        assert list(states.values()).count("unlabelled") == 8
        label = scratch.store.label(warned_id)
        assert label.warned and label.score == pytest.approx(submission.report.score)
        [event] = scratch.store.events("save_anyway")
        assert "1 segment, expected 2" in event["details"]["failed"][0]

        def typo(settings):
            settings["inspection"]["gamma0"] = 3.0

        with pytest.raises(LabelAssistError, match="gamma0 must be between 0 and 1"):
            session.update_settings(typo)
        assert scratch.settings["inspection"]["gamma0"] == 0.75
        session.update_settings(lambda s: s["selector"]["weights"].update(random=2.0))
        assert Project.open(scratch.folder).settings["selector"]["weights"]["random"] == 2.0


def test_an_installed_model_pre_labels_informs_inspection_and_the_uncertainty_selector(tmp_path, datasets, capsys,
                                                                                      monkeypatch):
    monkeypatch.setenv("LABELASSIST_HOME", str(tmp_path / "home"))
    project = _project(tmp_path, datasets, "scratch_assay", count=10)
    for k, sample in enumerate(project.store.samples()[:3]):  # three labelled frames to measure on
        project.store.save_label(sample.id, _truth(datasets, "scratch_assay", sample), source="import")
    folder = project.folder
    project.close()
    shipped = Path(__file__).resolve().parents[1] / "models" / "scratch_assay_unet.int8.onnx"
    code, out, err = _run(capsys, "model", "import", folder, shipped)
    assert code == 0, err
    assert "per 512x512 input" in out
    with Project.open(folder) as project:
        project.settings["selector"]["weights"] = {"uncertainty": 1.0}
        with Session(project, background=False) as session:
            choice = session.prelabel_choice()
            assert choice.method == "onnx", choice.reason  # the U-Net beats otsu and previous here
            assert session.update_uncertainty() == 7
            ranked = session.ranking(top=7)
            assert [r.scores["uncertainty"] for r in ranked] == sorted(
                [r.scores["uncertainty"] for r in ranked], reverse=True)
            assisted = session.next()
            assert assisted.sample.id == ranked[0].sample.id  # the sample the model is least sure of
            assert assisted.prelabel.method == "onnx" and assisted.prediction is not None
            truth = _truth(datasets, "scratch_assay", assisted.sample)
            # The least certain frame is also one of the model's worst (003.png: DSC 0.86, most frames 0.98).
            assert dice(assisted.prelabel.mask, truth) > 0.85
            wrong = np.zeros_like(truth)
            wrong[:, : truth.shape[1] // 3] = True  # one made-up segment
            report = session.submit(assisted.sample.id, wrong).report
            assert any(c.name == "model_disagreement" for c in report.failed)


def test_model_import_refuses_a_model_without_a_card_and_a_file_that_is_not_onnx(tmp_path, datasets, capsys,
                                                                                  monkeypatch):
    monkeypatch.setenv("LABELASSIST_HOME", str(tmp_path / "home"))
    project = _project(tmp_path, datasets, "scratch_assay", count=2)
    folder = project.folder
    project.close()
    bare = tmp_path / "bare.onnx"
    shutil.copy(Path(__file__).resolve().parents[1] / "models" / "scratch_assay_unet.onnx", bare)
    code, out, err = _run(capsys, "model", "import", folder, bare)
    assert code == 1 and "has no model card" in err and '"name"' in out  # the suggested card is shown
    code, out, err = _run(capsys, "model", "import", folder, bare, "--accept-suggested-card")
    assert code == 0, err
    code, _, err = _run(capsys, "model", "import", folder, datasets / "scratch_assay" / "images" / "000.png")
    assert code == 1 and "000.png" in err
