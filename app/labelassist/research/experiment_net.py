"""The small U-Net the experiments train in memory.

The selector experiment and the simulated annotator train the U-Net of
:mod:`labelassist.training.core` on pre-loaded arrays (the same augmentation and loss as
:func:`labelassist.training.core.train`), so an experiment reads every image once. It runs
on the CPU (small images via ``scale``, a small U-Net, few epochs) and uses CUDA when present.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from labelassist.errors import LabelAssistError

__all__ = ["NetConfig", "Progress", "device_for", "held_out_dsc", "probability", "train_net"]

#: What an experiment says as it goes (one line each), e.g. ``print``.
Progress = Callable[[str], None]


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


def device_for(cfg: NetConfig) -> str:
    """The torch device of ``cfg`` (``auto``: CUDA when present, else the CPU)."""
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def train_net(data: list[tuple[np.ndarray, np.ndarray]], cfg: NetConfig, seed: int) -> tuple[Any, dict]:
    """Train a U-Net on network-scale (x in [0, 1], bool mask) pairs; returns (net on CPU, info)."""
    import torch

    from labelassist.training import core

    if not data:
        raise LabelAssistError("no training images")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = device_for(cfg)
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


def probability(net, x: np.ndarray, cfg: NetConfig) -> np.ndarray:
    """The foreground probability of one network-scale image (``net`` on the CPU)."""
    from labelassist.training import core

    return core.predict_torch(net, x, "cpu", 2 ** cfg.depth)


def held_out_dsc(net, items: Sequence[Any], cfg: NetConfig) -> list[float]:
    """DSC per image at full resolution (probability resized back, as training.core.evaluate_torch).

    ``items`` have ``x`` (the network input) and ``truth`` (the full-resolution mask), as
    :class:`labelassist.research.selector_experiment.PoolItem` does.
    """
    import cv2

    from labelassist.training import core

    out = []
    for it in items:
        p = probability(net, it.x, cfg)
        p = cv2.resize(p, (it.truth.shape[1], it.truth.shape[0]), interpolation=cv2.INTER_LINEAR)
        out.append(core.dsc(it.truth, p > cfg.threshold))
    return out

