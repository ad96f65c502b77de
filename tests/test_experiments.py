"""The evaluation commands of issue 7 (parts 2 and 3) on small slices of the real data.

``evaluate_selector`` and ``simulate`` must produce the JSON fields docs/selector.md and
docs/simulate.md document; the correction effort of a perfect pre-label is 0 and of an
empty one is 1. Tiny settings (a few images, 1 epoch, scale 0.125) keep this under a minute
on a 2-core CPU. Needs the 'train' extra (torch, onnx), like tests/test_training.py (fails without it).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from labelassist.workflow.metrics import correction_effort

from labelassist.importer import import_images
from labelassist.project import Project
from labelassist.research.plots import plot_selector, plot_simulation
from labelassist.research.selector_experiment import evaluate_selector
from labelassist.research.simulated_annotator import simulate


@pytest.fixture
def data_root(datasets):
    return datasets


def test_correction_effort_perfect_and_empty():
    truth = np.zeros((20, 30), bool)
    truth[5:15, 4:20] = True
    assert correction_effort(truth.copy(), truth) == 0.0
    assert correction_effort(np.zeros_like(truth), truth) == 1.0


def test_evaluate_selector_json_fields(tmp_path, data_root):
    pairs = [(data_root / s / "images", data_root / s / "masks") for s in ("scratch_assay", "isbi2012_membrane")]
    result = evaluate_selector(pairs, budget=4, strategies=("sequential", "random", "uncertainty"), seeds=2,
                               epochs=1, scale=0.125, limit=6, uncertainty_start=2, uncertainty_batch=2)
    d = json.loads(json.dumps(result.to_dict()))  # JSON-serialisable as the CLI writes it
    assert d["experiment"] == "selector"
    assert {"settings", "pool", "strategies", "baseline", "seconds"} <= set(d)
    assert d["settings"]["budget"] == 4 and d["settings"]["seeds"] == 2
    assert d["pool"]["samples"] == 12 and d["pool"]["sets"] == {"scratch_assay": 6, "isbi2012_membrane": 6}
    for split in d["pool"]["splits"]:
        assert split["train"] + split["test"] == 12
    for name in ("sequential", "random", "uncertainty"):
        r = d["strategies"][name]
        assert {"labels", "dsc", "dsc_per_set", "mean", "std", "picked", "picked_per_set"} <= set(r)
        assert set(r["dsc_per_set"][0]) == {"scratch_assay", "isbi2012_membrane"}
        assert r["labels"] == 4 and len(r["dsc"]) == 2 and all(0.0 <= v <= 1.0 for v in r["dsc"])
        assert math.isclose(r["mean"], float(np.mean(r["dsc"])), abs_tol=1e-3)
        for seed, picked in enumerate(r["picked"]):  # never a test sample
            assert not set(picked) & set(d["pool"]["splits"][seed]["test_names"])
    assert len(d["strategies"]["uncertainty"]["rounds"][0]) == 1  # 2 random, then one round of 2
    assert {"labels", "dsc", "mean", "std"} <= set(d["baseline"]) and d["baseline"]["labels"] > 4
    png = plot_selector(result, tmp_path / "selector.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_json_fields(tmp_path, data_root):
    project = Project.create(tmp_path / "p")
    files = sorted((data_root / "scratch_assay" / "images").glob("*.png"))[:4]
    import_images(project, files)
    project.close()
    result = simulate(tmp_path / "p", data_root / "scratch_assay" / "masks", retrain_every=2, epochs=1,
                      scale=0.125, limit=3)
    d = json.loads(json.dumps(result.to_dict()))
    assert d["experiment"] == "simulate"
    assert {"settings", "samples", "retrains", "blocks", "effort_mean", "effort_total", "warnings",
            "seconds"} <= set(d)
    assert [s["index"] for s in d["samples"]] == [1, 2, 3]
    for s in d["samples"]:
        assert {"name", "prelabel", "dsc", "effort", "inspection_score", "warning", "suggestions",
                "accepted_suggestions", "model"} <= set(s)
        if s["prelabel"] == "none":
            assert s["effort"] == 1.0 and s["dsc"] == 0.0  # an empty start: labelling from scratch
    assert [r["after_labels"] for r in d["retrains"]] == [2]
    assert d["samples"][2]["model"] == "1.0.2"  # the retrained model is installed before sample 3
    # The project itself is untouched (the walk ran on a copy).
    with Project.open(tmp_path / "p") as p:
        assert not p.store.labelled_ids()
    png = plot_simulation(result, tmp_path / "simulate.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
