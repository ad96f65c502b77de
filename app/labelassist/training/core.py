"""Self-contained U-Net training: PyTorch U-Net -> ONNX + model card (+ static int8 QDQ).

This one file is the whole training code. It is used twice:

* ``models/build.py`` imports it to train the models shipped in ``models/``;
* ``labelassist.training.job.export_job`` copies it as ``train.py`` into a
  training-job zip, which a data scientist runs on a GPU machine without the
  kiosk package installed::

      python train.py JOB_FOLDER --out OUT_FOLDER [--epochs 60] [--int8]
      torchrun --nproc_per_node 4 train.py JOB_FOLDER --out OUT_FOLDER   # several GPUs

It therefore imports nothing from ``labelassist``: only numpy, OpenCV, torch
(training), onnx (export) and onnxruntime (int8 quantisation and the ONNX
check). The pixel normalisation :func:`percentile_normalise` must stay equal to
``labelassist.models.percentile_normalise`` (a test compares them).

Model input: ``(N, 1, H, W)`` float32, the grey image resized by ``scale`` and
mapped to [0, 1] by its own 0.5/99.5 percentile window; ``H`` and ``W`` are
free (multiples of 2**depth). Output: ``(N, 1, H, W)`` foreground probability
(the sigmoid is part of the exported graph).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field

# This file also runs alone (train.py in a training job): keep ONNX Runtime's telemetry
# upload off there too, as the package does.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

CARD_FORMAT = "labelassist-model-card/1"
CORE_VERSION = "1.0"


# --------------------------------------------------------------------------- pixels (numpy only)


def to_grey(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 from grey or RGB(A) input of any numeric dtype (BT.601 luma for colour)."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[:, :, :3].astype(np.float32)
        image = image[:, :, 0] * 0.299 + image[:, :, 1] * 0.587 + image[:, :, 2] * 0.114
    if image.ndim != 2:
        raise ValueError(f"expected a grey (H, W) or RGB (H, W, 3) image, got shape {image.shape}")
    return image.astype(np.float32, copy=False)


def percentile_normalise(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Grey float32 in [0, 1]: the image's own ``low``/``high`` percentiles map to 0 and 1.

    Non-finite pixels become 0; a flat image becomes all 0.
    """
    grey = to_grey(image)
    finite = np.isfinite(grey)
    if not finite.all():
        grey = np.where(finite, grey, np.float32(np.nan))
        if not finite.any():
            return np.zeros(grey.shape, np.float32)
        lo, hi = np.nanpercentile(grey, [low, high])
    else:
        sample = grey if grey.size <= 1 << 20 else grey.ravel()[:: grey.size // (1 << 20) + 1]
        lo, hi = np.percentile(sample, [low, high])
    if not hi > lo:
        return np.zeros(grey.shape, np.float32)
    out = (grey - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    out = np.nan_to_num(out, nan=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def read_any(path: str | os.PathLike) -> np.ndarray:
    """Pixels of a PNG/JPEG/BMP/TIFF file as stored (uint8, uint16 or float32); RGB order."""
    path = str(path)
    arr = None
    if path.lower().endswith((".tif", ".tiff")):
        try:
            import tifffile

            arr = tifffile.imread(path)
        except ImportError:
            arr = None
    if arr is None:
        arr = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise OSError(f"{path} could not be read")
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr[:, :, :3], cv2.COLOR_BGR2RGB)
    arr = np.asarray(arr)
    while arr.ndim > 3 or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        arr = arr[0]
    return arr


def read_mask_any(path: str | os.PathLike) -> np.ndarray:
    arr = read_any(path)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    return arr > 0


def resize_for_model(grey01: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return grey01
    h, w = grey01.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(grey01, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask
    m = cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return m >= 0.5


def dsc(truth: np.ndarray, pred: np.ndarray) -> float:
    """Dice-Sørensen coefficient 2|y ∩ ŷ| / (|y| + |ŷ|); 1 when both are empty."""
    truth, pred = np.asarray(truth, bool), np.asarray(pred, bool)
    total = int(truth.sum()) + int(pred.sum())
    return 1.0 if total == 0 else 2.0 * int((truth & pred).sum()) / total


# --------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Everything that decides a training run (stored in the model card)."""

    name: str = "unet"
    version: str = "1.0.0"
    scale: float = 0.5          # images are resized by this factor before the network
    base: int = 16              # channels of the first level; doubles per level
    depth: int = 4              # number of poolings (input sides must be multiples of 2**depth)
    patch: int = 256            # training patch side, in network pixels
    batch: int = 8
    epochs: int = 40
    patches_per_image: int = 8  # random patches drawn from each training image per epoch
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threshold: float = 0.5
    device: str = "auto"        # auto | cpu | cuda
    threads: int = 0            # CPU threads for torch (0 = torch default)
    time_limit_s: float = 0.0   # stop early after this many seconds (0 = no limit)
    licence: str = "MIT"
    description: str = ""
    training_data: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- the network


def build_unet(base: int = 16, depth: int = 4, in_channels: int = 1, batch_norm: bool = True):
    """A plain U-Net (conv-BN-ReLU x2 per level, max-pool down, transposed conv up). ``batch_norm=False``:
    conv(bias)-ReLU as exported (BN folded), an identity in each BN's place keeping the module names."""
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        def conv_norm(c: int) -> list:
            norm = nn.BatchNorm2d(cout) if batch_norm else nn.Identity()
            return [nn.Conv2d(c, cout, 3, padding=1, bias=not batch_norm), norm, nn.ReLU(inplace=True)]
        return nn.Sequential(*conv_norm(cin), *conv_norm(cout))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            chans = [base * 2 ** i for i in range(depth + 1)]
            self.down = nn.ModuleList()
            cin = in_channels
            for c in chans[:-1]:
                self.down.append(block(cin, c))
                cin = c
            self.bottom = block(chans[-2], chans[-1])
            self.up = nn.ModuleList()
            self.dec = nn.ModuleList()
            for c in reversed(chans[:-1]):
                self.up.append(nn.ConvTranspose2d(c * 2, c, 2, stride=2))
                self.dec.append(block(c * 2, c))
            self.head = nn.Conv2d(chans[0], 1, 1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):  # logits
            skips = []
            for d in self.down:
                x = d(x)
                skips.append(x)
                x = self.pool(x)
            x = self.bottom(x)
            for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
                x = dec(torch.cat([up(x), skip], dim=1))
            return self.head(x)

    return UNet()


def _probability_model(net):
    import torch

    class Prob(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.sigmoid(self.net(x))

    return Prob(net).eval()


def count_parameters(net) -> int:
    return int(sum(p.numel() for p in net.parameters()))


# --------------------------------------------------------------------------- data


def load_pairs(pairs: Sequence[tuple[str, str]], scale: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Normalised, rescaled (image, mask) arrays for the network."""
    out = []
    for image_path, mask_path in pairs:
        image = read_any(image_path)
        mask = read_mask_any(mask_path)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} but {image_path} is "
                             f"{image.shape[1]}x{image.shape[0]}")
        x = resize_for_model(percentile_normalise(image), scale)
        out.append((x, resize_mask(mask, x.shape)))
    return out


def sample_patches(data, n: int, patch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random patches (reflect-padded where an image is smaller) with flips, 90° turns and
    brightness/contrast jitter. Returns (n, 1, patch, patch) float32 images and masks."""
    xs = np.empty((n, 1, patch, patch), np.float32)
    ys = np.empty((n, 1, patch, patch), np.float32)
    for k in range(n):
        x, y = data[rng.integers(len(data))]
        h, w = x.shape
        ph, pw = max(0, patch - h), max(0, patch - w)
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw)), mode="reflect")
            y = np.pad(y, ((0, ph), (0, pw)), mode="reflect")
            h, w = x.shape
        i, j = rng.integers(h - patch + 1), rng.integers(w - patch + 1)
        px, py = x[i:i + patch, j:j + patch], y[i:i + patch, j:j + patch]
        t = rng.integers(8)
        if t & 1:
            px, py = px[:, ::-1], py[:, ::-1]
        if t & 2:
            px, py = px[::-1], py[::-1]
        if t & 4:
            px, py = px.T, py.T
        gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1)
        xs[k, 0] = np.clip(px * gain + bias, 0.0, 1.0)
        ys[k, 0] = py
    return xs, ys


# --------------------------------------------------------------------------- inference (torch)


def predict_torch(net, x01: np.ndarray, device="cpu", multiple: int = 16) -> np.ndarray:
    """Probability map of one network-scale image (whole image, reflect-padded to ``multiple``)."""
    import torch

    h, w = x01.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    xp = np.pad(x01, ((0, ph), (0, pw)), mode="reflect") if (ph or pw) else x01
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(xp))[None, None].to(device)
        p = torch.sigmoid(net(t))[0, 0].cpu().numpy()
    return p[:h, :w]


def evaluate_torch(net, pairs, scale: float, threshold: float, device="cpu", multiple: int = 16) -> list[float]:
    """DSC per image at full resolution (probability resized back to the image)."""
    out = []
    net.eval()
    for image_path, mask_path in pairs:
        image = read_any(image_path)
        truth = read_mask_any(mask_path)
        x = resize_for_model(percentile_normalise(image), scale)
        p = predict_torch(net, x, device, multiple)
        p = cv2.resize(p, (truth.shape[1], truth.shape[0]), interpolation=cv2.INTER_LINEAR)
        out.append(dsc(truth, p > threshold))
    return out


# --------------------------------------------------------------------------- training


def train_epoch(model, opt, sched, data, batch: int, patch: int, rng: np.random.Generator, device,
                steps: int, step: int, total: int) -> tuple[float, int]:
    """``steps`` optimiser steps on random patches with BCE + soft Dice; returns (mean loss, step count).

    The one-cycle schedule ``sched`` advances with every step but the last of ``total``.
    """
    import torch
    import torch.nn.functional as F

    model.train()
    running = 0.0
    for _ in range(steps):
        xs, ys = sample_patches(data, batch, patch, rng)
        x, y = torch.from_numpy(xs).to(device), torch.from_numpy(ys).to(device)
        logits = model(x)
        prob = torch.sigmoid(logits)
        inter = (prob * y).sum(dim=(1, 2, 3))
        dice = 1 - (2 * inter + 1) / (prob.sum(dim=(1, 2, 3)) + y.sum(dim=(1, 2, 3)) + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y) + dice.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step < total - 1:
            sched.step()
        step += 1
        running += float(loss.detach())
    return running / steps, step


def _distributed() -> tuple[int, int, int, bool]:
    """(rank, world size, local rank, launched by torchrun); (0, 1, 0, False) for a plain ``python``.
    Under torchrun the process group and DistributedDataParallel are used even for one process, so
    ``torchrun --nproc_per_node 1`` on a one-GPU machine runs (and proves) the code path of several GPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launched = "LOCAL_RANK" in os.environ and "MASTER_ADDR" in os.environ
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")), launched


def train(config: TrainConfig, train_pairs, val_pairs=(), out_dir: str | os.PathLike | None = None,
          log=print) -> dict[str, Any]:
    """Train a U-Net; export ``model.onnx`` + ``model.json`` (card) into ``out_dir`` when given.

    Returns a dict with the network (``net``, on the CPU), the card, losses and
    timings. Uses CUDA when present (``device='auto'``), several GPUs under torchrun.
    """
    import torch

    rank, world, local_rank, distributed = _distributed()
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if config.device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    else:
        device = config.device
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if config.threads:
        torch.set_num_threads(config.threads)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, rank])

    t0 = time.perf_counter()
    data = load_pairs(train_pairs, config.scale)
    if not data:
        raise ValueError("no training images")
    net = build_unet(config.base, config.depth).to(device)
    model = net
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if device != "cpu" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(data) * config.patches_per_image / (config.batch * world)))
    total = steps_per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=max(total, 2), pct_start=0.1)
    losses = []
    step = 0
    stopped_early = False
    for epoch in range(config.epochs):
        epoch_loss, step = train_epoch(model, opt, sched, data, config.batch, config.patch, rng, device,
                                       steps_per_epoch, step, total)
        losses.append(epoch_loss)
        elapsed = time.perf_counter() - t0
        if rank == 0:
            log(f"epoch {epoch + 1}/{config.epochs} loss {losses[-1]:.4f} ({elapsed:.0f} s)")
        if config.time_limit_s and elapsed > config.time_limit_s:
            stopped_early = epoch + 1 < config.epochs
            if rank == 0 and stopped_early:
                log(f"time limit of {config.time_limit_s:.0f} s reached after epoch {epoch + 1}")
            break
    train_seconds = time.perf_counter() - t0
    net = net.cpu().eval()
    result: dict[str, Any] = {"net": net, "losses": losses, "train_seconds": train_seconds,
                              "epochs_run": len(losses), "device": device, "world_size": world,
                              "distributed": distributed}
    if rank == 0:
        val = evaluate_torch(net, val_pairs, config.scale, config.threshold) if val_pairs else []
        card = make_card(config, net, train_pairs, val_pairs, val, result)
        result["card"] = card
        result["validation_dsc"] = val
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            export_onnx(net, out / "model.onnx", multiple=2 ** config.depth)
            write_card(card, out / "model.json")
            result["onnx"] = out / "model.onnx"
    if distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return result


def make_card(config: TrainConfig, net, train_pairs, val_pairs, val_dsc, result) -> dict[str, Any]:
    multiple = 2 ** config.depth
    metrics: dict[str, Any] = {}
    if val_dsc:
        metrics["validation"] = {"dsc_mean": round(float(np.mean(val_dsc)), 4), "images": len(val_dsc),
                                 "dsc_per_image": [round(float(v), 4) for v in val_dsc],
                                 "evaluated_with": "PyTorch, full image, fp32"}
    data = {"train_images": [Path(p[0]).name for p in train_pairs],
            "validation_images": [Path(p[0]).name for p in val_pairs]}
    data.update(config.training_data)
    return {
        "format": CARD_FORMAT,
        "name": config.name,
        "version": config.version,
        "description": config.description,
        "task": "binary_segmentation",
        "precision": "fp32",
        "input": {"name": "image", "layout": "NCHW", "channels": 1, "size": "dynamic", "multiple": multiple,
                  "dtype": "float32"},
        "output": {"name": "probability", "kind": "probability", "channels": 1},
        "normalisation": {"kind": "percentile", "low": 0.5, "high": 99.5},
        "scale": config.scale,
        "threshold": config.threshold,
        "tiling": {"tile": 512, "overlap": 64},
        "architecture": {"type": "unet", "base": config.base, "depth": config.depth,
                         "parameters": count_parameters(net)},
        "training": {"config": {k: v for k, v in asdict(config).items() if k not in ("training_data",)},
                     "epochs_run": result["epochs_run"], "seconds": round(result["train_seconds"], 1),
                     "device": result["device"], "world_size": result["world_size"],
                     "distributed_data_parallel": result.get("distributed", False),
                     "final_loss": round(result["losses"][-1], 4) if result["losses"] else None,
                     "code": f"labelassist.training.core {CORE_VERSION}"},
        "training_data": data,
        "metrics": metrics,
        "licence": config.licence,
    }


def write_card(card: dict[str, Any], path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- export


def export_onnx(net, path: str | os.PathLike, multiple: int = 16, opset: int = 17) -> Path:
    """Export ``net`` (logits) with a sigmoid as ``image (N,1,H,W) -> probability (N,1,H,W)``,
    height and width dynamic. Checked with onnx.checker and against PyTorch on one input."""
    import onnx
    import torch

    path = Path(path)
    model = _probability_model(net.cpu().eval())
    dummy = torch.rand(1, 1, multiple * 8, multiple * 8)
    torch.onnx.export(
        model, (dummy,), str(path), input_names=["image"], output_names=["probability"],
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                      "probability": {0: "batch", 2: "height", 3: "width"}},
        opset_version=opset, do_constant_folding=True, dynamo=False,
    )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    try:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = torch.rand(1, 1, multiple * 6, multiple * 5)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"image": x.numpy()})[0]
        err = float(np.abs(ref - got).max())
        if err > 1e-3:
            raise RuntimeError(f"the exported ONNX differs from PyTorch by {err:g}")
    except ImportError:
        pass
    return path


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, calibration: Sequence[np.ndarray],
                  per_channel: bool = True) -> Path:
    """Static int8 QDQ quantisation (per-channel weights, uint8 activations, MinMax calibration).

    ``calibration`` holds network-ready (H, W) float32 arrays in [0, 1] (normalised,
    rescaled training images); their sides are cropped to multiples of 16.
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"image": a[None, None, : a.shape[0] // 16 * 16, : a.shape[1] // 16 * 16]
                                .astype(np.float32)} for a in calibration])

        def get_next(self):
            return next(self.items, None)

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    pre = out_path.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        src = pre
    except Exception:  # noqa: BLE001 - pre-processing is an optimisation only
        src = fp32_path
    quantize_static(str(src), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    pre.unlink(missing_ok=True)
    return out_path


def int8_card(card: dict[str, Any]) -> dict[str, Any]:
    card = json.loads(json.dumps(card))
    card["precision"] = "int8"
    card["quantisation"] = {"method": "onnxruntime static QDQ", "weights": "int8 per-channel",
                            "activations": "uint8", "calibration": "MinMax on the training images"}
    card["metrics"] = {k: v for k, v in card.get("metrics", {}).items() if k != "validation"}
    return card


# --------------------------------------------------------------------------- training jobs


def job_pairs(job_dir: str | os.PathLike) -> tuple[list[tuple[str, str]], list[tuple[str, str]], dict]:
    """(train pairs, validation pairs, job.json) of an unpacked training job."""
    job_dir = Path(job_dir)
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    split = json.loads((job_dir / "split.json").read_text(encoding="utf-8"))
    items = {it["id"]: it for it in job["items"]}

    def pairs(ids):
        return [(str(job_dir / items[i]["image"]), str(job_dir / items[i]["mask"])) for i in ids]

    return pairs(split["train"]), pairs(split["validation"]), job


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the pre-label U-Net of a Label Assistant training job.")
    parser.add_argument("job", help="the unpacked job folder (with job.json and split.json)")
    parser.add_argument("--out", required=True, help="folder for model.onnx and model.json")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--patch", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--base", type=int, default=None)
    parser.add_argument("--scale", type=float, default=None)
    parser.add_argument("--patches-per-image", type=int, default=None)
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--int8", action="store_true", help="also write model.int8.onnx (static QDQ)")
    args = parser.parse_args(argv)
    train_pairs, val_pairs, job = job_pairs(args.job)
    cfg = dict(job.get("config", {}))
    for key in ("epochs", "patch", "batch", "base", "scale", "patches_per_image", "seed"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg["device"], cfg["threads"] = args.device, args.threads
    cfg.setdefault("name", job.get("name", "unet"))
    cfg["training_data"] = {"project": job.get("project", ""), "job_created": job.get("created", ""),
                            "preprocess_pipeline": job.get("preprocess", [])}
    config = TrainConfig(**{k: v for k, v in cfg.items() if k in TrainConfig.__dataclass_fields__})
    result = train(config, train_pairs, val_pairs, out_dir=args.out)
    if "card" in result and args.int8:
        calib = [x for x, _ in load_pairs(train_pairs[:16], config.scale)]
        out = Path(args.out)
        quantize_int8(out / "model.onnx", out / "model.int8.onnx", calib)
        write_card(int8_card(result["card"]), out / "model.int8.json")
    if "card" in result:
        print(json.dumps({"onnx": str(Path(args.out) / "model.onnx"),
                          "validation": result["card"]["metrics"].get("validation", {}).get("dsc_mean"),
                          "seconds": round(result["train_seconds"], 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
