"""The trainer child of a tablet training round (issue 14), for real: scratch_assay images, the
real ``labelassist _train-round`` subprocess, small time budgets.

Needs the ``train`` extra (torch, onnx); without it these tests FAIL (they do not skip), as in
``test_training.py``. The two real rounds (from scratch, and a fine-tune of the shipped
scratch_assay U-Net) run side by side in one module fixture to keep the file short.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from labelassist.errors import LabelAssistError
from labelassist.fileio import file_hash
from labelassist.images import read_image
from labelassist.models import SHIPPED_DIR, read_card
from labelassist.training.request import (
    RoundItem,
    RoundRequest,
    RoundResult,
    round_folder,
    trainer_available,
    trainer_command,
)
from labelassist.training.tablet_round import INT8_TOLERANCE, RESERVE_S, plan_steps

STAGES = ("read", "train", "export", "int8", "score", "result")
N_TRAIN, N_HELD = 6, 2
SCRATCH_UNET = SHIPPED_DIR / "scratch_assay_unet.onnx"


def _require_train_extra():
    if not trainer_available():
        pytest.fail("the tablet training tests need the 'train' extra (torch, onnx): pip install -e '.[train]'",
                    pytrace=False)


# --------------------------------------------------------------------------- helpers


def _copy_images(datasets: Path, dest: Path, n: int = N_TRAIN + N_HELD) -> list[Path]:
    src = datasets / "scratch_assay"
    dest.mkdir(parents=True)
    (dest / "masks").mkdir()
    out = []
    for name in sorted(p.name for p in (src / "images").iterdir())[:n]:
        shutil.copy2(src / "images" / name, dest / name)
        shutil.copy2(src / "masks" / name, dest / "masks" / name)
        out.append(dest / name)
    return out


def _request(folder: Path, images: list[Path], recipe: str, budget_s: float, base: Path | None = None) -> RoundRequest:
    """A round on ``images`` (the last N_HELD held out), written into ``folder``."""
    items, masks = [], {}
    for k, path in enumerate(images):
        st = os.stat(path)
        mask = read_image(path.parent / "masks" / path.name) > 0
        mask = mask.any(axis=2) if mask.ndim == 3 else mask
        items.append(RoundItem(sample_id=k + 1, label_id=100 + k, name=path.name, path=str(path), page=0,
                               size=st.st_size, mtime_ns=st.st_mtime_ns, shape=mask.shape))
        masks[100 + k] = mask
    base_entry = None
    if base is not None:
        base_entry = {"path": str(base), "name": base.stem, "version": "1.0.0", "sha256": file_hash(base)}
    request = RoundRequest(round=1, project="scratch", train=items[:-N_HELD], held_out=items[-N_HELD:],
                           base=base_entry, recipe=recipe, budget_s=budget_s)
    request.write(folder, masks)
    return request


class Child:
    """The trainer child with its progress lines read on a thread (so a wait can time out)."""

    def __init__(self, folder: Path, home: Path, pause_at: str | None = None):
        env = dict(os.environ, LABELASSIST_HOME=str(home), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1")
        env.pop("LABELASSIST_TRAINER_PAUSE_AT", None)
        if pause_at:
            env["LABELASSIST_TRAINER_PAUSE_AT"] = pause_at
        self.folder = folder
        self.started = time.monotonic()
        self.proc = subprocess.Popen(trainer_command(folder), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def wait_for(self, predicate, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"no such progress line within {timeout} s; seen {self.seen[-3:]}") from None
            if line is None:
                raise AssertionError(f"the child ended (exit {self.proc.wait()}) before; seen {self.seen[-3:]}")
            self.seen.append(line)
            if predicate(line):
                return line

    def finish(self, timeout: float) -> int:
        self.wait_for(lambda d: d.get("stage") == "done", timeout)
        return self.proc.wait(timeout=10)


def _files(root: Path, skip: list[Path]) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under ``root`` outside ``skip``."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and not any(p.is_relative_to(s) for s in skip):
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _mean(scores: dict[int, float]) -> float:
    return float(np.mean(list(scores.values())))


# --------------------------------------------------------------------------- the two real rounds


@pytest.fixture(scope="module")
def rounds(tmp_path_factory, datasets):
    """A from-scratch round (one training image changed on disk after the request) and a fine-tune
    of the shipped scratch_assay U-Net, overlapping: the from-scratch round starts once the
    fine-tune has measured its steps (its probe decides whether a fine-tune fits the budget)."""
    _require_train_extra()
    root = tmp_path_factory.mktemp("rounds")
    scratch_images = _copy_images(datasets, root / "images_a")
    fine_images = _copy_images(datasets, root / "images_b")
    out = {}
    out["scratch_request"] = _request(root / "scratch", scratch_images, "from-scratch", budget_s=12)
    changed = scratch_images[2]
    st = os.stat(changed)
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    out["changed_label"] = 102
    out["fine_request"] = _request(root / "fine", fine_images, "fine-tune", budget_s=12, base=SCRATCH_UNET)
    children = {"fine": Child(root / "fine", root / "home")}
    children["fine"].wait_for(lambda d: d.get("stage") == "train" and d["step"] > 3 or d["stage"] == "done", 120)
    children["scratch"] = Child(root / "scratch", root / "home")
    for name, child in children.items():
        out[f"{name}_rc"] = child.finish(timeout=150)
        out[f"{name}_lines"] = child.seen
        out[f"{name}_wall"] = time.monotonic() - child.started
        out[f"{name}_folder"] = root / name
    return out


def _check_result(folder: Path, request: RoundRequest, lines: list[dict]) -> RoundResult:
    result = RoundResult.read(folder)
    assert result is not None and result.status == "ok", (folder / "trainer.log").read_text()
    stages = [d["stage"] for d in lines]
    assert stages[-1] == "done" and lines[-1]["status"] == "ok" and lines[-1]["reason"] == result.reason
    order = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert order == ["read", "train", "export", "int8", "score", "done"]
    for d in lines[:-1]:
        assert set(d) == {"stage", "step", "steps", "seconds"} and 0 <= d["step"] <= d["steps"]
    # the proposed variant and the int8 rule
    assert result.held_out_fp32 and result.held_out_int8
    int8_ok = _mean(result.held_out_int8) >= _mean(result.held_out_fp32) - INT8_TOLERANCE
    assert result.variant == ("int8" if int8_ok else "fp32")
    assert result.held_out == (result.held_out_int8 if int8_ok else result.held_out_fp32)
    assert result.onnx == ("candidate.int8.onnx" if int8_ok else "candidate.onnx")
    assert result.card == result.onnx[:-5] + ".json"
    assert result.sha256 == file_hash(folder / result.onnx)
    assert set(result.held_out) == {it.label_id for it in request.held_out}
    assert not set(result.trained_on) & set(result.held_out)
    assert set(result.seconds) == {"read", "train", "export", "int8", "score"}
    assert result.steps >= 10
    # the card, as the kiosk reads it
    card = json.loads((folder / result.card).read_text(encoding="utf-8"))
    assert read_card(folder / result.card).name == "scratch_tablet_unet"
    assert card["version"] == "tablet.1" and card["precision"] == result.variant
    assert card["description"] == f"Learned on this tablet from {len(result.trained_on)} of your labels"
    training = card["training"]
    assert training["recipe"] == result.recipe and training["steps"] == result.steps
    assert training["threads"] == 1 and training["torch"]
    data = card["training_data"]
    assert data["trained_on_labels"] == result.trained_on
    assert data["held_out_labels"] == [it.label_id for it in request.held_out]
    assert data["held_out_sample_ids"] == [it.sample_id for it in request.held_out]
    assert data["held_out"] == [it.name for it in request.held_out]
    assert card["metrics"]["held_out"]["dsc_per_label"] == {str(k): v for k, v in result.held_out.items()}
    assert card["licence"].endswith("trained on the project's own labels")
    if result.variant == "int8":
        assert card["quantisation"]["weights"] == "int8 per-channel"
    # only the round's own files
    allowed = {"request.json", "masks.npz", "trainer.log", "result.json", "candidate.onnx", "candidate.json",
               "candidate.int8.onnx", "candidate.int8.json"}
    assert {p.name for p in folder.iterdir()} <= allowed
    return result


@pytest.mark.slow
def test_from_scratch_round_leaves_out_a_changed_image(rounds):
    assert rounds["scratch_rc"] == 0
    request = rounds["scratch_request"]
    result = _check_result(rounds["scratch_folder"], request, rounds["scratch_lines"])
    assert result.recipe == "from-scratch"
    assert result.trained_on == [it.label_id for it in request.train if it.label_id != rounds["changed_label"]]
    assert "left out 1 image" in result.reason and request.train[2].name in result.reason
    card = json.loads((rounds["scratch_folder"] / result.card).read_text(encoding="utf-8"))
    assert card["training"]["base"] is None and card["architecture"]["base"] == 8
    assert rounds["scratch_wall"] < 12 + 30  # the budget, plus start-up on a busy machine


@pytest.mark.slow
def test_fine_tune_of_the_shipped_model_measures_well(rounds):
    from labelassist.training.warm_start import unet_from_onnx

    assert rounds["fine_rc"] == 0
    folder, request = rounds["fine_folder"], rounds["fine_request"]
    result = _check_result(folder, request, rounds["fine_lines"])
    assert result.recipe == "fine-tune", (result.reason, (folder / "trainer.log").read_text())
    assert result.trained_on == [it.label_id for it in request.train]
    assert min(result.held_out.values()) >= 0.8, result.held_out
    card = json.loads((folder / "candidate.json").read_text(encoding="utf-8"))
    shipped = json.loads(SCRATCH_UNET.with_suffix(".json").read_text(encoding="utf-8"))
    assert card["training"]["base"] == {"name": shipped["name"], "version": shipped["version"],
                                        "sha256": file_hash(SCRATCH_UNET), "file": SCRATCH_UNET.name}
    assert card["architecture"]["base"] == 12 and card["architecture"]["depth"] == 4 and card["scale"] == 0.5
    assert card["licence"].startswith(shipped["licence"])
    # the next round can warm-start from this one's export
    assert unet_from_onnx(folder / "candidate.onnx", card) is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scratch_assay_unet", "usiigaci_phase_unet"])
def test_warm_start_matches_onnx_runtime(name):
    _require_train_extra()
    from labelassist.training.warm_start import MAX_DIFFERENCE, probe_difference, unet_from_onnx

    path = SHIPPED_DIR / f"{name}.onnx"
    card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    net = unet_from_onnx(path, card)
    assert not any("BatchNorm" in type(m).__name__ for m in net.modules())
    assert probe_difference(net, path, 16, seed=5) < MAX_DIFFERENCE
    with pytest.raises(LabelAssistError, match="not a U-Net"):
        unet_from_onnx(path, dict(card, architecture={"type": "sam_decoder"}))
    int8 = SHIPPED_DIR / f"{name}.int8.onnx"
    with pytest.raises(LabelAssistError, match="quantised"):
        unet_from_onnx(int8, json.loads(int8.with_suffix(".json").read_text(encoding="utf-8")))


# --------------------------------------------------------------------------- killing the child


@pytest.mark.slow
def test_sigkill_at_each_stage_leaves_no_result_and_nothing_outside(tmp_path, datasets):
    _require_train_extra()
    images = _copy_images(datasets, tmp_path / "images")
    folders = {stage: tmp_path / "rounds" / stage for stage in STAGES}
    for folder in folders.values():
        _request(folder, images, "from-scratch", budget_s=4)
    before = _files(tmp_path, skip=[tmp_path / "rounds", tmp_path / "home" / "logs"])
    children = {stage: Child(folders[stage], tmp_path / "home", pause_at=stage) for stage in STAGES}
    for stage, child in children.items():
        child.wait_for(lambda d, s=stage: d == {"stage": "paused", "at": s}, timeout=120)
        child.proc.send_signal(signal.SIGKILL)
        assert child.proc.wait(timeout=10) == -signal.SIGKILL
        assert RoundResult.read(folders[stage]) is None, stage
        assert not (folders[stage] / "result.json").exists()
    assert _files(tmp_path, skip=[tmp_path / "rounds", tmp_path / "home" / "logs"]) == before


@pytest.mark.slow
def test_closing_stdin_ends_the_child_and_stop_stops_it(tmp_path, datasets):
    _require_train_extra()
    images = _copy_images(datasets, tmp_path / "images", n=4)
    for name in ("closed", "stopped"):
        _request(tmp_path / name, images, "from-scratch", budget_s=30)
    closed = Child(tmp_path / "closed", tmp_path / "home", pause_at="train")
    stopped = Child(tmp_path / "stopped", tmp_path / "home")
    closed.wait_for(lambda d: d.get("stage") == "paused", timeout=120)
    if hasattr(os, "sched_getscheduler"):
        assert os.sched_getscheduler(closed.proc.pid) == os.SCHED_IDLE
    t = time.monotonic()
    closed.proc.stdin.close()  # what the UI's death looks like to the child
    assert closed.proc.wait(timeout=5) == 1
    assert time.monotonic() - t < 5
    assert RoundResult.read(tmp_path / "closed") is None

    stopped.wait_for(lambda d: d.get("stage") == "train", timeout=120)
    stopped.proc.stdin.write(b"stop\n")
    stopped.proc.stdin.flush()
    assert stopped.proc.wait(timeout=30) == 1
    assert not (tmp_path / "stopped" / "result.json").exists()
    assert "stopped by the UI" in (tmp_path / "stopped" / "trainer.log").read_text()


def test_a_round_without_readable_images_fails_cleanly(tmp_path, datasets):
    images = _copy_images(datasets, tmp_path / "images", n=3)
    _request(tmp_path / "round", images, "from-scratch", budget_s=10)
    for path in images:
        path.unlink()
    child = Child(tmp_path / "round", tmp_path / "home")
    assert child.finish(timeout=60) == 0
    assert child.seen[-1] == {"stage": "done", "status": "failed",
                              "reason": "none of the training images could be read as the request saw them"}
    result = RoundResult.read(tmp_path / "round")
    assert result.status == "failed" and result.reason == child.seen[-1]["reason"] and result.onnx is None


# --------------------------------------------------------------------------- the files (no torch)


def test_request_round_trip_and_result_checks(tmp_path, datasets):
    images = _copy_images(datasets, tmp_path / "images", n=3)
    request = _request(tmp_path / "r", images, "from-scratch", budget_s=5)
    again, masks = RoundRequest.read(tmp_path / "r")
    assert again == request
    for item in request.train + request.held_out:
        truth = read_image(Path(item.path).parent / "masks" / item.name) > 0
        assert masks[item.label_id].dtype == bool and np.array_equal(masks[item.label_id], truth)
    odd = np.random.default_rng(0).random((7, 13)) > 0.5  # not a multiple of 8 pixels
    small = RoundRequest(round=2, project="p", train=[RoundItem(1, 5, "a", "/x", 0, 1, 1, (7, 13))], held_out=[],
                         base=None, recipe="from-scratch")
    small.write(tmp_path / "s", {5: odd})
    assert np.array_equal(RoundRequest.read(tmp_path / "s")[1][5], odd)

    folder = tmp_path / "result"
    folder.mkdir()
    assert RoundResult.read(folder) is None                      # missing
    (folder / "result.json").write_text("{not json")
    assert RoundResult.read(folder) is None                      # unparsable
    (folder / "candidate.onnx").write_bytes(b"model bytes")
    (folder / "candidate.json").write_text("{}")
    good = RoundResult(status="ok", reason="r", variant="fp32", onnx="candidate.onnx",
                       sha256=file_hash(folder / "candidate.onnx"), card="candidate.json", held_out={7: 0.9},
                       held_out_fp32={7: 0.9}, recipe="from-scratch", steps=3, trained_on=[1])
    good.write(folder)
    assert RoundResult.read(folder) == good
    (folder / "candidate.onnx").write_bytes(b"other bytes")
    assert RoundResult.read(folder) is None                      # SHA-256 mismatch
    RoundResult(**{**good.__dict__, "onnx": "../candidate.onnx"}).write(folder)
    assert RoundResult.read(folder) is None                      # not inside the folder
    RoundResult(status="failed", reason="no images").write(folder)
    assert RoundResult.read(folder).reason == "no images"


def test_round_folder_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELASSIST_HOME", str(tmp_path / "home"))
    folder = round_folder(tmp_path / "project", 3)
    assert folder.parent.parent == tmp_path / "home" / "training"
    assert len(folder.parent.name) == 12 and folder.name == "round-0003"
    assert round_folder(tmp_path / "project" / ".", 3) == folder
    assert trainer_command(folder)[-2:] == ["_train-round", str(folder)]


def test_plan_steps():
    assert plan_steps(10.0, 0.2) == 50
    assert plan_steps(5.0, 0.2) == 0               # fewer than 30 steps: not a fine-tune
    assert plan_steps(5.0, 0.2, min_steps=1) == 25
    assert plan_steps(1e6, 0.01) == 2000
    assert plan_steps(-1.0, 0.2) == 0 and plan_steps(10.0, 0.0) == 0
    assert RESERVE_S > 0


def test_an_int8_base_warm_starts_from_its_fp32_sibling(tmp_path):
    from labelassist.training.tablet_round import _base_model

    def base_of(path: Path, sha256: str):
        request = RoundRequest(round=1, project="p", train=[], held_out=[], recipe="fine-tune",
                               base={"path": str(path), "name": path.stem, "version": "1", "sha256": sha256})
        return _base_model(request)

    int8 = SHIPPED_DIR / "scratch_assay_unet.int8.onnx"
    path, card, notes = base_of(int8, file_hash(int8))
    assert path == SCRATCH_UNET and card["precision"] == "fp32" and notes == []
    # a history entry: model.onnx (int8, the installed variant) beside model.fp32.onnx without a card
    entry = tmp_path / "history" / "3"
    entry.mkdir(parents=True)
    shutil.copy2(int8, entry / "model.onnx")
    shutil.copy2(int8.with_suffix(".json"), entry / "model.json")
    shutil.copy2(SCRATCH_UNET, entry / "model.fp32.onnx")
    path, card, notes = base_of(entry / "model.onnx", file_hash(int8))
    assert path == entry / "model.fp32.onnx" and card["architecture"]["base"] == 12 and notes == []
    path, card, notes = base_of(entry / "model.onnx", "0" * 64)  # changed since the request
    assert path is None and "changed since the request" in notes[0]
