"""One training round on the tablet: a round folder in, candidate models and ``result.json`` out.

:func:`run_round` is what the trainer child (:mod:`labelassist.training.child`) runs, stage by
stage, each announced by a progress line:

1. **read**: the request and its pinned masks (:class:`~labelassist.training.request.RoundRequest`),
   and each image from its own path; an image whose size or modification time differs from the
   request's is left out, as ``Project.read_image`` would refuse it;
2. **train**: ``fine-tune`` from the base's ONNX weights (:mod:`labelassist.training.warm_start`)
   or ``from-scratch`` (:data:`RECIPES`). Three probe steps (after an untimed first) measure the seconds per step, and
   :func:`plan_steps` fits the schedule into what is left of ``budget_s``; a fine-tune with no
   time past the probe keeps the probe's steps (a base that fits is a good start on its own);
3. **export**: ``candidate.onnx`` and its card (``core.export_onnx``, ``core.make_card``);
4. **int8**: ``candidate.int8.onnx``, calibrated on up to :data:`MAX_CALIBRATION` training images;
5. **score**: both variants on the held-out labels through :class:`labelassist.models.Model`, the
   kiosk's own inference path. int8 is proposed when its mean DSC is within :data:`INT8_TOLERANCE`
   of fp32's.

``result.json`` is written last, atomically. Child process only: imports torch.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from labelassist.errors import LabelAssistError
from labelassist.fileio import file_hash
from labelassist.training.request import RoundItem, RoundRequest, RoundResult
from labelassist.training.steps import RoundStopped, plan_steps

__all__ = ["Recipe", "RECIPES", "RoundStopped", "plan_steps", "run_round", "pause_point",
           "FINE_TUNE_MIN_STEPS", "RESERVE_S", "INT8_TOLERANCE", "MAX_CALIBRATION", "PAUSE_ENV"]

#: Seconds of the budget kept for export, int8 and scoring (at most a quarter of a small test budget);
#: bench/bench_trainer.py measures what they take.
RESERVE_S = 10.0
RESERVE_SHARE = 0.25
PROBE_STEPS = 4
FINE_TUNE_MIN_STEPS = 1
FROM_SCRATCH_MIN_STEPS = 10
#: int8 is proposed when its held-out mean DSC is at most this much below fp32's (models/index.json's rule).
INT8_TOLERANCE = 0.005
MAX_CALIBRATION = 8
#: Tests: the stage at which the child announces ``{"stage": "paused"}`` and sleeps (to be killed there).
PAUSE_ENV = "LABELASSIST_TRAINER_PAUSE_AT"
PROGRESS_EVERY_S = 0.5

Say = Callable[[dict], None]


@dataclass(frozen=True)
class Recipe:
    """A network and its optimiser schedule (``schedule``: ``cosine`` or ``one-cycle``)."""

    name: str
    base: int
    depth: int
    scale: float
    patch: int
    batch: int
    lr: float
    schedule: str
    weight_decay: float = 1e-4


RECIPES = {
    # base, depth and scale are the base model's (those of the shipped U-Nets shown)
    "fine-tune": Recipe("fine-tune", 12, 4, 0.5, patch=128, batch=4, lr=3e-4, schedule="cosine"),
    # experiment_net.NetConfig's network, as `simulate` measured it
    "from-scratch": Recipe("from-scratch", 8, 3, 0.25, patch=64, batch=8, lr=3e-3, schedule="one-cycle"),
}


class _Failed(LabelAssistError):
    """A round that cannot go on, with the plain reason."""


def _from_scratch_steps(seconds_left: float, seconds_per_step: float) -> int:
    """A from-scratch round always runs: at least :data:`FROM_SCRATCH_MIN_STEPS` steps, so a busy
    tablet still ends with a measured candidate (which the comparison then usually refuses)."""
    return max(FROM_SCRATCH_MIN_STEPS, plan_steps(seconds_left, seconds_per_step, 1))


def pause_point(stage: str, say: Say) -> None:
    """Tests: when ``LABELASSIST_TRAINER_PAUSE_AT`` names ``stage``, say so and sleep (to be killed)."""
    if os.environ.get(PAUSE_ENV) == stage:
        say({"stage": "paused", "at": stage})
        time.sleep(3600)


# --------------------------------------------------------------------------- the round


@dataclass
class _Sample:
    item: RoundItem
    x: np.ndarray        # normalised grey, at the first recipe's scale
    mask: np.ndarray     # bool, the image's own size
    image: np.ndarray | None = None   # raw pixels, kept for held-out scoring only


class _Clock:
    def __init__(self, started: float | None):
        self.started = time.monotonic() if started is None else started
        self.seconds: dict[str, float] = {}
        self._stage, self._t = "", time.monotonic()

    def enter(self, stage: str) -> None:
        now = time.monotonic()
        if self._stage:
            self.seconds[self._stage] = round(now - self._t, 3)
        self._stage, self._t = stage, now

    def end(self) -> None:
        self.enter("")

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def run_round(folder: Path, say: Say, stop: Callable[[], bool] = lambda: False,
              started: float | None = None) -> RoundResult:
    """Run the round of ``folder`` and write its ``result.json``; returns that result.

    Parameters
    ----------
    folder : Path
        A round folder holding ``request.json`` and ``masks.npz``.
    say : callable
        Gets each progress line (a dict, see the module docstring of :mod:`labelassist.training.child`).
    stop : callable
        Asked between steps; True raises :class:`RoundStopped` (no result is written).
    started : float, optional
        ``time.monotonic()`` when the child started: the budget counts from there.

    A round that cannot go on for a reason the user can be told (no readable image, too little
    time) ends with a ``"failed"`` result; other exceptions propagate.
    """
    folder = Path(folder)
    clock = _Clock(started)
    try:
        return _run(folder, say, stop, clock)
    except _Failed as exc:
        clock.end()
        result = RoundResult(status="failed", reason=str(exc), seconds=clock.seconds)
        result.write(folder)
        say({"stage": "done", "status": "failed", "reason": result.reason})
        return result


def _progress(say: Say, clock: _Clock, stage: str, step: int, steps: int) -> None:
    say({"stage": stage, "step": int(step), "steps": int(steps), "seconds": round(clock.elapsed(), 2)})


def _run(folder: Path, say: Say, stop: Callable[[], bool], clock: _Clock) -> RoundResult:
    pause_point("read", say)
    clock.enter("read")
    try:
        request, masks = RoundRequest.read(folder)
    except (OSError, ValueError, KeyError) as exc:
        raise _Failed(f"the round's request could not be read ({exc})") from exc
    base, base_card, notes = _base_model(request)
    read_scale = _recipe_for(base_card).scale if base is not None else RECIPES["from-scratch"].scale
    train, held = _read_stage(request, masks, read_scale, notes, say, clock)
    if stop():
        raise RoundStopped

    pause_point("train", say)
    clock.enter("train")
    net, recipe, steps, losses, data, per_step = _train_stage(request, train, read_scale, base, base_card, notes,
                                                             say, stop, clock)
    if recipe.name != "fine-tune":
        base, base_card = None, None

    pause_point("export", say)
    clock.enter("export")
    _progress(say, clock, "export", 0, 1)
    from labelassist.training import core

    fp32_path, int8_path = folder / "candidate.onnx", folder / "candidate.int8.onnx"
    core.export_onnx(net, fp32_path, multiple=2 ** recipe.depth)
    card = _card(request, recipe, net, train, held, base, base_card, steps, losses, per_step, clock)
    core.write_card(card, fp32_path.with_suffix(".json"))

    pause_point("int8", say)
    clock.enter("int8")
    _progress(say, clock, "int8", 0, 1)
    int8_card = core.int8_card(card)
    try:
        core.quantize_int8(fp32_path, int8_path, [x for x, _ in data[:MAX_CALIBRATION]])
        core.write_card(int8_card, int8_path.with_suffix(".json"))
    except Exception as exc:  # noqa: BLE001 - fp32 is still a candidate
        print(f"int8 quantisation failed: {exc!r}", file=sys.stderr)
        notes.append("the int8 variant could not be made")
        int8_path.unlink(missing_ok=True)

    pause_point("score", say)
    clock.enter("score")
    n_scores = 2 * len(held)
    scores_fp32 = _score(fp32_path, card, held, request.threads,
                         lambda k: _progress(say, clock, "score", k, n_scores))
    scores_int8 = {}
    if int8_path.exists():
        scores_int8 = _score(int8_path, int8_card, held, request.threads,
                             lambda k: _progress(say, clock, "score", len(held) + k, n_scores))
    for c, scores, p in ((card, scores_fp32, fp32_path), (int8_card, scores_int8, int8_path)):
        if scores:  # each card records its own variant's held-out scores
            c.setdefault("metrics", {})["held_out"] = _held_out_metrics(scores, held, c["precision"])
            core.write_card(c, p.with_suffix(".json"))
    use_int8 = bool(scores_int8) and _mean(scores_int8) >= _mean(scores_fp32) - INT8_TOLERANCE
    variant, path, scores = ("int8", int8_path, scores_int8) if use_int8 else ("fp32", fp32_path, scores_fp32)

    prompt = None
    if request.prompt:
        pause_point("prompt", say)
        clock.enter("prompt")
        from labelassist.training.prompt_round import run_prompt_stage

        prompt = run_prompt_stage(request, masks, folder, say, stop)

    pause_point("result", say)
    clock.end()
    reason = (f"trained on {len(train)} labels ({recipe.name}, {steps} steps); held-out DSC "
              f"{_mean(scores):.3f} on {len(scores)} labels ({variant})")
    result = RoundResult(
        status="ok", reason="; ".join([reason] + notes), variant=variant, onnx=path.name, sha256=file_hash(path),
        card=path.with_suffix(".json").name, held_out=scores, held_out_fp32=scores_fp32, held_out_int8=scores_int8,
        recipe=recipe.name, steps=steps, seconds=clock.seconds, trained_on=[s.item.label_id for s in train],
        prompt=prompt)
    result.write(folder)
    say({"stage": "done", "status": "ok", "reason": result.reason})
    return result


def _read_stage(request: RoundRequest, masks: dict[int, np.ndarray], scale: float, notes: list[str], say: Say,
                clock: _Clock) -> tuple[list[_Sample], list[_Sample]]:
    """(train, held-out) samples whose images are still the ones the request saw."""
    items = request.train + request.held_out
    held_ids = {it.label_id for it in request.held_out}
    samples, left_out = [], []
    for k, item in enumerate(items):
        _progress(say, clock, "read", k, len(items))
        sample = _read_sample(item, masks[item.label_id], scale, keep_image=item.label_id in held_ids)
        if sample is None:
            left_out.append(item)
        else:
            samples.append(sample)
    train = [s for s in samples if s.item.label_id not in held_ids]
    held = [s for s in samples if s.item.label_id in held_ids]
    if not train:
        raise _Failed("none of the training images could be read as the request saw them")
    if not held:
        raise _Failed("none of the held-out images could be read, so the new model could not be measured")
    if left_out:
        notes.append(f"left out {len(left_out)} image(s) changed or missing on disk: "
                     + ", ".join(it.name for it in left_out[:5]))
    return train, held


def _train_stage(request: RoundRequest, train: list[_Sample], read_scale: float, base: Path | None,
                 base_card: dict | None, notes: list[str], say: Say, stop, clock: _Clock):
    """The fine-tune when a base is given and it fits the budget, else from scratch.

    Returns (net, recipe, steps, losses, network-scale data, seconds per step).
    """
    import torch

    from labelassist.training import core

    torch.set_num_threads(max(1, request.threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only before any inter-op work
        pass
    torch.manual_seed(request.seed)
    rng = np.random.default_rng([request.seed, 7])
    reserve = min(RESERVE_S, RESERVE_SHARE * request.budget_s)

    def seconds_left() -> float:
        return request.budget_s - reserve - clock.elapsed()

    if base is not None:
        recipe = _recipe_for(base_card)
        net = _warm_start(base, base_card, notes)
        if net is not None:
            trained = _train(net, recipe, train, read_scale, rng, seconds_left, say, stop, clock)
            return (trained[0], recipe, *trained[1:])
    recipe = RECIPES["from-scratch"]
    net = core.build_unet(recipe.base, recipe.depth)  # with BN, as `simulate` measured it; the export folds it
    trained = _train(net, recipe, train, read_scale, rng, seconds_left, say, stop, clock)
    return (trained[0], recipe, *trained[1:])


def _mean(scores: dict[int, float]) -> float:
    return float(np.mean(list(scores.values()))) if scores else float("nan")


# --------------------------------------------------------------------------- read


def _read_sample(item: RoundItem, mask: np.ndarray, scale: float, keep_image: bool) -> _Sample | None:
    """The sample when its image is still the one the request saw (size, mtime, shape); else None."""
    from labelassist.training import core

    image = item.read_image()
    if image is None or mask.shape != tuple(item.shape):
        return None
    x = core.resize_for_model(core.percentile_normalise(image), scale)
    return _Sample(item, x, mask, image if keep_image else None)


def _base_model(request: RoundRequest) -> tuple[Path | None, dict | None, list[str]]:
    """(fp32 base path, its card, notes) for a fine-tune; (None, None, notes) for from-scratch.

    An int8 base is replaced by its fp32 sibling, as the shipped models (``x.int8.onnx`` ->
    ``x.onnx``) and the history (``model.onnx`` -> ``model.fp32.onnx``) keep it: only fp32 weights
    load exactly. A sibling without a card of its own uses the int8 card's architecture and scale.
    """
    notes: list[str] = []
    if request.recipe != "fine-tune" or not request.base:
        return None, None, notes
    path = Path(request.base.get("path", ""))
    try:
        if request.base.get("sha256") and file_hash(path) != request.base["sha256"]:
            notes.append(f"the base model {path.name} changed since the request, so it was not used")
            return None, None, notes
        card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        if card.get("precision") == "int8":
            siblings = [path.with_name(path.name.replace(".int8.onnx", ".onnx")), path.with_suffix(".fp32.onnx")]
            path = next((p for p in siblings if p != path and p.is_file()), path)
            own = path.with_suffix(".json")
            card = json.loads(own.read_text(encoding="utf-8")) if own.is_file() else dict(card, precision="fp32")
        if not path.is_file() or card.get("precision", "fp32") != "fp32":
            raise OSError(f"no fp32 graph of {request.base.get('name')}")
    except (OSError, ValueError, LabelAssistError) as exc:
        notes.append(f"the base model could not be used ({exc}), so the model was trained from scratch")
        return None, None, notes
    return path, card, notes


def _recipe_for(card: dict) -> Recipe:
    arch = card.get("architecture") or {}
    return replace(RECIPES["fine-tune"], base=int(arch.get("base", 12)), depth=int(arch.get("depth", 4)),
                   scale=float(card.get("scale", 0.5)))


def _warm_start(path: Path, card: dict, notes: list[str]):
    from labelassist.training.warm_start import unet_from_onnx

    try:
        return unet_from_onnx(path, card)
    except LabelAssistError as exc:
        notes.append(f"{exc}; the model was trained from scratch")
        return None


# --------------------------------------------------------------------------- train


def _train(net, recipe: Recipe, samples: list[_Sample], read_scale: float, rng, seconds_left, say: Say, stop,
           clock: _Clock):
    """Probe, plan and run the schedule; (net, steps, losses, data, seconds per step). A fine-tune with
    no time past the probe keeps the probe's steps (its base already fits: more steps only help)."""
    import torch

    from labelassist.training import core

    data = []
    for s in samples:
        x = s.x if recipe.scale == read_scale else core.resize_for_model(
            s.x, recipe.scale / read_scale)
        data.append((x, core.resize_mask(s.mask, x.shape).astype(np.float32)))
    start_lr = recipe.lr if recipe.schedule == "cosine" else recipe.lr / 25  # OneCycleLR's first lr
    opt = torch.optim.AdamW(net.parameters(), lr=start_lr, weight_decay=recipe.weight_decay)
    losses, timings = [], []
    for k in range(PROBE_STEPS):  # real steps; the first is not timed (one-off allocations)
        if stop():
            raise RoundStopped
        t = time.perf_counter()
        loss, _ = core.train_epoch(net, opt, None, data, recipe.batch, recipe.patch, rng, "cpu", 1, k, k + 1)
        timings.append(time.perf_counter() - t)
        losses.append(loss)
        _progress(say, clock, "train", k + 1, PROBE_STEPS)
    per_step = statistics.median(timings[1:])
    if recipe.name == "fine-tune":
        planned = plan_steps(seconds_left(), per_step, FINE_TUNE_MIN_STEPS)
    else:
        planned = _from_scratch_steps(seconds_left(), per_step)
    print(f"{recipe.name}: {per_step:.3f} s per step, {seconds_left():.1f} s left: {planned} steps planned",
          file=sys.stderr)
    if planned == 0:  # no time left past the probe: a fine-tuned base that fits is still a good start
        return net.eval(), PROBE_STEPS, losses, data, per_step
    if recipe.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=planned)
    else:
        # a short schedule still needs two warm-up steps (OneCycleLR divides by their count minus one)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=planned,
                                                    pct_start=max(0.1, 2.0 / planned))
    total = PROBE_STEPS + planned
    # Steps slower than probed (the tablet got busy) end the schedule early rather than the budget.
    deadline = time.monotonic() + max(0.0, seconds_left())
    said = time.monotonic()
    step = 0
    while step < planned:
        if stop():
            raise RoundStopped
        if time.monotonic() > deadline:
            break
        loss, step = core.train_epoch(net, opt, sched, data, recipe.batch, recipe.patch, rng, "cpu", 1, step,
                                      planned)
        losses.append(loss)
        if time.monotonic() - said >= PROGRESS_EVERY_S or step == planned:
            said = time.monotonic()
            _progress(say, clock, "train", PROBE_STEPS + step, total)
    return net.eval(), PROBE_STEPS + step, losses, data, per_step


