"""Workflow figures at 2048x2048: hole filling, component counting, pre-processing, inspection.

Run: ``python bench/bench_workflow.py [--quick]``. Prints medians of repeated runs;
asserts nothing. Each ``bench_*`` function returns rows
``{name, median_ms, alternative, alternative_ms, ratio}`` (``ratio`` = ours / alternative,
below 1 means ours is faster) so that a bench runner can collect them.

The test images are real: the usiigaci_phase mask and 16-bit frame 001 tiled 2x2 and
cropped to 2048x2048 (57 cells and 20 holes per tile, so many small components).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
from skimage import exposure, measure

from timing import median_ms  # bench/timing.py (bench/ is on sys.path when run)
from labelassist.images import read_image, read_mask
from labelassist.workflow import components, postprocess, preprocess
from labelassist.workflow.inspection import InspectionContext, inspect_label
from labelassist.workflow.registry import REGISTRY

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SIZE = 2048


_median_ms = median_ms


def _row(name: str, ours: float, alternative: str | None = None, theirs: float | None = None) -> dict:
    return {
        "name": name,
        "median_ms": ours,
        "alternative": alternative,
        "alternative_ms": theirs,
        "ratio": ours / theirs if theirs else None,
    }


def _tile(array: np.ndarray) -> np.ndarray:
    reps = (-(-SIZE // array.shape[0]), -(-SIZE // array.shape[1]))
    return np.ascontiguousarray(np.tile(array, reps)[:SIZE, :SIZE])


def sample_mask() -> np.ndarray:
    """The 2048x2048 real mask used by the mask figures."""
    return _tile(read_mask(DATASETS / "usiigaci_phase" / "masks" / "001.png"))


def sample_image() -> np.ndarray:
    """The 2048x2048 real uint16 image used by the pre-processing figures."""
    return _tile(read_image(DATASETS / "usiigaci_phase" / "images" / "001.tif"))


def bench_fill_holes(repeat: int = 20) -> list[dict]:
    """Hole filling: one flood fill from the border against scipy's binary_fill_holes."""
    mask = sample_mask()
    fill = _median_ms(lambda: mask | components.hole_mask(mask), repeat)
    scipy_fill = _median_ms(lambda: ndi.binary_fill_holes(mask), repeat)
    step = _median_ms(lambda: postprocess.fill_holes(mask), repeat)
    limited = _median_ms(lambda: postprocess.fill_holes(mask, max_area=100), repeat)
    return [
        _row("fill holes 2048² (flood fill from the border)", fill, "scipy.ndimage.binary_fill_holes", scipy_fill),
        _row("fill_holes step incl. Change (counts before + after)", step, "scipy.ndimage.binary_fill_holes", scipy_fill),
        _row("fill_holes step max_area=100 incl. Change", limited),
    ]


def bench_components(repeat: int = 20) -> list[dict]:
    """Counting and labelling segments and holes: OpenCV against skimage.measure.label."""
    mask = sample_mask()
    skimage_label = _median_ms(lambda: measure.label(mask, connectivity=2), repeat)
    return [
        _row("count_segments 2048² (cv2)", _median_ms(lambda: components.count_segments(mask), repeat),
             "skimage.measure.label", skimage_label),
        _row("label_segments + areas 2048² (cv2)", _median_ms(lambda: components.label_segments(mask), repeat),
             "skimage.measure.label", skimage_label),
        _row("count_holes 2048² (cv2)", _median_ms(lambda: components.count_holes(mask), repeat),
             "skimage.measure.label of the background",
             _median_ms(lambda: measure.label(~mask, connectivity=1), repeat)),
    ]


def bench_preprocess(repeat: int = 5) -> list[dict]:
    """Every registered pre-processing step with default parameters on a 2048² uint16 image."""
    image = sample_image()
    lo, hi = np.percentile(image, (0.5, 99.5))
    x = preprocess.as_float01(image)
    alternatives = {
        "percentile_normalise": ("np.percentile + clip", lambda: np.clip((image - lo) / (hi - lo), 0, 1)),
        "gaussian": ("scipy.ndimage.gaussian_filter", lambda: ndi.gaussian_filter(x, 1.0)),
        "median": ("scipy.ndimage.median_filter 3x3", lambda: ndi.median_filter(x, size=3)),
        "clahe": ("skimage.exposure.equalize_adapthist", lambda: exposure.equalize_adapthist(x, kernel_size=SIZE // 8)),
    }
    rows = []
    for name in REGISTRY.names("preprocess"):
        step = REGISTRY.get("preprocess", name)
        # nl_means takes seconds at this size: fewer repeats keep the run short.
        n = max(1, repeat // 3) if name == "nl_means" else repeat
        ours = _median_ms(lambda step=step: step(image), n)
        label, alternative = alternatives.get(name, (None, None))
        theirs = _median_ms(alternative, max(1, n // 2)) if alternative else None
        rows.append(_row(f"preprocess {name} 2048² uint16", ours, label, theirs))
    return rows


def bench_inspection(repeat: int = 10) -> list[dict]:
    """A whole inspection and the project's default suggestions on the 2048² mask."""
    mask = sample_mask()
    metrics = {name: {} for name in REGISTRY.names("inspect")}
    context = InspectionContext(
        priors={
            "segments": 228,
            "holes": 0,
            "area_fraction": (0.1, 0.5),
            "min_segment_area": 20,
            "border_segments": 20,
        },
        prelabel=mask,
        prediction=mask,
    )
    choices = [{"step": "fill_holes", "max_area": 0}, {"step": "remove_small", "min_area": 20}]
    inspection = _median_ms(lambda: inspect_label(mask, context, metrics, 0.75), repeat)
    suggestions = _median_ms(lambda: postprocess.suggest(mask, choices), repeat)
    return [
        _row("inspect_label, all 7 metrics, 2048²", inspection),
        _row("suggest fill_holes + remove_small, 2048²", suggestions),
    ]


def run(quick: bool = False) -> list[dict]:
    """Every figure of this module (fewer repeats with ``quick``)."""
    scale = 0.25 if quick else 1.0
    rows = []
    plan = ((bench_fill_holes, 20), (bench_components, 20), (bench_preprocess, 6), (bench_inspection, 10))
    for bench, repeat in plan:
        rows += bench(max(1, int(repeat * scale)))
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    width = max(len(r["name"]) for r in rows)
    print(f"{'figure':{width}}  {'median ms':>10}  {'alternative':38}  {'alt ms':>9}  {'ratio':>6}")
    for r in rows:
        alt_ms = f"{r['alternative_ms']:9.2f}" if r["alternative_ms"] is not None else f"{'':9}"
        ratio = f"{r['ratio']:6.3f}" if r["ratio"] is not None else f"{'':6}"
        print(f"{r['name']:{width}}  {r['median_ms']:10.2f}  {r['alternative'] or '':38}  {alt_ms}  {ratio}")
    return rows


if __name__ == "__main__":
    main()
