"""The training-job round trip, for real: export -> train (CPU, 2 epochs, 8 images) -> import -> pre-label.

Needs the ``train`` extra (torch, onnx). Without it these tests FAIL (they do
not skip): the issue requires the training code to be tested.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile

import numpy as np
import pytest

from labelassist import models
from labelassist.fileio import file_hash
from labelassist.images import read_image
from labelassist.importer import import_images
from labelassist.project import Project
from labelassist.training import job as jobs
from labelassist.workflow.prelabel import PrelabelContext, onnx as onnx_prelabel


def _require_train_extra():
    missing = []
    for name in ("torch", "onnx"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        pytest.fail(f"the training tests need the 'train' extra ({', '.join(missing)} missing): "
                    "pip install -e '.[train]' (torch==2.13.0 CPU build + onnx)", pytrace=False)


@pytest.fixture
def labelled_project(tmp_path, datasets):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for i in range(0, 60, 8)[:8]:
        name = f"{i:03d}.png"
        shutil.copy(datasets / "scratch_assay" / "images" / name, src / "images" / name)
        shutil.copy(datasets / "scratch_assay" / "masks" / name, src / "masks" / name)
    project = Project.create(tmp_path / "project", name="scratch test")
    import_images(project, [src / "images"], masks=src / "masks")
    yield project
    project.close()


def test_export_job_contents(labelled_project, tmp_path):
    summary = jobs.export_job(labelled_project, tmp_path / "job.zip", seed=3)
    assert len(summary.train) == 6 and len(summary.validation) == 2 and not summary.skipped
    with zipfile.ZipFile(summary.path) as zf:
        names = set(zf.namelist())
        job = json.loads(zf.read("job.json"))
        split = json.loads(zf.read("split.json"))
    assert {"train.py", "job.json", "split.json", "README.md", "requirements.txt"} <= names
    assert len([n for n in names if n.startswith("images/")]) == 8
    assert len([n for n in names if n.startswith("masks/")]) == 8
    assert job["format"] == jobs.JOB_FORMAT and job["preprocess"][0]["step"] == "percentile_normalise"
    assert sorted(split["train"] + split["validation"]) == [it["id"] for it in job["items"]]
    # the same seed gives the same split
    again = jobs.export_job(labelled_project, tmp_path / "job2.zip", seed=3)
    assert again.validation == summary.validation


def test_export_job_needs_labels(tmp_path):
    with Project.create(tmp_path / "empty") as project:
        with pytest.raises(Exception, match="at least 2 labelled images"):
            jobs.export_job(project, tmp_path / "job.zip")
    assert not (tmp_path / "job.zip").exists()


@pytest.mark.slow
def test_training_job_round_trip_on_cpu(labelled_project, tmp_path, datasets):
    _require_train_extra()
    summary = jobs.export_job(labelled_project, tmp_path / "job.zip")
    start = time.perf_counter()
    onnx_path = jobs.run_job(summary.path, tmp_path / "result", "--epochs", "2", "--device", "cpu",
                             "--patch", "128", "--batch", "4", "--base", "8", "--patches-per-image", "2",
                             "--threads", "2", "--int8", timeout=600)
    seconds = time.perf_counter() - start
    card = json.loads(onnx_path.with_suffix(".json").read_text())
    assert card["training"]["epochs_run"] == 2 and card["training"]["device"] == "cpu"
    assert card["metrics"]["validation"]["images"] == 2
    assert (tmp_path / "result" / "model.int8.onnx").is_file()
    print(f"training job: 2 epochs on 6+2 images in {seconds:.1f} s")

    report = models.install_model(labelled_project, onnx_path)
    assert report.seconds > 0
    model = models.project_model(labelled_project)
    assert model is not None and model.card.name == card["name"]
    image = read_image(datasets / "scratch_assay" / "images" / "001.png")
    result = onnx_prelabel(image, PrelabelContext(model=model))
    assert result.mask.shape == image.shape and np.isfinite(result.probability).all()
    # the int8 variant imports too (replacing the fp32 one; the previous model is kept)
    models.install_model(labelled_project, tmp_path / "result" / "model.int8.onnx")
    previous, current = models.model_history(labelled_project)[-2:]
    assert previous.onnx.is_file() and previous.sha256 == file_hash(onnx_path)  # the previous model is kept
    assert models.current_entry(labelled_project) == current and current.onnx.is_file()
    assert models.project_model(labelled_project).card.raw["precision"] == "int8"


@pytest.mark.slow
def test_training_job_under_torchrun_two_processes(labelled_project, tmp_path):
    """The several-GPU path (torchrun + DistributedDataParallel) for real, with 2 CPU processes (gloo).

    The same code ran under ``torchrun --nproc_per_node 1`` with NCCL on an H100 (see models/README.md).
    """
    _require_train_extra()
    import subprocess
    import sys

    summary = jobs.export_job(labelled_project, tmp_path / "job.zip")
    job_dir = jobs.unpack_job(summary.path, tmp_path / "job")
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(job_dir / "train.py"), str(job_dir), "--out", str(out), "--epochs", "1", "--device", "cpu",
           "--patch", "64", "--batch", "2", "--base", "4", "--patches-per-image", "2", "--threads", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["world_size"] == 2
    assert card["training"]["distributed_data_parallel"] is True
    # rank 0 alone writes the model; it imports like any other
    report = models.install_model(labelled_project, out / "model.onnx")
    assert report.seconds > 0 and models.project_model(labelled_project).card.name == card["name"]


def test_training_code_imports_without_labelassist(tmp_path):
    """train.py inside a job must not import the kiosk package."""
    source = jobs.CORE.read_text()
    assert "from labelassist" not in source and "import labelassist" not in source
