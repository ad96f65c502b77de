"""Pre-label model figures: the shipped U-Net with ONNX Runtime fp32 / int8 against PyTorch eager.

Run: ``python bench/bench_models.py [--model scratch_assay] [--threads 2] [--quick]``.
Prints medians of repeated runs; asserts nothing. Rows are
``{name, median_ms, alternative, alternative_ms, ratio}`` (``ratio`` = ours / alternative,
below 1 means ours is faster), as in the other bench scripts.

* ``unet 512x512``: one network input of 1x1x512x512 (whole, no tiling);
* ``unet 2048x2048 tiled``: a 2048x2048 network input in tiles of at most 512 with 64
  overlap (5x5 tiles of 464), blended — PyTorch eager runs the same tiles (no blending);
* ``predict 2048x2048 image``: :meth:`labelassist.models.Model.predict` end to end
  (normalisation, scale 0.5, tiles, resize back) on a real frame resized to 2048x2048.

PyTorch (the ``train`` extra) is optional: without it the eager column is left out.
The eager model has the card's architecture and, when ``models/build/<name>/weights.pt``
exists (after ``models/build.py``), the shipped weights; speed does not depend on them.
Box-prompt segmenter: LiteMedSAM encoder per image and decoder per box, when
``models/build/litemedsam/`` holds the export of ``models/build_litemedsam.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from timing import median_ms  # bench/timing.py (bench/ is on sys.path when run)
from labelassist import models
from labelassist.images import read_image

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"


_median_ms = median_ms


def _torch_net(card: models.ModelCard, name: str, threads: int):
    try:
        import torch
    except ImportError:
        return None
    sys.path.insert(0, str(REPO / "app"))
    from labelassist.training.core import build_unet

    torch.set_num_threads(threads)
    arch = card.raw["architecture"]
    net = build_unet(arch["base"], arch["depth"]).eval()
    weights = REPO / "models" / "build" / name / "weights.pt"
    if weights.is_file():
        net.load_state_dict(torch.load(weights, map_location="cpu"))
    return net


def _tiles(x: np.ndarray, tile: int = 512, overlap: int = 64, multiple: int = 16):
    """The tiles Model.predict_normalised runs (same sizes and origins)."""
    from labelassist.models.tiling import _starts, _tile_length

    th, tw = _tile_length(x.shape[0], tile, overlap, multiple), _tile_length(x.shape[1], tile, overlap, multiple)
    return [x[y:y + th, x0:x0 + tw] for y in _starts(x.shape[0], th, overlap)
            for x0 in _starts(x.shape[1], tw, overlap)]


def run_model(name: str, threads: int, quick: bool) -> list[dict]:
    """A shipped U-Net at 512², tiled at 2048² and end to end, fp32 and int8, against PyTorch eager
    (``quick``: 512² only, fewer repeats)."""
    entry = models.shipped_models()[name]
    fp32 = models.load_model(models.SHIPPED_DIR / entry["fp32"], threads=threads)
    int8 = models.load_model(models.SHIPPED_DIR / entry["int8"], threads=threads)
    net = _torch_net(fp32.card, name, threads)
    rng = np.random.default_rng(0)
    src = read_image(sorted((DATASETS / name / "images").iterdir())[0])
    x512 = cv2.resize(models.normalise(src, fp32.card), (512, 512), interpolation=cv2.INTER_AREA)
    x2048 = cv2.resize(models.normalise(src, fp32.card), (2048, 2048), interpolation=cv2.INTER_LINEAR)
    image2048 = cv2.resize(src, (2048, 2048), interpolation=cv2.INTER_LINEAR)
    del rng
    r512, r2048 = (3, 1) if quick else (10, 3)
    rows = []

    def eager(arrays):
        import torch

        def fn():
            with torch.no_grad():
                for a in arrays:
                    torch.sigmoid(net(torch.from_numpy(np.ascontiguousarray(a))[None, None]))
        return fn

    cases = [
        ("unet 512x512", lambda m: (lambda: m.predict_normalised(x512)), [x512], r512),
        (f"unet 2048x2048 tiled ({len(_tiles(x2048))} tiles of {_tiles(x2048)[0].shape[0]})", lambda m: (lambda: m.predict_normalised(x2048, tile=512)),
         _tiles(x2048), r2048),
        ("predict 2048x2048 image (end to end, scale 0.5)", lambda m: (lambda: m.predict(image2048)),
         None, r2048),
    ]
    if quick:
        cases = cases[:1]
    for label, make, eager_inputs, repeat in cases:
        eager_ms = _median_ms(eager(eager_inputs), repeat) if (net is not None and eager_inputs) else None
        for variant, model in (("fp32", fp32), ("int8", int8)):
            ms = _median_ms(make(model), repeat)
            rows.append({"name": f"{name} {label} ORT {variant}", "median_ms": ms,
                         "alternative": "PyTorch eager fp32" if eager_ms else None, "alternative_ms": eager_ms,
                         "ratio": ms / eager_ms if eager_ms else None})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="shipped model name (default: all in models/index.json)")
    parser.add_argument("--threads", type=int, default=models.physical_cores())
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    names = args.model or sorted(models.shipped_models())
    if not names:
        print("no shipped models (run models/build.py)")
        return 1
    import onnxruntime

    print(f"threads={args.threads}, onnxruntime {onnxruntime.__version__}")
    for name in names:
        arch = models.shipped_model(name, "fp32", threads=args.threads).card.raw["architecture"]
        print(f"{name}: U-Net base {arch['base']} depth {arch['depth']}, {arch['parameters'] / 1e6:.2f} M parameters")
        for row in run_model(name, args.threads, args.quick):
            alt = (f"  vs {row['alternative']} {row['alternative_ms']:8.1f} ms  ratio {row['ratio']:.2f}"
                   if row["alternative_ms"] else "")
            print(f"  {row['name']:<70} {row['median_ms']:8.1f} ms{alt}")
    sam = REPO / "models" / "build" / "litemedsam"
    if (sam / "litemedsam_encoder.onnx").is_file():
        for row in bench_box_prompt(sam, args.threads, args.quick):
            print(f"  {row['name']:<70} {row['median_ms']:8.1f} ms")
    else:
        print("box-prompt segmenter: models/build/litemedsam/*.onnx missing (run models/build_litemedsam.py export)")
    return 0


def run(quick: bool = False) -> list[dict]:
    """Every shipped model (and the box-prompt model where it was built), for bench/run.py."""
    threads = models.physical_cores()
    rows = [row for name in models.shipped_models() for row in run_model(name, threads, quick)]
    sam = REPO / "models" / "build" / "litemedsam"
    if (sam / "litemedsam_encoder.onnx").is_file():
        rows += bench_box_prompt(sam, threads, quick)
    return rows


def bench_box_prompt(folder: Path, threads: int, quick: bool) -> list[dict]:
    """LiteMedSAM: encoder per image, decoder per box (ONNX Runtime, fp32)."""
    seg = models.BoxSegmenter(folder / "litemedsam_encoder.onnx", folder / "litemedsam_decoder.onnx",
                              threads=threads)
    image = read_image(DATASETS / "usiigaci_phase" / "images" / "010.tif")
    emb = seg.embed(image)
    box = (400, 300, 520, 410)
    repeat = 3 if quick else 10
    return [
        {"name": "litemedsam encoder per image (1x3x256x256)", "median_ms": _median_ms(lambda: seg.embed(image), repeat),
         "alternative": None, "alternative_ms": None, "ratio": None},
        {"name": "litemedsam decoder per box (+ resize to 1022x1024)",
         "median_ms": _median_ms(lambda: seg.segment(emb, box), repeat * 3),
         "alternative": None, "alternative_ms": None, "ratio": None},
    ]


if __name__ == "__main__":
    raise SystemExit(main())
