"""COCO export figures: RLE-encoding every segment of a label within its bounding box, against the
earlier encoding of each segment over the whole image (issue 12, item 7).

Run: ``python bench/bench_coco.py [--quick]``. Prints medians; asserts nothing. Both encoders give the
same RLE (tests/test_bad_input_export.py checks it segment by segment on real and speckled masks).

The old way costs a full-image pass per segment (``components == k``, then a column-major run scan),
about 0.04 s at 2048²; on a speckled 2048² label with ~40 000 segments that is about half an hour, so
it is measured on a subset of the segments and extrapolated to all of them (said in the figure's name).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from timing import median_ms  # bench/timing.py (bench/ is on sys.path when run)
from labelassist.export import rle_encode, segment_annotations
from labelassist.images import read_mask

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def speckled_mask(side: int = 2048, density: float = 0.01, seed: int = 7) -> np.ndarray:
    """Random isolated pixels: about 40 000 8-connected segments at 2048² and 1 %."""
    return np.random.default_rng(seed).random((side, side)) < density


def new_ms(mask: np.ndarray, repeat: int) -> float:
    """Connected components, then each segment's RLE within its bounding box (what export_coco does)."""
    return median_ms(lambda: list(segment_annotations(mask)), repeat)


def old_ms(mask: np.ndarray, subset: int | None, repeat: int) -> tuple[float, int, int]:
    """The earlier way: connected components, then each segment's RLE over the whole image.

    With ``subset``, only that many segments (spread over the label) are encoded and the time is
    scaled to all segments. Returns (milliseconds for the whole label, segments, segments measured).
    """
    def components():
        return cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)

    labelling = median_ms(components, repeat)
    n, labels, _, _ = components()
    segments = n - 1
    chosen = np.arange(1, n) if subset is None or subset >= segments else \
        np.linspace(1, n - 1, subset).astype(int)
    start = time.perf_counter()
    for k in chosen:
        rle_encode(labels == k)
    per_segment = (time.perf_counter() - start) * 1000 / len(chosen)
    return labelling + per_segment * segments, segments, len(chosen)


def bench_speckled(quick: bool) -> list[dict]:
    mask = speckled_mask()
    ours = new_ms(mask, repeat=1 if quick else 3)
    theirs, segments, measured = old_ms(mask, subset=20 if quick else 200, repeat=1 if quick else 3)
    return [{"name": f"COCO RLE of a speckled 2048² label ({segments} segments), per label",
             "median_ms": ours,
             "alternative": f"full-image RLE per segment ({measured} of {segments} measured, extrapolated)",
             "alternative_ms": theirs, "ratio": ours / theirs}]


def bench_real(quick: bool) -> list[dict]:
    """A real label with many cells (usiigaci_phase 1022x1024): both ways in full, no extrapolation."""
    mask = read_mask(DATASETS / "usiigaci_phase" / "masks" / "001.png")
    repeat = 1 if quick else 5
    ours = new_ms(mask, repeat)
    theirs, segments, _ = old_ms(mask, subset=None, repeat=repeat)
    return [{"name": f"COCO RLE of a usiigaci_phase label (1022x1024, {segments} segments)",
             "median_ms": ours, "alternative": "full-image RLE per segment", "alternative_ms": theirs,
             "ratio": ours / theirs}]


def run(quick: bool = False) -> list[dict]:
    return bench_real(quick) + bench_speckled(quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(args.quick):
        print(f"{row['name']:<62} {row['median_ms']:10.1f} ms   {row['alternative']:<60} "
              f"{row['alternative_ms']:12.1f} ms  {row['ratio']:.5f}x")


if __name__ == "__main__":
    main()