# --------------------------------------------------------------------------- card and scores


def _card(request: RoundRequest, recipe: Recipe, net, train: list[_Sample], held: list[_Sample], base, base_card,
          steps: int, losses: list[float], per_step: float, clock: _Clock) -> dict[str, Any]:
    """``core.make_card``'s card with the tablet's name, version, training record and data."""
    import torch

    from labelassist.training import core

    base_licence = (base_card or {}).get("licence")
    config = core.TrainConfig(
        name=f"{request.project}_tablet_unet", version=f"tablet.{request.round}", scale=recipe.scale,
        base=recipe.base, depth=recipe.depth, patch=recipe.patch, batch=recipe.batch, epochs=0, lr=recipe.lr,
        weight_decay=recipe.weight_decay, seed=request.seed, device="cpu", threads=request.threads,
        time_limit_s=request.budget_s, description=f"Learned on this tablet from {len(train)} of your labels",
        licence="; ".join(p for p in (base_licence, "trained on the project's own labels") if p))
    train_seconds = clock.seconds.get("train", 0.0)
    run = {"epochs_run": 0, "train_seconds": train_seconds, "device": "cpu", "world_size": 1, "losses": losses}
    card = core.make_card(config, net, [(s.item.name, "") for s in train], [(s.item.name, "") for s in held], [],
                          run)
    card["training"].update({
        "recipe": recipe.name, "steps": steps, "seconds": round(train_seconds, 1),
        "seconds_per_step": round(per_step, 4), "threads": request.threads, "torch": torch.__version__,
        "round": request.round, "budget_s": request.budget_s,
        "base": None if base is None else {k: (base_card or {}).get(k) for k in ("name", "version")}
        | {"sha256": file_hash(base), "file": Path(base).name},
    })
    card["training_data"] = {  # sample names, as make_card names images; label and sample ids beside
        "project": request.project,
        "trained_on": [s.item.name for s in train], "held_out": [s.item.name for s in held],
        "trained_on_labels": [s.item.label_id for s in train], "held_out_labels": [s.item.label_id for s in held],
        "trained_on_sample_ids": [s.item.sample_id for s in train],
        "held_out_sample_ids": [s.item.sample_id for s in held],
    }
    return card


def _score(path: Path, card: dict, held: list[_Sample], threads: int, progress) -> dict[int, float]:
    """DSC per held-out label id of the model at ``path``, run as the kiosk runs it."""
    from labelassist.models import Model
    from labelassist.workflow.metrics import dice

    model = Model(path, card=card, threads=max(1, threads))
    scores = {}
    for k, s in enumerate(held):
        progress(k)
        prob = model.predict(s.image)
        scores[s.item.label_id] = round(dice(s.mask, prob > model.threshold), 5)
    return scores


def _held_out_metrics(scores: dict[int, float], held: list[_Sample], precision: str) -> dict[str, Any]:
    return {"dsc_mean": round(_mean(scores), 4), "images": len(scores),
            "dsc_per_image": {s.item.name: scores[s.item.label_id] for s in held},
            "dsc_per_label": {str(k): v for k, v in scores.items()},
            "evaluated_with": f"labelassist.models.Model (ONNX Runtime), full image, {precision}"}
