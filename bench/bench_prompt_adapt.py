"""Tap-to-segment per object, before and after adapting LiteMedSAM's prompt decoder to a data set.

Run (from the repository root, after ``make litemedsam``)::

    nice .venv/bin/python bench/bench_prompt_adapt.py                       # the four cell sets
    nice .venv/bin/python bench/bench_prompt_adapt.py --sets usiigaci_phase --budget 60

Per set of ``/work/shared/datasets`` (or ``--datasets``):

* **adapt** (:func:`labelassist.training.prompt_adapt.adapt_prompt_decoder`, one torch thread,
  ``--budget`` seconds) on the FIRST ``--train`` images of the sorted list (time-lapse sets
  too: the held-out frames are then later frames, not the neighbours of training frames),
  always keeping at least ``MIN_HELD_OUT`` images out (usiigaci_phase: 8 in, 4 out);
* **measure** on all the other images (held out), per object
  (:func:`labelassist.research.box_eval.evaluate_box_prompts`, at most ``--objects`` objects per
  image spread over sizes): DSC with the ground-truth box and with one tap at the object's
  interior point (its centre, where a user taps), for LiteMedSAM before and after adaptation,
  with GrabCut beside (box only); ms per prompt (decoder + resize + threshold, ``--threads``
  ONNX threads) and seconds of adaptation.

Writes ``bench/results/prompt_adapt.json`` and prints a table. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "app"))

from labelassist.images import read_image, read_mask  # noqa: E402
from labelassist.models import find_box_segmenter  # noqa: E402
from labelassist.research.box_eval import evaluate_box_prompts  # noqa: E402
from labelassist.training.prompt_adapt import adapt_prompt_decoder, score_prompt_decoder  # noqa: E402
from labelassist.workflow.prelabel import PrelabelContext  # noqa: E402
from labelassist.workflow.prompted import grabcut  # noqa: E402

SETS = ("scratch_assay", "usiigaci_phase", "t98g_timelapse", "isbi2012_membrane")
MIN_HELD_OUT = 4
WEIGHTS = REPO / "models" / "build" / "litemedsam" / "litemedsam_decoder_weights.npz"


def read_set(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, mask) of every image that has a mask, sorted by file name."""
    out = []
    for path in sorted((folder / "images").iterdir()):
        mask = folder / "masks" / (path.stem + ".png")
        if mask.is_file():
            out.append((path.stem, read_image(path), read_mask(mask) != 0))
    return out


def split(samples: list, train: int) -> tuple[list, list]:
    """The first ``train`` samples (leaving at least :data:`MIN_HELD_OUT` out) and the rest."""
    n = max(1, min(train, len(samples) - MIN_HELD_OUT))
    return samples[:n], samples[n:]


def grabcut_per_object(samples, objects: int | None) -> dict:
    def by_box(image, boxes):
        return [grabcut(image, PrelabelContext(box=b)).mask for b in boxes]

    ev = evaluate_box_prompts(samples, {"grabcut": by_box}, boxes_per_image=objects)
    return {"box": round(ev.mean_dice("grabcut"), 4), "objects": ev.objects("grabcut"),
            "ms_per_box": round(ev.mean_ms("grabcut"), 1)}


def bench_set(name: str, folder: Path, args, segmenter, work: Path) -> dict:
    samples = read_set(folder)
    train, held_out = split(samples, args.train)
    say = (lambda m: print(f"  {name}: {m}", flush=True)) if args.verbose else None
    t = time.perf_counter()
    embeddings = [segmenter.embed(image) for _, image, _ in held_out]
    embed_s = (time.perf_counter() - t) / max(1, len(held_out))
    before = score_prompt_decoder(segmenter, held_out, args.objects, embeddings)
    out_onnx = work / f"{name}_decoder.onnx"
    adapted = adapt_prompt_decoder([(image, mask) for _, image, mask in train], WEIGHTS, out_onnx, args.budget,
                                   say=say, segmenter=segmenter, seed=args.seed, threads=1)
    after = score_prompt_decoder(segmenter.with_decoder(out_onnx), held_out, args.objects, embeddings)
    gc = grabcut_per_object(held_out, args.objects)
    return {"train": [s[0] for s in train], "held_out": [s[0] for s in held_out],
            "objects": before["objects"], "encoder_s_per_image": round(embed_s, 2),
            "before": {k: before[k] for k in ("box", "point", "ms_per_prompt")},
            "after": {k: after[k] for k in ("box", "point", "ms_per_prompt")},
            "grabcut": gc, "adaptation": {k: adapted[k] for k in ("steps", "seconds", "embed_seconds", "images",
                                                                  "objects", "loss_first", "loss_last")}}


def table(results: dict) -> str:
    head = (f"{'set':<18} {'train/held':>10} {'obj':>4} | {'box before':>10} {'box after':>9} {'GrabCut':>7} | "
            f"{'pt before':>9} {'pt after':>8} | {'ms/prompt':>9} {'adapt s':>7} {'steps':>5}")
    lines = [head, "-" * len(head)]
    for name, r in results["sets"].items():
        lines.append(f"{name:<18} {len(r['train']):>4}/{len(r['held_out']):<5} {r['objects']:>4} | "
                     f"{r['before']['box']:>10.3f} {r['after']['box']:>9.3f} {r['grabcut']['box']:>7.3f} | "
                     f"{r['before']['point']:>9.3f} {r['after']['point']:>8.3f} | "
                     f"{r['after']['ms_per_prompt']:>9.1f} {r['adaptation']['seconds']:>7.0f} "
                     f"{r['adaptation']['steps']:>5}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--train", type=int, default=10, help="images to adapt on (at most)")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds of adaptation per set")
    parser.add_argument("--objects", type=int, default=10, help="objects measured per held-out image (at most)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX threads of the segmenter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "prompt_adapt.json")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    segmenter = find_box_segmenter(threads=args.threads)
    if segmenter is None:
        print("the LiteMedSAM export is missing: run make litemedsam", file=sys.stderr)
        return 1
    results = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "split": "the first --train images of the sorted list adapt (at least 4 held out); the rest measure",
               "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            start = time.perf_counter()
            results["sets"][name] = bench_set(name, args.datasets / name, args, segmenter, Path(tmp))
            print(f"{name}: {json.dumps(results['sets'][name]['after'])} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
