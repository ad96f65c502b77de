"""Build the shipped pre-label models from the real datasets, reproducibly.

    .venv/bin/pip install -e '.[train]'          # torch==2.13.0 (CPU build) + onnx
    nice .venv/bin/python models/build.py all     # train + quantise + evaluate + cards, every model
    nice .venv/bin/python models/build.py train scratch_assay
    nice .venv/bin/python models/build.py finish scratch_assay   # quantise + held-out DSC + cards

Fixed seeds, fixed splits (listed in each card), fixed number of epochs; work files go
to models/build/ (ignored by git). Each model gets ``<name>.onnx`` (fp32) and
``<name>.int8.onnx`` (static QDQ, per-channel, calibrated on training images), each
with a ``.json`` card beside it; ``models/index.json`` says which variant is the
default (int8 only when its held-out DSC is within 0.5 points of fp32's).
Datasets: ``../shared/datasets`` or ``$LABELASSIST_DATASETS``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATASETS = Path(os.environ.get("LABELASSIST_DATASETS", REPO.parent / "shared" / "datasets"))
WORK = HERE / "build"
INT8_TOLERANCE = 0.005  # DSC, i.e. 0.5 points

SPECS = {
    "scratch_assay": {
        "name": "scratch_assay_unet",
        "images": "scratch_assay/images/{}.png", "masks": "scratch_assay/masks/{}.png",
        "ids": [f"{i:03d}" for i in range(60)],
        # Held out: the last 12 frames, a contiguous block (neighbouring frames are alike,
        # so an interleaved split would flatter the model).
        "test": [f"{i:03d}" for i in range(48, 60)],
        "config": dict(scale=0.5, base=12, depth=4, patch=192, batch=8, epochs=15, patches_per_image=4,
                       lr=3e-3, seed=0, threads=2),
        "description": "Cell-covered area in brightfield scratch (wound-healing) assay frames.",
        "source": "scratch_assay (cecad-imaging/scratch-unet, data/membrane/train; MIT licence text in the "
                  "repository, data licence not stated; research and testing use)",
    },
    "usiigaci_phase": {
        "name": "usiigaci_phase_unet",
        "images": "usiigaci_phase/images/{}.tif", "masks": "usiigaci_phase/masks/{}.png",
        "ids": [f"{i:03d}" for i in range(1, 13)],
        "test": ["010", "011", "012"],
        "config": dict(scale=0.5, base=12, depth=4, patch=192, batch=8, epochs=300, patches_per_image=16,
                       lr=3e-3, seed=0, threads=2),
        "description": "Phase-contrast cells (foreground = any cell), 16-bit input.",
        "source": "usiigaci_phase (oist/Usiigaci, Mask R-CNN/train/set1..12, MIT, OIST)",
    },
}


def _pairs(spec, ids):
    return [(str(DATASETS / spec["images"].format(i)), str(DATASETS / spec["masks"].format(i))) for i in ids]


def splits(key: str):
    spec = SPECS[key]
    train_ids = [i for i in spec["ids"] if i not in spec["test"]]
    return _pairs(spec, train_ids), _pairs(spec, spec["test"])


def train(key: str) -> None:
    sys.path.insert(0, str(REPO / "app"))
    import torch

    from labelassist.training import core

    spec = SPECS[key]
    train_pairs, _ = splits(key)
    config = core.TrainConfig(name=spec["name"], description=spec["description"], **spec["config"],
                              training_data={"dataset": spec["source"],
                                             "held_out_images": [Path(p[0]).name for p in splits(key)[1]]})
    work = WORK / key
    if work.exists():
        shutil.rmtree(work)
    result = core.train(config, train_pairs, (), out_dir=work, log=lambda m: print(m, flush=True))
    torch.save(result["net"].state_dict(), work / "weights.pt")
    print(f"{key}: trained in {result['train_seconds']:.0f} s", flush=True)


def finish(key: str) -> dict:
    """Quantise, measure held-out DSC with ONNX Runtime (the kiosk's code path), write the cards."""
    sys.path.insert(0, str(REPO / "app"))
    import onnxruntime

    from labelassist import models as kiosk_models
    from labelassist.training import core

    spec = SPECS[key]
    train_pairs, test_pairs = splits(key)
    work = WORK / key
    card = json.loads((work / "model.json").read_text())
    scale = card["scale"]
    calib = [x for x, _ in core.load_pairs(train_pairs[:: max(1, len(train_pairs) // 16)], scale)]
    core.quantize_int8(work / "model.onnx", work / "model.int8.onnx", calib)
    name = spec["name"]
    out = {}
    for variant, src in (("fp32", work / "model.onnx"), ("int8", work / "model.int8.onnx")):
        c = card if variant == "fp32" else core.int8_card(card)
        c = json.loads(json.dumps(c))
        c["name"] = name if variant == "fp32" else f"{name}.int8"
        dst = HERE / (f"{name}.onnx" if variant == "fp32" else f"{name}.int8.onnx")
        shutil.copyfile(src, dst)
        core.write_card(c, dst.with_suffix(".json"))
        model = kiosk_models.Model(dst, threads=2)
        scores, times = [], []
        for image_path, mask_path in test_pairs:
            image, truth = core.read_any(image_path), core.read_mask_any(mask_path)
            t = time.perf_counter()
            prob = model.predict(image)
            times.append(time.perf_counter() - t)
            scores.append(core.dsc(truth, prob > c["threshold"]))
        c["metrics"]["held_out"] = {
            "dsc_mean": round(float(np.mean(scores)), 4), "dsc_min": round(float(np.min(scores)), 4),
            "images": [Path(p[0]).name for p in test_pairs], "dsc_per_image": [round(s, 4) for s in scores],
            "evaluated_with": f"labelassist.models.Model (ONNX Runtime {onnxruntime.__version__}, "
                              f"{variant}), full-resolution masks",
            "note": "images not used for training or calibration",
        }
        c["metrics"]["seconds_per_image"] = {"value": round(float(np.median(times)), 3),
                                             "threads": 2, "machine": "build machine (2 shared cores)"}
        c["file_bytes"] = dst.stat().st_size
        core.write_card(c, dst.with_suffix(".json"))
        out[variant] = c["metrics"]["held_out"]["dsc_mean"]
        print(f"{key} {variant}: held-out DSC {out[variant]:.4f}, {np.median(times):.3f} s/image, "
              f"{dst.stat().st_size / 1e6:.2f} MB", flush=True)
    index_path = HERE / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"models": {}}
    default = "int8" if out["int8"] >= out["fp32"] - INT8_TOLERANCE else "fp32"
    index["models"][key] = {
        "fp32": f"{name}.onnx", "int8": f"{name}.int8.onnx", "default": default,
        "held_out_dsc": out, "rule": "int8 is the default only if its held-out DSC is within 0.5 points of fp32",
    }
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["train", "finish", "all"])
    parser.add_argument("datasets", nargs="*", help=f"any of {', '.join(SPECS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [k for k in args.datasets if k not in SPECS]
    if unknown:
        parser.error(f"unknown dataset {unknown[0]!r}; choose from {', '.join(SPECS)}")
    for key in args.datasets or list(SPECS):
        if args.stage in ("train", "all"):
            train(key)
        if args.stage in ("finish", "all"):
            finish(key)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
