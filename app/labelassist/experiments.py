"""Experiments on real data: the selector comparison (paper Table 1) and a simulated annotator.

``labelassist evaluate selector`` -> :func:`evaluate_selector` (+ :func:`plot_selector`)
    Train the U-Net of :mod:`labelassist.training.core` on the ``budget`` samples each
    selector strategy picks from a training pool, measure the DSC on a test split that is
    fixed per seed, repeat over seeds; a baseline is trained on the whole training split.

``labelassist simulate PROJECT --ground-truth DIR`` -> :func:`simulate` (+ :func:`plot_simulation`)
    Walk a project's :class:`~labelassist.session.Session` as the UI does (selector ->
    pre-label -> corrections -> inspection -> post-processing -> save), the "corrections"
    being whatever turns the start mask into the ground truth, and retrain the project's
    pre-label model every ``retrain_every`` labels. The correction effort per sample shows
    how the assistance improves as labels accumulate.

Both run on the CPU (small images via ``scale``, a small U-Net, few epochs) and use CUDA
when present. The networks are trained in memory on pre-loaded arrays (the same
augmentation and loss as :func:`labelassist.training.core.train`), so an experiment
reads every image once.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from labelassist.errors import LabelAssistError
from labelassist.evaluation import dsc_axes

__all__ = [
    "DEFAULT_STRATEGIES",
    "NetConfig",
    "SelectorResult",
    "SimulationResult",
    "evaluate_selector",
    "plot_selector",
    "simulate",
    "plot_simulation",
    "load_folder_pool",
]

DEFAULT_STRATEGIES = ("sequential", "random", "sequence_aware", "diversity", "uncertainty")

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- the network


@dataclass
class NetConfig:
    """The small U-Net and its training schedule (CPU-sized defaults)."""

    scale: float = 0.25
    base: int = 8
    depth: int = 3
    patch: int = 64
    batch: int = 8
    epochs: int = 12
    patches_per_image: int = 4
    lr: float = 3e-3
    weight_decay: float = 1e-4
    threshold: float = 0.5
    threads: int = 1
    device: str = "auto"


def _device(cfg: NetConfig) -> str:
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def _train_net(data: list[tuple[np.ndarray, np.ndarray]], cfg: NetConfig, seed: int) -> tuple[Any, dict]:
    """Train a U-Net on network-scale (x in [0, 1], bool mask) pairs; returns (net on CPU, info)."""
    import torch

    from labelassist.training import core

    if not data:
        raise LabelAssistError("no training images")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg)
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 7])
    data = [(x, y.astype(np.float32)) for x, y in data]
    net = core.build_unet(cfg.base, cfg.depth).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(data) * cfg.patches_per_image / cfg.batch))
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(total, 2), pct_start=0.1)
    t0 = time.perf_counter()
    losses = []
    step = 0
    for _ in range(cfg.epochs):
        loss, step = core.train_epoch(net, opt, sched, data, cfg.batch, cfg.patch, rng, device,
                                      steps_per_epoch, step, total)
        losses.append(loss)
    net = net.cpu().eval()
    return net, {"losses": losses, "train_seconds": time.perf_counter() - t0, "epochs_run": cfg.epochs,
                 "device": device, "world_size": 1, "steps": total}


def _probability(net, x: np.ndarray, cfg: NetConfig) -> np.ndarray:
    from labelassist.training import core

    return core.predict_torch(net, x, "cpu", 2 ** cfg.depth)


def _test_dsc(net, items: list["_Item"], cfg: NetConfig) -> list[float]:
    """DSC per image at full resolution (probability resized back, as training.core.evaluate_torch)."""
    import cv2

    from labelassist.training import core

    out = []
    for it in items:
        p = _probability(net, it.x, cfg)
        p = cv2.resize(p, (it.truth.shape[1], it.truth.shape[0]), interpolation=cv2.INTER_LINEAR)
        out.append(core.dsc(it.truth, p > cfg.threshold))
    return out


# --------------------------------------------------------------------------- the pool


@dataclass
class _Item:
    name: str
    group: str  # the (images, masks) pair it came from: reported, never given to the selector
    sequence: str  # what images.discover() found (folder / name prefix)
    frame: int
    x: np.ndarray  # network input at cfg.scale
    y: np.ndarray  # bool mask at network scale
    truth: np.ndarray  # bool mask at full resolution
    features: np.ndarray  # selector features (features.extract_features)


def load_folder_pool(sources: Sequence[tuple[str | Path, str | Path]], scale: float,
                     limit: int | None = None, progress: Progress | None = None) -> list[_Item]:
    """Every image with a mask in the (images, masks) folder pairs, in folder then sequence order.

    ``limit`` keeps the first ``limit`` samples of each pair (tests).
    """
    from labelassist import images
    from labelassist.evaluation import folder_samples
    from labelassist.training import core
    from labelassist.workflow.features import extract_features

    items: list[_Item] = []
    for image_dir, mask_dir in sources:
        image_dir, mask_dir = Path(image_dir), Path(mask_dir)
        group = image_dir.parent.name if image_dir.name in ("images", "image") else image_dir.name
        found = images.discover([image_dir])
        where = {f.name: (f.sequence, f.frame) for f in found.frames}
        count = 0
        for name, image, truth, _previous in folder_samples(image_dir, mask_dir):
            x = core.resize_for_model(core.percentile_normalise(image), scale)
            y = core.resize_mask(truth, x.shape)
            seq, frame = where.get(name, (group, count))
            items.append(_Item(name, group, f"{group}/{seq}", int(frame), x, y, np.asarray(truth, bool),
                               extract_features(image)))
            count += 1
            if limit is not None and count >= limit:
                break
        if progress:
            progress(f"loaded {count} samples from {image_dir}")
    if not items:
        raise LabelAssistError("no image with a mask was found")
    return items


# --------------------------------------------------------------------------- selector experiment


@dataclass
class SelectorResult:
    """Outcome of :func:`evaluate_selector`; ``to_dict()`` is the JSON of the CLI."""

    settings: dict[str, Any]
    pool: dict[str, Any]
    strategies: dict[str, dict[str, Any]]
    baseline: dict[str, Any]
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": "selector", "settings": self.settings, "pool": self.pool,
                "strategies": self.strategies, "baseline": self.baseline, "seconds": round(self.seconds, 1)}

    def table(self) -> str:
        """A Markdown table: strategy, DSC mean ± std (%), per seed."""
        lines = ["| strategy | labels | DSC mean ± std (%) | per seed (%) |", "| --- | ---: | ---: | --- |"]
        rows = list(self.strategies.items()) + [("baseline (whole training split)", self.baseline)]
        for name, r in rows:
            per = ", ".join(f"{100 * v:.1f}" for v in r["dsc"])
            lines.append(f"| {name} | {r['labels']} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} | {per} |")
        return "\n".join(lines)


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"mean": round(float(a.mean()), 4), "std": round(float(a.std(ddof=1)) if a.size > 1 else 0.0, 4)}


def _pick(strategy: str, pool, budget: int, seed: int, train: list[_Item], cfg: NetConfig,
          uncertainty_start: int, uncertainty_batch: int) -> tuple[list[int], list[dict]]:
    """Indices (into the pool) the strategy labels, and the rounds of the uncertainty strategy."""
    from labelassist.workflow import selector

    budget = min(budget, len(pool))
    rounds: list[dict] = []
    if strategy != "uncertainty":
        picked = []
        for _ in range(budget):  # one at a time, as the session does: adaptive strategies see each label
            i = selector.select_next(pool, {strategy: 1.0})
            if i is None:
                break
            pool.mark_labelled(i)
            picked.append(i)
        return picked, rounds
    # Uncertainty: a random start set, then batches of the least certain samples, retraining between.
    start = min(uncertainty_start, budget)
    picked = [int(i) for i in selector.rank(pool, {"random": 1.0})[:start]]
    for i in picked:
        pool.mark_labelled(i)
    while len(picked) < budget:
        net, info = _train_net([(train[i].x, train[i].y) for i in picked], cfg, seed)
        ent = np.full(len(pool), np.nan)
        for i in np.flatnonzero(~pool.labelled):
            ent[i] = selector.mean_entropy(_probability(net, train[i].x, cfg))
        pool.uncertainty = ent
        take = [int(i) for i in selector.rank(pool, {"uncertainty": 1.0})[:min(uncertainty_batch,
                                                                                 budget - len(picked))]]
        rounds.append({"labels": len(picked), "mean_entropy_unlabelled": round(float(np.nanmean(ent)), 4),
                       "picked_entropy": [round(float(ent[i]), 4) for i in take]})
        for i in take:
            pool.mark_labelled(i)
        picked += take
    return picked, rounds


def evaluate_selector(images: str | Path | Sequence[tuple[str | Path, str | Path]],
                      masks: str | Path | None = None, budget: int = 32,
                      strategies: Sequence[str] = DEFAULT_STRATEGIES, seeds: int = 3,
                      test_fraction: float = 0.25, epochs: int = 12, scale: float = 0.25,
                      sequence_ids: bool = False, uncertainty_start: int = 8, uncertainty_batch: int = 8,
                      limit: int | None = None, baseline: bool = True, net: NetConfig | None = None,
                      progress: Progress | None = None) -> SelectorResult:
    """The paper's Table 1 experiment on folders of images and masks.

    Parameters
    ----------
    images, masks
        One image folder and its mask folder, or ``images`` = a list of (images, masks)
        folder pairs (then ``masks`` is ignored) that form one pool, in the given order.
    budget : int
        Labels each strategy may pick.
    strategies : names of registered selector strategies (each run alone, weight 1).
    seeds : int
        Repetitions 0..seeds-1. The seed fixes the test split, the selector's seed, the
        uncertainty start set and the network initialisation and patches.
    test_fraction : float
        Share of every pair's samples held out for the DSC (fixed per seed, never picked).
    epochs, scale
        Training epochs and the image scale of the network (see :class:`NetConfig`).
    sequence_ids : bool
        False (default): the selector sees one ordered pool (pairs concatenated, frames in
        order) and sequence_aware has to find the set and sequence boundaries itself.
        True: it gets the sequence ids of :func:`labelassist.images.discover` (per pair:
        folder / name prefix), i.e. the set membership.
    uncertainty_start, uncertainty_batch
        Random start set of the uncertainty strategy and the labels added per round.
    limit : int, optional
        Use only the first ``limit`` samples of each pair (tests).
    baseline : bool
        Also train on the whole training split.
    net : NetConfig, optional
        Network and schedule; ``epochs`` and ``scale`` override its fields.
    """
    from labelassist.workflow import selector

    t0 = time.perf_counter()
    cfg = replace(net or NetConfig(), epochs=int(epochs), scale=float(scale))
    say = progress or (lambda _m: None)
    if isinstance(images, (str, Path)):
        if masks is None:
            raise LabelAssistError("give the mask folder (--masks)")
        sources = [(Path(images), Path(masks))]
    else:
        sources = [(Path(a), Path(b)) for a, b in images]
    from labelassist.workflow.registry import get as get_step

    for name in strategies:
        get_step("selector", name)  # an unknown name fails before any training
    items = load_folder_pool(sources, cfg.scale, limit, say)
    groups = list(dict.fromkeys(it.group for it in items))
    results: dict[str, dict[str, Any]] = {s: {"labels": 0, "dsc": [], "dsc_per_set": [], "picked": [],
                                              "picked_per_set": [], "rounds": []} for s in strategies}
    base: dict[str, Any] = {"labels": 0, "dsc": [], "dsc_per_set": []}

    def per_set(test: list[_Item], d: list[float]) -> dict[str, float]:
        return {g: round(float(np.mean([v for it, v in zip(test, d) if it.group == g])), 4)
                for g in groups if any(it.group == g for it in test)}

    splits = []
    for seed in range(int(seeds)):
        # Fixed test split per seed: the same share of every pair, drawn with the seed.
        rng = np.random.default_rng([seed, 2021])
        test_idx: list[int] = []
        for g in groups:
            members = [k for k, it in enumerate(items) if it.group == g]
            n_test = max(1, int(round(test_fraction * len(members)))) if len(members) > 1 else 0
            test_idx += sorted(rng.choice(members, n_test, replace=False).tolist())
        test_set = set(test_idx)
        train = [it for k, it in enumerate(items) if k not in test_set]
        test = [items[k] for k in sorted(test_set)]
        splits.append({"seed": seed, "train": len(train), "test": len(test),
                       "test_names": [f"{it.group}/{it.name}" for it in test]})
        say(f"seed {seed}: {len(train)} training, {len(test)} test samples")
        for strategy in strategies:
            pool = selector.Pool(
                features=np.stack([it.features for it in train]),
                labelled=np.zeros(len(train), bool),
                sequence=np.array([it.sequence for it in train], dtype=object) if sequence_ids else None,
                frame=np.array([it.frame for it in train]) if sequence_ids else None,
                seed=seed,
            )
            picked, rounds = _pick(strategy, pool, budget, seed, train, cfg, uncertainty_start, uncertainty_batch)
            chosen = [train[i] for i in picked]
            net_, info = _train_net([(it.x, it.y) for it in chosen], cfg, seed)
            d = _test_dsc(net_, test, cfg)
            r = results[strategy]
            r["labels"] = len(chosen)
            r["dsc"].append(round(float(np.mean(d)), 4))
            r["dsc_per_set"].append(per_set(test, d))
            r["picked"].append([f"{it.group}/{it.name}" for it in chosen])
            r["picked_per_set"].append({g: sum(it.group == g for it in chosen) for g in groups})
            if rounds:
                r["rounds"].append(rounds)
            say(f"seed {seed} {strategy}: DSC {np.mean(d):.4f} ({info['train_seconds']:.0f} s training)")
        if baseline:
            net_, info = _train_net([(it.x, it.y) for it in train], cfg, seed)
            d = _test_dsc(net_, test, cfg)
            base["labels"] = len(train)
            base["dsc"].append(round(float(np.mean(d)), 4))
            base["dsc_per_set"].append(per_set(test, d))
            say(f"seed {seed} baseline ({len(train)} labels): DSC {np.mean(d):.4f}")
    for r in results.values():
        r.update(_summary(r["dsc"]))
        if not r["rounds"]:
            del r["rounds"]
    if base["dsc"]:
        base.update(_summary(base["dsc"]))
    settings = {"budget": int(budget), "strategies": list(strategies), "seeds": int(seeds),
                "test_fraction": test_fraction, "sequence_ids": bool(sequence_ids),
                "uncertainty_start": uncertainty_start, "uncertainty_batch": uncertainty_batch, "limit": limit,
                "network": asdict(cfg), "device": _device(cfg),
                "sources": [[str(a), str(b)] for a, b in sources]}
    pool_info = {"samples": len(items), "sets": {g: sum(it.group == g for it in items) for g in groups},
                 "splits": splits}
    return SelectorResult(settings, pool_info, results, base, time.perf_counter() - t0)


# --------------------------------------------------------------------------- plots (OpenCV)


def _canvas(width: int, height: int):
    return np.full((height, width, 3), 255, np.uint8)


def _write_png(img: np.ndarray, path: str | Path) -> Path:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise LabelAssistError(f"{path} could not be encoded")
    path.write_bytes(buf.tobytes())
    return path


def plot_selector(result: SelectorResult | dict, path: str | Path, title: str = "") -> Path:
    """Bars of the mean test DSC per strategy (± std whiskers, one dot per seed) and the baseline as a
    dashed line, as a PNG drawn with OpenCV."""
    import cv2

    d = result.to_dict() if isinstance(result, SelectorResult) else result
    names = list(d["strategies"])
    width, height, left, top, bottom = max(520, 130 * len(names) + 120), 420, 70, 50, 70
    img = _canvas(width, height)
    plot_h = height - top - bottom
    font = cv2.FONT_HERSHEY_SIMPLEX
    y_of = dsc_axes(img, left, top, plot_h, "test DSC")
    if title:
        cv2.putText(img, title, (left + 90, 28), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    step = (width - left - 20) / max(1, len(names))
    for k, name in enumerate(names):
        r = d["strategies"][name]
        cx = int(left + step * (k + 0.5))
        cv2.rectangle(img, (cx - 30, y_of(r["mean"])), (cx + 30, y_of(0)), (200, 140, 60), -1)
        cv2.line(img, (cx, y_of(r["mean"] - r["std"])), (cx, y_of(r["mean"] + r["std"])), (0, 0, 0), 2)
        for v in r["dsc"]:
            cv2.circle(img, (cx + 38, y_of(v)), 3, (60, 60, 200), -1)
        for text, dy in ((name, 22), (f"{100 * r['mean']:.1f}+-{100 * r['std']:.1f}", 44)):
            size = cv2.getTextSize(text, font, 0.45, 1)[0][0]
            cv2.putText(img, text, (cx - size // 2, height - bottom + dy), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    b = d.get("baseline") or {}
    if b.get("dsc"):
        y = y_of(b["mean"])
        for x in range(left, width - 20, 12):
            cv2.line(img, (x, y), (min(x + 6, width - 20), y), (40, 160, 40), 2)
        cv2.putText(img, f"baseline, {b['labels']} labels: {100 * b['mean']:.1f}", (left + 5, y - 6), font, 0.45,
                    (40, 120, 40), 1, cv2.LINE_AA)
    return _write_png(img, path)


# --------------------------------------------------------------------------- simulated annotator


@dataclass
class SimulationResult:
    """Outcome of :func:`simulate`; ``to_dict()`` is the JSON of the CLI."""

    settings: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    retrains: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def blocks(self, size: int | None = None) -> list[dict[str, Any]]:
        """Mean effort and DSC of the start mask per block of ``size`` labels (default: retrain_every)."""
        size = size or int(self.settings["retrain_every"]) or 10
        out = []
        for start in range(0, len(self.samples), size):
            part = self.samples[start:start + size]
            eff = [s["effort"] for s in part if math.isfinite(s["effort"])]
            out.append({"labels": f"{start + 1}-{start + len(part)}",
                        "effort_mean": round(float(np.mean(eff)), 4) if eff else None,
                        "dsc_mean": round(float(np.mean([s["dsc"] for s in part])), 4),
                        "methods": dict(sorted({m: sum(s["prelabel"] == m for s in part)
                                                for m in {s["prelabel"] for s in part}}.items()))})
        return out

    def to_dict(self) -> dict[str, Any]:
        eff = [s["effort"] for s in self.samples if math.isfinite(s["effort"])]
        return {"experiment": "simulate", "settings": self.settings, "samples": self.samples,
                "retrains": self.retrains, "blocks": self.blocks(),
                "effort_mean": round(float(np.mean(eff)), 4) if eff else None,
                "effort_total": round(float(np.sum(eff)), 4) if eff else None,
                "warnings": sum(bool(s["warning"]) for s in self.samples),
                "seconds": round(self.seconds, 1)}


def _truth_index(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            out.setdefault(p.stem, p)
            out.setdefault(p.name, p)
    return out


def _working_copy(project_dir: Path, into: Path):
    """A copy of the project in ``into``: same samples (sequences, frames, names), settings, labels and
    model; image files stay where they are (the copy's sample paths point at them absolutely)."""
    from labelassist.project import Project

    # The database is copied through SQLite's backup API, never as files: a plain copy of a
    # project that is open elsewhere is torn (database and -wal at different moments), and plain
    # file I/O on it would drop this process's SQLite locks (store.py, "the POSIX lock rule").
    shutil.copytree(project_dir, into, ignore=shutil.ignore_patterns(
        ".lock", "backups", "cache", "labels.sqlite", "labels.sqlite-*", "labels.sqlite.*"))
    src = Project.open(project_dir)
    try:
        where = {s.id: src.resolve(s.path).as_posix() for s in src.store.samples()}
        dest = sqlite3.connect(into / "labels.sqlite")
        try:
            src.store.conn.backup(dest)
        finally:
            dest.close()
    finally:
        src.close()
    work = Project.open(into)
    work.store.set_sample_paths(where)
    return work


def simulate(project: str | Path, ground_truth: str | Path, retrain_every: int = 10, epochs: int = 12,
             limit: int | None = None, scale: float = 0.25, in_place: bool = False,
             work_dir: str | Path | None = None, net: NetConfig | None = None, seed: int = 0,
             progress: Progress | None = None) -> SimulationResult:
    """A simulated annotator walking the labelling session of ``project`` (see the module notes).

    Parameters
    ----------
    project : path of a project folder
        Its images and settings are used. With ``in_place=False`` (default) the walk runs on a
        fresh copy (same images, same settings) in ``work_dir`` or a temporary folder, so the
        project itself is not changed; ``in_place=True`` saves the labels into it.
    ground_truth : folder of masks, matched to the samples by file name (stem).
    retrain_every : int
        Retrain the project's U-Net on all labels so far after every ``retrain_every`` saved
        labels, export it to ONNX with its card and install it as the project's model
        (0 = never).
    epochs, scale, net
        Training schedule and network (see :class:`NetConfig`).
    limit : int, optional
        Stop after this many samples (default: all).
    """
    from labelassist import images as images_mod
    from labelassist.project import Project
    from labelassist.session import Session
    from labelassist.training import core
    from labelassist.workflow.metrics import correction_effort, dice

    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    cfg = replace(net or NetConfig(), epochs=int(epochs), scale=float(scale))
    project_dir, truth_dir = Path(project), Path(ground_truth)
    if not truth_dir.is_dir():
        raise LabelAssistError(f"the ground-truth folder {truth_dir} does not exist")
    truth_files = _truth_index(truth_dir)
    tmp = None
    if in_place:
        proj = Project.open(project_dir)
    else:
        if work_dir is None:
            tmp = tempfile.mkdtemp(prefix="labelassist-simulate-")
            work_dir = Path(tmp) / "project"
        proj = _working_copy(project_dir, Path(work_dir))
    result = SimulationResult(settings={
        "project": str(project_dir), "ground_truth": str(truth_dir), "retrain_every": int(retrain_every),
        "limit": limit, "in_place": in_place, "network": asdict(cfg), "device": _device(cfg),
        "selector": proj.settings["selector"]["weights"], "prelabel": proj.settings["prelabel"]["method"]})
    model_dir = Path(tempfile.mkdtemp(prefix="labelassist-model-"))
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # sample id -> network input, mask
    try:
        session = Session(proj, author="simulated annotator", background=False, own=True)
        try:
            total = len(proj.store.samples())
            target = total if limit is None else min(int(limit), total)
            while len(result.samples) < target:
                assisted = session.next()
                if assisted is None:
                    break
                sample = assisted.sample
                path = truth_files.get(Path(sample.name).stem) or truth_files.get(sample.name)
                if path is None:
                    raise LabelAssistError(f"no ground-truth mask for {sample.name} in {truth_dir}")
                truth = images_mod.read_mask(path)
                if truth.shape != (sample.height, sample.width):
                    raise LabelAssistError(f"the ground truth of {sample.name} is {truth.shape[1]}x{truth.shape[0]}, "
                                           f"the image {sample.width}x{sample.height}")
                start = assisted.start_mask
                method = assisted.prelabel.method if assisted.prelabel is not None else None
                effort = correction_effort(start, truth)
                # The corrections turn the start mask into the truth; then inspection and post-processing.
                submission = session.submit(sample.id, truth)
                accepted = []
                for s in submission.suggestions:  # accept a suggestion only when it does not move away from truth
                    if int(np.count_nonzero(s.mask ^ truth)) == 0:
                        accepted.append(s.step)
                changed = int(np.count_nonzero(start ^ truth))
                session.save(sample.id, truth, seconds=0.0, strokes=1 if changed else 0, source="simulated",
                             report=submission.report)
                report = submission.report
                entry = {
                    "index": len(result.samples) + 1, "name": sample.name, "sequence": sample.sequence,
                    "prelabel": method or "none", "dsc": round(dice(start, truth), 4),
                    "effort": round(effort, 4) if math.isfinite(effort) else effort,
                    "pixels_changed": changed, "inspection_score": None if report is None else round(report.score, 4),
                    "warning": bool(report is not None and report.warning),
                    "failed_checks": [] if report is None else [c.message for c in report.failed],
                    "suggestions": [{"step": s.step, "added": s.change.added, "removed": s.change.removed}
                                    for s in submission.suggestions],
                    "accepted_suggestions": accepted,
                    "model": None if session.model() is None else session.model().card.version,
                }
                result.samples.append(entry)
                cache[sample.id] = (
                    core.resize_for_model(core.percentile_normalise(assisted.image), cfg.scale), truth)
                say(f"{entry['index']}/{target} {sample.name}: {entry['prelabel']} DSC {entry['dsc']:.3f} "
                    f"effort {entry['effort']:.3f}")
                n = len(result.samples)
                if retrain_every and n % int(retrain_every) == 0 and n < target:
                    data = [(x, core.resize_mask(t, x.shape)) for x, t in cache.values()]
                    net_, info = _train_net(data, cfg, seed)
                    version = f"1.0.{n}"
                    tc = core.TrainConfig(name="simulated-unet", version=version, scale=cfg.scale, base=cfg.base,
                                          depth=cfg.depth, patch=cfg.patch, batch=cfg.batch, epochs=cfg.epochs,
                                          patches_per_image=cfg.patches_per_image, lr=cfg.lr, seed=seed,
                                          threshold=cfg.threshold,
                                          description=f"retrained by the simulated annotator on {n} labels")
                    names = [(proj.store.sample(sid).name,) * 2 for sid in cache]
                    card = core.make_card(tc, net_, names, [], [], info)
                    onnx_path = core.export_onnx(net_, model_dir / f"model_{n}.onnx", multiple=2 ** cfg.depth)
                    core.write_card(card, model_dir / f"model_{n}.json")
                    # As the Admin screen does: install, and the next sample re-measures the pre-labels.
                    session.import_model(onnx_path, card)
                    result.retrains.append({"after_labels": n, "seconds": round(info["train_seconds"], 1),
                                            "final_loss": round(info["losses"][-1], 4), "version": version})
                    say(f"retrained on {n} labels in {info['train_seconds']:.0f} s")
        finally:
            session.close()
    finally:
        proj.close()
        shutil.rmtree(model_dir, ignore_errors=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    result.seconds = time.perf_counter() - t0
    return result


def plot_simulation(result: SimulationResult | dict, path: str | Path, title: str = "") -> Path:
    """Correction effort per sample (dots coloured by pre-label method), its running mean over the
    retrain block and vertical lines at each retraining, as a PNG drawn with OpenCV."""
    import cv2

    d = result.to_dict() if isinstance(result, SimulationResult) else result
    samples = d["samples"]
    width, height, left, top, bottom, right = 760, 420, 70, 50, 70, 20
    img = _canvas(width, height)
    font = cv2.FONT_HERSHEY_SIMPLEX
    ymax = 1.5
    plot_h, plot_w = height - top - bottom, width - left - right
    n = max(1, len(samples))

    def y_of(v: float) -> int:
        v = min(max(v if math.isfinite(v) else ymax, 0.0), ymax)
        return int(round(top + (1.0 - v / ymax) * plot_h))

    def x_of(i: float) -> int:
        return int(round(left + (i - 0.5) / n * plot_w))

    for tick in np.arange(0, ymax + 1e-9, 0.25):
        y = y_of(tick)
        cv2.line(img, (left, y), (width - right, y), (225, 225, 225), 1)
        cv2.putText(img, f"{tick:.2f}", (left - 50, y + 5), font, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, "correction effort (0 = perfect pre-label, 1 = from scratch)", (10, top - 20), font, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    if title:
        cv2.putText(img, title, (left, height - 12), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for r in d.get("retrains", []):
        x = x_of(r["after_labels"] + 0.5)
        cv2.line(img, (x, top), (x, top + plot_h), (150, 200, 150), 1)
    colours = {"onnx": (200, 110, 30), "previous": (40, 150, 40), "otsu": (40, 40, 200), "none": (120, 120, 120)}
    for s in samples:
        cv2.circle(img, (x_of(s["index"]), y_of(s["effort"])), 3, colours.get(s["prelabel"], (160, 60, 160)), -1)
    size = int(d["settings"].get("retrain_every") or 10)
    for b, start in enumerate(range(0, len(samples), size)):
        part = [s["effort"] for s in samples[start:start + size] if math.isfinite(s["effort"])]
        if part:
            y = y_of(float(np.mean(part)))
            cv2.line(img, (x_of(start + 0.5), y), (x_of(start + len(samples[start:start + size]) + 0.5), y),
                     (0, 0, 0), 2)
    x = left
    for name, c in colours.items():
        cv2.circle(img, (x + 5, height - bottom + 30), 4, c, -1)
        cv2.putText(img, name, (x + 14, height - bottom + 35), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += 110
    cv2.putText(img, "black: block mean; green lines: retraining", (x, height - bottom + 35), font, 0.45,
                (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"sample 1 .. {len(samples)} in labelling order", (left, height - bottom + 12), font, 0.4,
                (80, 80, 80), 1, cv2.LINE_AA)
    return _write_png(img, path)
