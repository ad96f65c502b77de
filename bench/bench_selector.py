"""Selector timings: ranking at N = 1k / 10k / 100k on cached features, and feature extraction.

Run:  .venv/bin/python bench/bench_selector.py [--quick]

Prints one table row per measurement, each beside an obvious alternative
measured in the same run (ratio = ours / alternative, < 1 means ours is
faster). Figures are medians of a few repeats on whatever machine runs this;
nothing here asserts on time.

Synthetic features stand in for a large project: D = 768 float32 vectors,
standardised like :func:`labelassist.workflow.features.extract_features`,
made of sequences of about 20 similar frames (a random base vector plus small
per-frame noise), with 100 samples labelled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from timing import median_ms  # bench/timing.py (bench/ is on sys.path when run)
from labelassist.workflow import selector as sel
from labelassist.workflow import sequences
from labelassist.workflow.features import extract_features, standardize

ALL = {name: 1.0 for name in ("sequential", "random", "cherry_pick", "sequence_aware", "uncertainty", "diversity")}
D = 768
LABELLED = 100
DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def _median_ms(func, repeats: int) -> float:
    return median_ms(func, repeats, warmup=0)


def _row(name: str, ms: float, alternative: str, alt_ms: float) -> dict:
    return {"name": name, "median_ms": ms, "alternative": alternative, "alternative_ms": alt_ms,
            "ratio": ms / alt_ms if alt_ms > 0 else float("nan")}  # ours / alternative, as every bench


def synthetic_pool(n: int, seed: int = 0) -> sel.Pool:
    """A pool of ``n`` standardised D-dim vectors in runs of ~20 similar frames, 100 labelled."""
    rng = np.random.default_rng(seed)
    run = np.cumsum(rng.random(n) < 1 / 20)
    base = rng.standard_normal((int(run[-1]) + 1, D), dtype=np.float32)
    features = base[run]
    features += 0.3 * rng.standard_normal((n, D), dtype=np.float32)
    labelled = np.zeros(n, dtype=bool)
    labelled[rng.choice(n, min(LABELLED, n // 2), replace=False)] = True
    flags = rng.choice(np.array([-1, 0, 1], dtype=np.int8), n, p=[0.98, 0.01, 0.01])
    return sel.Pool(standardize(features), labelled, flags=flags, uncertainty=rng.random(n), seed=seed)


def _fresh(pool: sel.Pool) -> sel.Pool:
    """The same samples in a new pool: nothing cached (what the first selection of a session sees)."""
    return sel.Pool(pool.features, pool.labelled.copy(), flags=pool.flags, uncertainty=pool.uncertainty,
                    seed=pool.seed)


def _naive_step_scores(features, order=None, window=1, breaks=None):
    """boundary_scores as a per-sample Python loop (no known breaks in the benchmark)."""
    f = features if order is None else features[order]
    n = len(f)
    scores = np.empty(n - 1)
    for i in range(1, n):
        before = min(float(np.linalg.norm(f[i] - f[j])) for j in range(max(0, i - window), i))
        after = min(float(np.linalg.norm(f[i - 1] - f[j])) for j in range(i, min(n, i - 1 + window + 1)))
        scores[i - 1] = min(before, after)
    return scores


def _cdist_nearest(x, y, x_sq=None):
    from scipy.spatial.distance import cdist

    return cdist(x, y).min(axis=1)


def _naive_rank(pool: sel.Pool) -> np.ndarray:
    """rank() with the two heavy parts done the obvious way: Python-loop step scores, scipy cdist."""
    saved = sequences.boundary_scores, sel.nearest_distances
    sequences.boundary_scores, sel.nearest_distances = _naive_step_scores, _cdist_nearest
    try:
        return sel.rank(_fresh(pool), ALL)
    finally:
        sequences.boundary_scores, sel.nearest_distances = saved


def bench_rank(n: int, repeats: int) -> list[dict]:
    """rank() with all six strategies: a fresh pool, and a pool reused while labelling."""
    pool = synthetic_pool(n)
    if sel.select_next(_fresh(pool), ALL) != int(_naive_rank(pool)[0]):  # same answer, float noise aside
        print(f"note: N={n}: the naive ranking picks another first sample (float32 vs float64 near-tie)",
              file=sys.stderr)
    fresh_ms = _median_ms(lambda: sel.rank(_fresh(pool), ALL), repeats)
    naive_ms = _median_ms(lambda: _naive_rank(pool), 1 if n > 10_000 else repeats)

    reused = _fresh(pool)
    sel.rank(reused, ALL)

    def next_pick():  # what a session does: label the pick, ask again
        reused.mark_labelled(int(sel.rank(reused, ALL)[0]))

    return [
        _row(f"rank, 6 strategies, N={n:,}, fresh pool", fresh_ms,
             "same, Python-loop steps + scipy cdist", naive_ms),
        _row(f"rank, 6 strategies, N={n:,}, reused pool", _median_ms(next_pick, repeats),
             "fresh pool every time", fresh_ms),
    ]


def bench_diversity(n: int, repeats: int) -> dict:
    """k-centre distances: chunked float32 BLAS vs scipy cdist (full N x L float64 matrix)."""
    from scipy.spatial.distance import cdist

    pool = synthetic_pool(n)
    ref = pool.features[pool.labelled]
    ours = _median_ms(lambda: sel.nearest_distances(pool.features, ref), repeats)
    alt = _median_ms(lambda: cdist(pool.features, ref).min(axis=1), repeats)
    return _row(f"diversity distances, N={n:,}, L={len(ref)}", ours, "scipy cdist full matrix", alt)


def bench_boundaries(n: int, repeats: int) -> dict:
    """Step scores (window 3) + Felzenszwalb-Huttenlocher cut, vs the step scores as a Python loop."""
    f = synthetic_pool(n).features
    ours = _median_ms(lambda: sequences.find_boundaries(f), repeats)
    alt = _median_ms(lambda: _naive_step_scores(f, window=3), 1 if n > 10_000 else repeats)
    return _row(f"find_boundaries, N={n:,}", ours, "step scores only, Python loop", alt)


def bench_features(repeats: int) -> list[dict]:
    """extract_features on real images vs scikit-image's anti-aliased resize of the display image."""
    from skimage.transform import resize

    from labelassist.images import read_image
    from labelassist.intensity import to_display

    rows = []
    for label, path in [
        ("512x512 uint8", DATASETS / "isbi2012_membrane" / "images" / "000.png"),
        ("512x512 uint16", DATASETS / "t98g_timelapse" / "images" / "t01.png"),
        ("1022x1024 uint16", DATASETS / "usiigaci_phase" / "images" / "001.tif"),
    ]:
        if not path.is_file():
            print(f"(skipped features on {label}: {path} is missing)", file=sys.stderr)
            continue
        image = read_image(path)

        def alternative():
            shown = to_display(image).astype(np.float32)
            return standardize(resize(shown, (24, 32), anti_aliasing=True).ravel())

        ours = _median_ms(lambda: extract_features(image), repeats * 10)
        rows.append(_row(f"extract_features, {label}", ours, "skimage resize(anti_aliasing)",
                         _median_ms(alternative, repeats * 10)))
    return rows


def run(quick: bool = False) -> list[dict]:
    """Every figure of this module; ``quick`` skips N = 100 000 and repeats less."""
    repeats = 3 if quick else 5
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    rows = []
    for n in sizes:
        rows += bench_rank(n, repeats)
    for n in sizes:
        rows.append(bench_diversity(n, repeats))
    for n in sizes:
        rows.append(bench_boundaries(n, repeats))
    rows += bench_features(repeats)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip N = 100 000")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    width = max(len(r["name"]) for r in rows)
    alt_width = max(len(r["alternative"]) for r in rows)
    print(f"{'measurement':<{width}}  {'median ms':>10}  {'alternative':<{alt_width}}  "
          f"{'alt ms':>10}  {'ratio':>7}")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['median_ms']:>10.2f}  {r['alternative']:<{alt_width}}  "
              f"{r['alternative_ms']:>10.2f}  {r['ratio']:>7.3f}")


if __name__ == "__main__":
    main()
