"""The selector comparison on real data (paper Table 1): ``labelassist evaluate selector``.

:func:`evaluate_selector` trains the small U-Net (:mod:`.experiment_net`) on the ``budget``
samples each selector strategy picks from a training pool, measures the DSC on a test split
that is fixed per seed, and repeats over seeds; a baseline is trained on the whole training
split. :func:`labelassist.research.plots.plot_selector` draws the result.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from labelassist.errors import LabelAssistError
from labelassist.research.experiment_net import NetConfig, Progress, device_for, held_out_dsc, probability, train_net

__all__ = ["DEFAULT_STRATEGIES", "PoolItem", "SelectorResult", "evaluate_selector", "load_folder_pool"]

DEFAULT_STRATEGIES = ("sequential", "random", "sequence_aware", "diversity", "uncertainty")


@dataclass
class PoolItem:
    """One labelled image of the pool, loaded once at network scale and at full resolution."""

    name: str
    group: str  # the (images, masks) pair it came from: reported, never given to the selector
    sequence: str  # what images.discover() found (folder / name prefix)
    frame: int
    x: np.ndarray  # network input at cfg.scale
    y: np.ndarray  # bool mask at network scale
    truth: np.ndarray  # bool mask at full resolution
    features: np.ndarray  # selector features (features.extract_features)


def load_folder_pool(sources: Sequence[tuple[str | Path, str | Path]], scale: float,
                     limit: int | None = None, progress: Progress | None = None) -> list[PoolItem]:
    """Every image with a mask in the (images, masks) folder pairs, in folder then sequence order.

    ``limit`` keeps the first ``limit`` samples of each pair (tests).
    """
    from labelassist import images
    from labelassist.research.folder_eval import folder_samples
    from labelassist.training import core
    from labelassist.workflow.features import extract_features

    items: list[PoolItem] = []
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
            items.append(PoolItem(name, group, f"{group}/{seq}", int(frame), x, y, np.asarray(truth, bool),
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


def _pick(strategy: str, pool, budget: int, seed: int, train: list[PoolItem], cfg: NetConfig,
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
        net, info = train_net([(train[i].x, train[i].y) for i in picked], cfg, seed)
        ent = np.full(len(pool), np.nan)
        for i in np.flatnonzero(~pool.labelled):
            ent[i] = selector.mean_entropy(probability(net, train[i].x, cfg))
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

    def per_set(test: list[PoolItem], d: list[float]) -> dict[str, float]:
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
            net_, info = train_net([(it.x, it.y) for it in chosen], cfg, seed)
            d = held_out_dsc(net_, test, cfg)
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
            net_, info = train_net([(it.x, it.y) for it in train], cfg, seed)
            d = held_out_dsc(net_, test, cfg)
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
                "network": asdict(cfg), "device": device_for(cfg),
                "sources": [[str(a), str(b)] for a, b in sources]}
    pool_info = {"samples": len(items), "sets": {g: sum(it.group == g for it in items) for g in groups},
                 "splits": splits}
    return SelectorResult(settings, pool_info, results, base, time.perf_counter() - t0)

