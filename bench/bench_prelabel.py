"""Pre-label figures: time of each built-in pre-label against the obvious alternative.

Run: ``python bench/bench_prelabel.py [--quick]``. Prints medians; asserts nothing.
``ratio`` is ours / alternative (below 1: ours is faster).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
from skimage import filters, segmentation

from timing import median_ms  # bench/timing.py (bench/ is on sys.path when run)
from labelassist.images import read_image, read_mask
from labelassist.intensity import to_display
from labelassist.research.prompts import simulate_prompts
from labelassist.workflow.prelabel import PrelabelContext, otsu
from labelassist.workflow.prompted import flood, grabcut, texture, watershed

DATASETS = Path(os.environ.get("LABELASSIST_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


_median_ms = median_ms


def _row(name: str, ours: float, alternative: str, theirs: float) -> dict:
    return {"name": name, "median_ms": ours, "alternative": alternative, "alternative_ms": theirs,
            "ratio": ours / theirs if theirs else None}


def _scratch() -> tuple[np.ndarray, np.ndarray]:
    image = read_image(DATASETS / "scratch_assay" / "images" / "001.png")
    truth = read_mask(DATASETS / "scratch_assay" / "masks" / "001.png")
    return image, truth


def bench_otsu(repeat: int = 30) -> dict:
    """Otsu mask on a 2048x2048 uint16 image (a real usiigaci frame scaled up) against skimage."""
    image = read_image(DATASETS / "usiigaci_phase" / "images" / "001.tif")
    image = cv2.resize(image, (2048, 2048), interpolation=cv2.INTER_LINEAR)
    assert image.dtype == np.uint16
    ours = _median_ms(lambda: otsu(image, polarity="bright", window=False), repeat)
    theirs = _median_ms(lambda: image > filters.threshold_otsu(image), max(3, repeat // 3))
    return _row("otsu 2048² uint16 (calcHist, full precision)", ours,
                "skimage threshold_otsu + compare", theirs)


def bench_flood(repeat: int = 20) -> dict:
    """Magic wand from one tap on a scratch_assay frame (388x520) against skimage.segmentation.flood."""
    image, truth = _scratch()
    tap = simulate_prompts(truth).points[0]
    sigma, tolerance = 6.0, 24
    ours = _median_ms(lambda: flood(image, PrelabelContext(points=[tap]), sigma=sigma, tolerance=tolerance,
                                    fill_holes=False), repeat)

    def alternative():
        g = cv2.GaussianBlur(to_display(image), (0, 0), sigma)
        return segmentation.flood(g, (tap[1], tap[0]), tolerance=tolerance, connectivity=2)

    theirs = _median_ms(alternative, repeat)
    return _row("flood 388x520, one tap (cv2.floodFill)", ours, "skimage.segmentation.flood", theirs)


def bench_watershed(repeat: int = 20) -> dict:
    """Seeded watershed on the texture feature against skimage's watershed on a Sobel gradient."""
    image, truth = _scratch()
    prompts = simulate_prompts(truth)
    ctx = PrelabelContext(points=prompts.points, background_points=prompts.background_points)
    ours = _median_ms(lambda: watershed(image, ctx), repeat)

    def alternative():
        g = cv2.GaussianBlur(texture(image, 10), (0, 0), 2.0).astype(np.float32)
        markers = np.zeros(g.shape, np.int32)
        for x, y in prompts.background_points:
            cv2.circle(markers, (x, y), 3, 2, -1)
        for x, y in prompts.points:
            cv2.circle(markers, (x, y), 3, 1, -1)
        return segmentation.watershed(filters.sobel(g), markers) == 1

    theirs = _median_ms(alternative, repeat)
    return _row("watershed 388x520, taps (cv2.watershed)", ours, "skimage watershed on sobel", theirs)


def bench_grabcut(repeat: int = 10) -> dict:
    """GrabCut from a segment's box on a scratch_assay frame: downscaled crop against full resolution."""
    image, truth = _scratch()
    box = simulate_prompts(truth).boxes[0]
    ctx = PrelabelContext(box=box)
    ours = _median_ms(lambda: grabcut(image, ctx), repeat)
    theirs = _median_ms(lambda: grabcut(image, ctx, max_side=4096), max(3, repeat // 2))
    x0, y0, x1, y1 = box
    return _row(f"grabcut 388x520, box {x1 - x0}x{y1 - y0} (crop to 128 px)", ours,
                "same at full resolution (max_side=4096)", theirs)


def run(quick: bool = False) -> list[dict]:
    k = 3 if quick else 1
    return [bench_otsu(30 // k), bench_flood(20 // k), bench_watershed(20 // k), bench_grabcut(max(3, 10 // k))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    print(f"{'step':<52} {'median':>10}   {'alternative':<40} {'median':>10} {'ratio':>7}")
    for row in run(args.quick):
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] else ""
        print(f"{row['name']:<52} {row['median_ms']:7.2f} ms   {row['alternative']:<40} "
              f"{row['alternative_ms']:7.2f} ms {ratio:>7}")


if __name__ == "__main__":
    main()
