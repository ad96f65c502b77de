"""The selector on real data: sequence boundaries, the strategies and their combination."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from labelassist.errors import PluginError
from labelassist.images import read_image, read_mask
from labelassist.intensity import to_display
from labelassist.workflow import registry
from labelassist.workflow import selector as sel
from labelassist.workflow import sequences
from labelassist.workflow.features import (
    FEATURE_ID,
    FEATURE_KIND,
    FEATURE_VERSION,
    extract_features,
    grey_thumbnail_features,
    standardize,
)

SETS = ("isbi2012_membrane", "t98g_timelapse", "scratch_assay")  # 30 + 37 + 60 frames


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def medaka(datasets):
    """Features of the 503 medaka masks (one ordered pool) and the true run starts.

    The features come from the masks alone; the 4-digit frame ids in the file
    names are used only for the truth: a run ends where consecutive ids are
    not consecutive (25 runs -> 24 boundaries).
    """
    paths = sorted((datasets / "medaka_masks" / "masks").glob("*.png"))
    assert len(paths) == 503
    masks = [read_mask(p) for p in paths]
    ids = np.array([int(p.stem) for p in paths])
    truth = np.flatnonzero(np.diff(ids) != 1) + 1
    assert truth.size == 24
    return {
        "features": np.stack([extract_features(m) for m in masks]),
        "thumbs": np.stack([grey_thumbnail_features(m) for m in masks]),
        "truth": truth,
        "run": np.cumsum(np.isin(np.arange(ids.size), truth)),
    }


@pytest.fixture(scope="module")
def three_sets(datasets):
    """Features of isbi2012 (30) + t98g (16-bit, 37) + scratch assay (60), concatenated in that order."""
    features, set_of = [], []
    for j, name in enumerate(SETS):
        paths = sorted((datasets / name / "images").glob("*.png"))
        features += [extract_features(read_image(p)) for p in paths]
        set_of += [j] * len(paths)
    return np.stack(features), np.array(set_of)


def _precision_recall(found, truth):
    hits = np.intersect1d(found, truth).size  # exact index: no tolerance
    return hits / max(1, len(found)), hits / len(truth)


# --------------------------------------------------------------------------- features


def test_grey_thumbnail_features_are_small_grey_vectors_in_unit_range(datasets):
    image = read_image(datasets / "usiigaci_phase" / "images" / "001.tif")  # 16-bit, 1022x1024
    assert image.dtype == np.uint16
    f = grey_thumbnail_features(image)
    assert f.dtype == np.float32 and f.shape == (32 * 24,)
    assert 0.0 <= f.min() < f.max() <= 1.0
    assert np.array_equal(f, grey_thumbnail_features(image))  # deterministic
    assert grey_thumbnail_features(image, size=(16, 8)).shape == (128,)
    # An RGB image with equal channels gives the grey image's features.
    shown = to_display(image)
    rgb = np.dstack([shown, shown, shown])
    assert np.abs(grey_thumbnail_features(rgb) - grey_thumbnail_features(shown)).max() <= 1 / 255 + 1e-6


def test_extract_features_are_standardised_and_named(datasets):
    image = read_image(datasets / "t98g_timelapse" / "images" / "t01.png")
    f = extract_features(image)
    assert f.dtype == np.float32 and f.shape == (768,)
    assert abs(float(f.mean())) < 1e-6 and abs(float(np.linalg.norm(f)) - 1.0) < 1e-5
    # Brightness and contrast do not matter after standardisation, layout does.
    assert np.allclose(standardize(grey_thumbnail_features(image) * 0.5 + 0.2), f, atol=1e-5)
    assert not np.any(standardize(np.full(768, 0.3, dtype=np.float32)))  # flat image -> zeros, not NaN
    assert FEATURE_ID == f"{FEATURE_KIND}/v{FEATURE_VERSION}"


# --------------------------------------------------------------------------- sequence boundaries


def test_boundary_scores_with_window_1_are_consecutive_distances(medaka):
    f = medaka["features"]
    assert np.allclose(sequences.boundary_scores(f, window=1), np.linalg.norm(np.diff(f, axis=0), axis=1),
                       atol=1e-5)
    scores = sequences.boundary_scores(f, window=3)
    assert scores.shape == (502,) and np.all(scores <= sequences.boundary_scores(f, window=1) + 1e-6)


def test_medaka_boundaries_found_without_file_numbers(medaka):
    """Measured: precision 1.00 (22 of 22), recall 0.917 (22 of 24).

    The two misses: position 218, where frame 2508 alone is missing from a
    recording (2507 -> 2509: no visible change at all), and 147, a cut inside
    one video with the ventricle in the same place.
    """
    found = sequences.find_boundaries(medaka["features"])  # defaults: window 3, threshold 16
    precision, recall = _precision_recall(found, medaka["truth"])
    assert precision >= 0.95
    assert recall >= 0.9
    # Better than the best *fixed* threshold on plain 32x24 thumbnails, even one chosen
    # with the truth in hand (oracle: precision 0.955 / recall 0.875 or 0.846 / 0.917).
    steps = np.linalg.norm(np.diff(medaka["thumbs"], axis=0), axis=1)
    oracle_f1 = 0.0
    for t in np.unique(steps):
        p, r = _precision_recall(np.flatnonzero(steps > t) + 1, medaka["truth"])
        oracle_f1 = max(oracle_f1, 2 * p * r / (p + r) if p + r else 0.0)
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 > oracle_f1 + 0.02


def test_medaka_sequence_aware_draws_every_cluster_before_repeating(medaka):
    pool = sel.Pool(medaka["features"], np.zeros(503, dtype=bool), seed=3)
    labels = sel.cluster_labels(pool)
    n_clusters = int(labels.max()) + 1
    assert n_clusters == 23
    picks = []
    for _ in range(n_clusters + 5):
        i = sel.select_next(pool, {"sequence_aware": 1.0})
        picks.append(i)
        pool.mark_labelled(i)
    first = np.array(picks[:n_clusters])
    assert np.unique(labels[first]).size == n_clusters
    assert np.unique(medaka["run"][first]).size == n_clusters  # every pick from another recording


def test_three_sets_in_one_pool_split_into_three_and_picks_cover_them(three_sets):
    features, set_of = three_sets
    assert np.array_equal(sequences.find_boundaries(features), [30, 67])  # the exact set boundaries
    for seed in range(5):
        pool = sel.Pool(features, np.zeros(len(features), dtype=bool), seed=seed)  # no sequence ids
        assert int(sel.cluster_labels(pool).max()) + 1 == 3  # not split into many clusters
        picks = []
        for _ in range(6):
            i = sel.select_next(pool, {"sequence_aware": 1.0})
            picks.append(i)
            pool.mark_labelled(i)
        assert sorted(set_of[picks[:3]]) == [0, 1, 2]
        # Revisits follow cluster size: the 60 scratch frames get the 4th and 5th pick.
        assert list(set_of[picks[3:5]]) == [2, 2]


def test_known_sequences_are_never_merged(three_sets):
    features, set_of = three_sets
    names = np.array(SETS)[set_of]
    frame = np.concatenate([np.arange(np.sum(set_of == j)) for j in range(3)])
    perm = np.random.default_rng(0).permutation(len(features))  # pool order does not matter
    pool = sel.Pool(features[perm], np.zeros(len(features), dtype=bool), sequence=names[perm], frame=frame[perm])
    labels = sel.cluster_labels(pool)
    assert int(labels.max()) + 1 == 3
    for j in range(3):
        assert np.unique(labels[set_of[perm] == j]).size == 1
    order = sel.sequential_order(pool)
    codes = pool.sequence_codes()[order]
    breaks = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    assert np.array_equal(sequences.find_boundaries(pool.features, order, breaks=breaks), breaks)


# --------------------------------------------------------------------------- simple strategies


def test_random_is_reproducible_by_seed(three_sets):
    features, _ = three_sets
    labelled = np.zeros(len(features), dtype=bool)
    labelled[:5] = True
    a = sel.random(sel.Pool(features, labelled, seed=7))
    assert np.array_equal(a, sel.random(sel.Pool(features, labelled, seed=7)))
    assert not np.array_equal(a, sel.random(sel.Pool(features, labelled, seed=8)))
    assert np.all(a[:5] == 0) and np.all((a >= 0) & (a <= 1))
    assert np.array_equal(
        sel.rank(sel.Pool(features, labelled, seed=7), {"random": 1}),
        sel.rank(sel.Pool(features, labelled, seed=7), {"random": 1}),
    )


def test_sequential_gives_sequence_then_frame_order(three_sets):
    features, set_of = three_sets
    n = len(features)
    frame = np.concatenate([np.arange(np.sum(set_of == j)) for j in range(3)])
    perm = np.random.default_rng(1).permutation(n)
    sequence = np.array(SETS)[set_of][perm]
    labelled = np.zeros(n, dtype=bool)
    labelled[perm == 3] = True  # isbi frame 3 is done
    pool = sel.Pool(features[perm], labelled, sequence=sequence, frame=frame[perm])
    # Sequences come in order of first appearance in the pool, frames ascending inside.
    _, first = np.unique(sequence, return_index=True)
    seq_rank = {s: r for r, s in enumerate(np.unique(sequence)[np.argsort(first)])}
    expected = sorted(np.flatnonzero(~labelled), key=lambda i: (seq_rank[sequence[i]], frame[perm][i]))
    assert list(sel.rank(pool, {"sequential": 1})) == expected
    scores = sel.sequential(pool)
    assert scores[expected[0]] == 1.0 and scores[expected[-1]] == 0.0
    assert np.all(np.diff(scores[expected]) < 0)


def test_cherry_pick_ranks_flagged_first(three_sets):
    features, _ = three_sets
    n = len(features)
    flags = np.full(n, -1, dtype=np.int8)
    flags[[90, 10, 50]] = 1
    flags[[0, 1, 2]] = 0
    pool = sel.Pool(features, np.zeros(n, dtype=bool), flags=flags)
    order = sel.rank(pool, {"cherry_pick": 1})
    assert list(order[:3]) == [10, 50, 90]  # equal scores keep sequential order
    assert set(order[-3:]) == {0, 1, 2}
    assert np.array_equal(np.unique(sel.cherry_pick(pool)), [0.0, 0.5, 1.0])


def test_diversity_picks_the_farthest_sample_first(three_sets):
    features, _ = three_sets
    n = len(features)
    pool = sel.Pool(features, np.zeros(n, dtype=bool))
    # Nothing labelled: farthest from the pool mean.
    to_mean = cdist(features.astype(np.float64), features.mean(axis=0, keepdims=True).astype(np.float64))[:, 0]
    assert sel.select_next(pool, {"diversity": 1}) == int(np.argmax(to_mean))
    # k-centre greedy: each pick is the farthest from everything labelled so far
    # (also exercises the incremental cache of a reused pool).
    pool.mark_labelled(int(np.argmax(to_mean)))
    exact = cdist(features.astype(np.float64), features.astype(np.float64))
    for _ in range(6):
        nearest = exact[:, pool.labelled].min(axis=1)
        nearest[pool.labelled] = -1
        pick = sel.select_next(pool, {"diversity": 1})
        assert pick == int(np.argmax(nearest))
        scores = sel.diversity(pool)
        assert scores[pick] == 1.0 and scores.max() == 1.0 and np.all(scores[pool.labelled] == 0)
        pool.mark_labelled(pick)
    fresh = sel.Pool(features, pool.labelled.copy())
    assert np.allclose(sel.diversity(fresh), sel.diversity(pool), atol=1e-5)


def test_nearest_distances_match_scipy(three_sets):
    features, _ = three_sets
    got = sel.nearest_distances(features, features[[3, 40, 100]])
    want = cdist(features.astype(np.float64), features[[3, 40, 100]].astype(np.float64)).min(axis=1)
    assert np.allclose(got, want, atol=2e-3)


def test_mean_entropy_bits(datasets):
    mask = read_mask(datasets / "scratch_assay" / "masks" / "000.png")
    assert sel.mean_entropy(np.full(mask.shape, 0.5)) == 1.0
    assert sel.mean_entropy(mask.astype(np.float32)) == 0.0  # hard 0/1 decisions
    assert sel.mean_entropy(np.array([0.0, 0.5, np.nan])) == 0.5  # NaN pixels are ignored
    assert 0.0 < sel.mean_entropy(np.full(10, 0.9)) < 1.0
    with pytest.raises(ValueError, match="outside|must lie"):
        sel.mean_entropy(np.array([-0.5, 1.5]))


def test_uncertainty_ranks_the_least_certain_prediction_first(datasets):
    import cv2

    paths = sorted((datasets / "scratch_assay" / "masks").glob("*.png"))[:6]
    # Soft "predictions": real masks blurred more and more; unpredicted samples stay NaN.
    entropy = [
        sel.mean_entropy(cv2.GaussianBlur(read_mask(p).astype(np.float32), (0, 0), sigma))
        for p, sigma in zip(paths, (1, 16, 4, 2, 8, 0.5))
    ]
    values = np.array(entropy + [np.nan, np.nan])
    features = np.stack([extract_features(read_mask(p)) for p in paths + paths[:2]])
    pool = sel.Pool(features, np.zeros(8, dtype=bool), uncertainty=values)
    assert all(0.0 < e < 1.0 for e in entropy) and np.argmax(entropy) == 1  # the most blurred
    # Unpredicted samples are neutral (0.5) by default...
    order = list(sel.rank(pool, {"uncertainty": 1}))
    assert order == sorted(range(8), key=lambda i: (-(0.5 if np.isnan(values[i]) else values[i]), i))
    # ...or last when the project says so.
    order = list(sel.rank(pool, {"uncertainty": 1}, {"uncertainty": {"missing": 0.0}}))
    assert order == [1, 4, 2, 3, 0, 5, 6, 7]
    scores = sel.combined_scores(pool, {"uncertainty": 1}, {"uncertainty": {"missing": 0.0}})
    assert scores[6] == scores[7] == 0.0 and scores[1] == values[1]


# --------------------------------------------------------------------------- combination


def test_rank_combines_weighted_scores(three_sets):
    features, _ = three_sets
    n = len(features)
    labelled = np.zeros(n, dtype=bool)
    labelled[[0, 31, 70]] = True
    flags = np.full(n, -1, dtype=np.int8)
    flags[100] = 1
    pool = sel.Pool(features, labelled, flags=flags, uncertainty=np.linspace(0, 1, n), seed=2)
    weights = {"diversity": 2.0, "cherry_pick": 1.0, "uncertainty": 0.5, "random": 0.0}
    expected = (2.0 * sel.diversity(pool) + sel.cherry_pick(pool) + 0.5 * sel.uncertainty(pool)) / 3.5
    got = sel.combined_scores(pool, weights)
    assert np.allclose(got[~labelled], expected[~labelled])
    order = sel.rank(pool, weights)
    assert set(order) == set(np.flatnonzero(~labelled)) and len(order) == n - 3
    assert np.all(np.diff(got[order]) <= 0)
    assert np.array_equal(order, sel.rank(pool, weights))


def test_select_next_is_none_when_everything_is_labelled(three_sets):
    features, _ = three_sets
    pool = sel.Pool(features[:4], np.ones(4, dtype=bool))
    assert sel.select_next(pool, {"sequence_aware": 1, "diversity": 1}) is None
    assert sel.rank(pool, {"random": 1}).size == 0


def test_rank_rejects_bad_weights_and_names(three_sets):
    features, _ = three_sets
    pool = sel.Pool(features, np.zeros(len(features), dtype=bool))
    with pytest.raises(PluginError, match="all selector weights are zero"):
        sel.rank(pool, {"random": 0, "diversity": 0.0})
    with pytest.raises(PluginError, match="weights must be 0 or more"):
        sel.rank(pool, {"random": 1, "diversity": -0.5})
    with pytest.raises(PluginError, match="no_such_strategy"):
        sel.rank(pool, {"no_such_strategy": 1})
    with pytest.raises(PluginError, match="no_such_strategy"):
        sel.rank(pool, {"random": 1}, {"no_such_strategy": {}})
    with pytest.raises(PluginError, match="window"):
        sel.rank(pool, {"sequence_aware": 1}, {"sequence_aware": {"window": 0}})
    with pytest.raises(PluginError, match="has no parameter"):
        sel.rank(pool, {"random": 1}, {"random": {"seed": 3}})
    with pytest.raises(PluginError, match="must be a number"):
        sel.rank(pool, {"random": "1"})
    with pytest.raises(PluginError):
        sel.select_next(pool, {})


def test_a_misbehaving_plugin_strategy_is_reported_by_name(three_sets):
    features, _ = three_sets
    pool = sel.Pool(features, np.zeros(len(features), dtype=bool))

    @registry.register("selector", "test_wrong_shape")
    def wrong_shape(pool):
        return np.zeros(3)

    @registry.register("selector", "test_too_big")
    def too_big(pool):
        return np.full(len(pool), 2.0)

    try:
        with pytest.raises(PluginError, match="test_wrong_shape"):
            sel.rank(pool, {"test_wrong_shape": 1})
        with pytest.raises(PluginError, match="test_too_big.*outside"):
            sel.rank(pool, {"test_too_big": 1})
    finally:
        registry.REGISTRY.steps["selector"].pop("test_wrong_shape", None)
        registry.REGISTRY.steps["selector"].pop("test_too_big", None)


def test_builtin_strategies_are_registered_with_their_parameters():
    names = registry.names("selector")
    for name in ("sequential", "random", "cherry_pick", "sequence_aware", "uncertainty", "diversity"):
        assert name in names
    step = registry.get("selector", "sequence_aware")
    assert step.resolve() == {"window": 3, "threshold": 16.0}
    assert registry.get("selector", "uncertainty").resolve() == {"missing": 0.5}


def test_pool_checks_its_arrays(three_sets):
    features, _ = three_sets
    with pytest.raises(ValueError, match="labelled"):
        sel.Pool(features, np.zeros(3, dtype=bool))
    with pytest.raises(ValueError, match="flags"):
        sel.Pool(features, np.zeros(len(features), dtype=bool), flags=np.full(len(features), 2))
    with pytest.raises(ValueError, match="features"):
        sel.Pool(features[0], np.zeros(1, dtype=bool))
