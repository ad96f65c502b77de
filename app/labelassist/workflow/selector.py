"""Which sample to label next: query strategies and their weighted combination.

Each strategy ``a_j`` scores every sample of a :class:`Pool` with
``s_j(x) in [0, 1]`` (higher = label sooner); :func:`rank` combines them as

    s(x) = sum_j w_j s_j(x) / sum_j w_j,   w_j >= 0,

and orders the unlabelled samples by ``s`` (Schilling et al. 2021, Label
Assistant). Strategies are registered under kind ``'selector'`` with the
signature ``s(pool, **params) -> ndarray of float64, shape (N,)``; scores of
labelled samples are ignored (the built-ins return 0 for them), so a plug-in
may return anything there.

Built-in strategies
-------------------
``sequential``      earliest (sequence, frame) first
``random``          seeded uniform scores, reproducible
``cherry_pick``     the user's flags: relevant 1, unflagged 0.5, not now 0
``sequence_aware``  one sample of every sequence / strong change before any
                    is revisited (:mod:`.sequences` finds where they start)
``uncertainty``     a model's mean pixel-wise entropy (:func:`mean_entropy`)
``diversity``       farthest-point (k-centre greedy) in feature space

All of them run on cached feature vectors (:mod:`.features`) and numpy only,
so ranking 100 000 samples takes well under a second (``bench/bench_selector.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from labelassist.errors import PluginError
from labelassist.workflow.registry import REGISTRY, Param, ProjectRegistry, Registry, register
from labelassist.workflow.sequences import find_boundaries

__all__ = [
    "Pool",
    "rank",
    "select_next",
    "combined_scores",
    "sequential_order",
    "cluster_labels",
    "mean_entropy",
    "nearest_distances",
    "sequential",
    "random",
    "cherry_pick",
    "sequence_aware",
    "uncertainty",
    "diversity",
]

# Elements per block in the chunked distance computations: keeps temporaries
# at a few tens of MB whatever N is.
_CHUNK_ELEMENTS = 1 << 22


@dataclass
class Pool:
    """Everything the selector knows about the samples of a project.

    Parameters
    ----------
    features : ndarray, shape (N, D)
        Cached feature vectors (:func:`labelassist.workflow.features.extract_features`),
        converted to float32. Treat as read-only: the pool caches results
        derived from them.
    labelled : ndarray of bool, shape (N,)
        True where a label is stored. May be updated in place (or with
        :meth:`mark_labelled`) between selections.
    sequence : ndarray, shape (N,), optional
        Sequence id of each sample (any comparable values, e.g. the strings of
        :func:`labelassist.images.discover`). Sequences are ordered by the first
        appearance of their id in the pool. Default: one sequence for all, i.e.
        one ordered pool in which
        :func:`~labelassist.workflow.sequences.find_boundaries` finds the sequences.
    frame : ndarray of int, shape (N,), optional
        Position inside the sequence. Default: the pool index.
    flags : ndarray of int8, shape (N,), optional
        Cherry-picking: 1 = relevant, 0 = not now, -1 = no flag (default).
    uncertainty : ndarray of float, shape (N,), optional
        Model uncertainty in [0, 1] (:func:`mean_entropy` of its foreground
        probability); NaN where there is no prediction yet (default).
    seed : int
        Seed of every random choice, so a session can be replayed.
    """

    features: np.ndarray
    labelled: np.ndarray
    sequence: np.ndarray | None = None
    frame: np.ndarray | None = None
    flags: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    seed: int = 0
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        if self.features.ndim != 2:
            raise ValueError(f"features must be an (N, D) array, got shape {self.features.shape}")
        # One float64 sum instead of an (N, D) boolean temporary: NaN/inf anywhere makes it non-finite.
        if not np.isfinite(self.features.sum(dtype=np.float64)):
            raise ValueError("features contain NaN or infinite values; recompute the feature cache")
        n = self.features.shape[0]
        self.labelled = np.asarray(self.labelled, dtype=bool)
        self.sequence = np.zeros(n, dtype=np.int64) if self.sequence is None else np.asarray(self.sequence)
        self.frame = np.arange(n, dtype=np.int64) if self.frame is None else np.asarray(self.frame, dtype=np.int64)
        self.flags = np.full(n, -1, dtype=np.int8) if self.flags is None else np.asarray(self.flags, dtype=np.int8)
        self.uncertainty = (
            np.full(n, np.nan) if self.uncertainty is None else np.asarray(self.uncertainty, dtype=np.float64)
        )
        for name in ("labelled", "sequence", "frame", "flags", "uncertainty"):
            shape = getattr(self, name).shape
            if shape != (n,):
                raise ValueError(f"pool.{name} must have shape ({n},) like the features, got {shape}")
        if not np.isin(self.flags, (-1, 0, 1)).all():
            raise ValueError("pool.flags must hold only 1 (relevant), 0 (not now) or -1 (no flag)")
        self.seed = int(self.seed)

    def __len__(self) -> int:
        return self.features.shape[0]

    def mark_labelled(self, index: int) -> None:
        """Record that sample ``index`` now has a label (keeps the pool's caches valid)."""
        self.labelled[int(index)] = True

    def sequence_codes(self) -> np.ndarray:
        """Sequence ids as 0, 1, 2... in order of first appearance, shape (N,)."""
        if "codes" not in self._cache:
            if len(self) == 0:
                codes = np.zeros(0, dtype=np.int64)
            else:
                _, first, inverse = np.unique(self.sequence, return_index=True, return_inverse=True)
                # np.unique sorts ids by value; re-number them by first appearance instead.
                rank_of = np.empty(first.size, dtype=np.int64)
                rank_of[np.argsort(first, kind="stable")] = np.arange(first.size)
                codes = rank_of[inverse.ravel()]
            self._cache["codes"] = codes
        return self._cache["codes"]


# --------------------------------------------------------------------------- helpers


def sequential_order(pool: Pool) -> np.ndarray:
    """Pool indices sorted by (sequence, frame, index).

    Parameters
    ----------
    pool : Pool

    Returns
    -------
    ndarray of int64, shape (N,)
        Sequences in order of first appearance, frames ascending inside each,
        the pool index breaking ties.
    """
    if "order" not in pool._cache:
        idx = np.arange(len(pool))
        pool._cache["order"] = np.lexsort((idx, pool.frame, pool.sequence_codes())).astype(np.int64)
    return pool._cache["order"]


def _positions(pool: Pool) -> np.ndarray:
    """Position of each sample in :func:`sequential_order` (its inverse)."""
    if "positions" not in pool._cache:
        order = sequential_order(pool)
        pos = np.empty(order.size, dtype=np.int64)
        pos[order] = np.arange(order.size)
        pool._cache["positions"] = pos
    return pool._cache["positions"]


def _spread(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scores 1 for the first of the ``mask`` samples in ``values`` order, down to 0 for the last."""
    out = np.zeros(values.size, dtype=np.float64)
    count = int(mask.sum())
    if count:
        out[values[mask[values]]] = np.linspace(1.0, 0.0, count) if count > 1 else 1.0
    return out


def nearest_distances(x: np.ndarray, y: np.ndarray, x_sq: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distance from every row of ``x`` to its nearest row of ``y``.

    Parameters
    ----------
    x : ndarray, shape (N, D)
    y : ndarray, shape (M, D), M >= 1
    x_sq : ndarray, shape (N,), optional
        ``|x_i|^2`` if already known (saves one pass over ``x``).

    Returns
    -------
    ndarray of float64, shape (N,)

    Notes
    -----
    Blocks of ``x`` are multiplied with ``y`` in float32 (BLAS) using
    ``|x - y|^2 = |x|^2 + |y|^2 - 2 x.y``, so memory stays at a few tens of MB
    for any N; the cancellation error (about 1e-3 for unit-length features)
    is far below the distances a ranking cares about.
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if y.shape[0] == 0:
        raise ValueError("nearest_distances needs at least one reference row")
    yy = np.einsum("ij,ij->i", y, y)
    xx = np.einsum("ij,ij->i", x, x) if x_sq is None else np.asarray(x_sq, dtype=np.float32)
    out = np.empty(x.shape[0], dtype=np.float64)
    step = max(64, _CHUNK_ELEMENTS // max(1, y.shape[0]))
    for start in range(0, x.shape[0], step):
        block = x[start : start + step]
        d2 = block @ y.T
        d2 *= -2.0
        d2 += yy
        # The row norms do not change the argmin, so add them after the reduction.
        out[start : start + step] = d2.min(axis=1) + xx[start : start + step]
    return np.sqrt(np.maximum(out, 0.0))


# --------------------------------------------------------------------------- clusters


def cluster_labels(pool: Pool, window: int = 3, threshold: float = 16.0) -> np.ndarray:
    """Cluster id of every sample: known sequences split at
    :func:`~labelassist.workflow.sequences.find_boundaries`.

    Parameters
    ----------
    pool : Pool
    window, threshold
        As :func:`~labelassist.workflow.sequences.find_boundaries`.

    Returns
    -------
    ndarray of int64, shape (N,)
        0, 1, 2... in sequential order. Cached on the pool (features and order
        are fixed for its lifetime).
    """
    key = ("clusters", int(window), float(threshold))
    if key not in pool._cache:
        order = sequential_order(pool)
        codes = pool.sequence_codes()[order]
        breaks = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        cuts = find_boundaries(pool.features, order, window, threshold, breaks)
        starts = np.zeros(order.size, dtype=np.int64)
        starts[cuts] = 1
        labels = np.empty(order.size, dtype=np.int64)
        labels[order] = np.cumsum(starts)
        pool._cache[key] = labels
    return pool._cache[key]


# --------------------------------------------------------------------------- uncertainty


def mean_entropy(prob_map: np.ndarray) -> float:
    """Mean pixel-wise binary entropy of a foreground probability map.

    Parameters
    ----------
    prob_map : ndarray of float
        Foreground probability per pixel, in [0, 1] (float rounding of 1e-6
        beyond is tolerated); NaN pixels are ignored.

    Returns
    -------
    float
        ``mean(-p log2 p - (1 - p) log2 (1 - p))`` in bits per pixel, in [0, 1]:
        0 for a map of hard 0/1 decisions, 1 for a map of 0.5 everywhere.
        0 for an empty map or one that is all NaN.

    Raises
    ------
    ValueError
        Values outside [0, 1] (e.g. logits passed by mistake).
    """
    p = np.asarray(prob_map, dtype=np.float64)
    p = p[np.isfinite(p)] if np.isnan(p).any() else p.ravel()
    if p.size == 0:
        return 0.0
    if p.min() < -1e-6 or p.max() > 1.0 + 1e-6:
        raise ValueError(f"probabilities must lie in [0, 1], got values in [{p.min():g}, {p.max():g}]")
    p = np.clip(p, 0.0, 1.0)  # float32 rounding of a sigmoid or a blur may overshoot by an ulp
    q = 1.0 - p
    with np.errstate(divide="ignore", invalid="ignore"):
        # 0 log 0 = 0: xlogy-style masking keeps exact 0 and 1 at zero entropy.
        h = -(np.where(p > 0, p * np.log2(p), 0.0) + np.where(q > 0, q * np.log2(q), 0.0))
    return float(min(1.0, max(0.0, h.mean())))


# --------------------------------------------------------------------------- strategies


@register("selector", "sequential")
def sequential(pool: Pool) -> np.ndarray:
    """Earliest first: in sequence order, then frame order.

    Scores fall linearly from 1 (first unlabelled sample) to 0 (last).
    """
    return _spread(sequential_order(pool), ~pool.labelled)


@register("selector", "random")
def random(pool: Pool) -> np.ndarray:
    """Random order, reproducible: the same pool seed gives the same scores."""
    rng = np.random.default_rng([pool.seed, 0])
    scores = rng.random(len(pool))
    scores[pool.labelled] = 0.0
    return scores


@register("selector", "cherry_pick")
def cherry_pick(pool: Pool) -> np.ndarray:
    """The user's choice: flagged relevant 1, unflagged 0.5, 'not now' 0."""
    scores = np.where(pool.flags == 1, 1.0, np.where(pool.flags == 0, 0.0, 0.5))
    scores[pool.labelled] = 0.0
    return scores


@register(
    "selector",
    "sequence_aware",
    params=[
        Param("window", int, 3, low=1, high=50,
              help="Frames compared on each side of a step when looking for a new sequence "
                   "(1 = neighbours only)."),
        Param("threshold", float, 16.0, low=0.5, high=1000.0,
              help="How much a jump must stand out, in median steps between neighbours; "
                   "larger = fewer sequences."),
    ],
)
def sequence_aware(pool: Pool, window: int = 3, threshold: float = 16.0) -> np.ndarray:
    """One sample of every sequence or strong change before any is revisited.

    The pool is split into clusters at :func:`cluster_labels` (and at known
    sequence starts). Scores:

    * 1.0 for one random (seeded) unlabelled member of each cluster that has
      no labelled sample yet, 0.75 for its other members;
    * for clusters already represented, at most 0.5 for one random member and
      0.25 for the rest, scaled by how under-sampled the cluster is
      (``size / (labelled + 1)``, relative to the most under-sampled one), so
      revisits spread over the clusters in proportion to their size.

    Selecting repeatedly with this strategy alone therefore draws from every
    cluster before repeating one.
    """
    labels = cluster_labels(pool, window, threshold)
    unlabelled = ~pool.labelled
    scores = np.zeros(len(pool), dtype=np.float64)
    if not unlabelled.any():
        return scores
    n_clusters = int(labels.max()) + 1
    size = np.bincount(labels, minlength=n_clusters)
    done = np.bincount(labels[pool.labelled], minlength=n_clusters)
    # One representative per cluster: the unlabelled member with the largest seeded key,
    # stable while labelling goes on (it changes only when the representative is labelled).
    key = np.random.default_rng([pool.seed, 1]).random(len(pool))
    cand = np.flatnonzero(unlabelled)
    by_key = cand[np.lexsort((-key[cand], labels[cand]))]
    first = np.ones(by_key.size, dtype=bool)
    first[1:] = labels[by_key[1:]] != labels[by_key[:-1]]
    representative = np.zeros(len(pool), dtype=bool)
    representative[by_key[first]] = True

    need = size / (done + 1.0)
    open_clusters = np.bincount(labels[cand], minlength=n_clusters) > 0
    top_need = need[open_clusters & (done > 0)].max(initial=0.0)
    tier = np.where(done == 0, 1.0, 0.5 * need / top_need if top_need > 0 else 0.0)
    c = labels[cand]
    scores[cand] = np.where(representative[cand], tier[c], np.where(done[c] == 0, 0.75, 0.5 * tier[c]))
    return scores


@register(
    "selector",
    "uncertainty",
    params=[
        Param("missing", float, 0.5, low=0.0, high=1.0,
              help="Score of a sample the model has not predicted yet (0.5 = neutral)."),
    ],
)
def uncertainty(pool: Pool, missing: float = 0.5) -> np.ndarray:
    """Where the model is least sure: its mean pixel-wise entropy (see :func:`mean_entropy`).

    Samples without a prediction (NaN) score ``missing``.
    """
    scores = np.clip(np.where(np.isnan(pool.uncertainty), missing, pool.uncertainty), 0.0, 1.0)
    scores[pool.labelled] = 0.0
    return scores


@register("selector", "diversity")
def diversity(pool: Pool) -> np.ndarray:
    """Farthest from everything labelled (k-centre greedy), in feature space.

    Score = Euclidean distance to the nearest labelled sample, divided by the
    largest such distance among the unlabelled samples (so the farthest scores
    1). With nothing labelled yet, the distance to the pool's mean is used.
    Reusing one pool while labelling makes repeated calls incremental: only
    newly labelled samples are measured against the pool.
    """
    n = len(pool)
    unlabelled = ~pool.labelled
    scores = np.zeros(n, dtype=np.float64)
    if not unlabelled.any():
        return scores
    labelled_idx = np.flatnonzero(pool.labelled)
    if "sq_norms" not in pool._cache:
        pool._cache["sq_norms"] = np.einsum("ij,ij->i", pool.features, pool.features)
    x_sq = pool._cache["sq_norms"]
    if labelled_idx.size == 0:
        dist = nearest_distances(pool.features, pool.features.mean(axis=0, keepdims=True), x_sq)
    else:
        cached = pool._cache.get("diversity")
        if cached is not None and np.isin(cached[0], labelled_idx, assume_unique=True).all():
            seen, dist = cached
            new = np.setdiff1d(labelled_idx, seen, assume_unique=True)
            if new.size:
                dist = np.minimum(dist, nearest_distances(pool.features, pool.features[new], x_sq))
        else:
            dist = nearest_distances(pool.features, pool.features[labelled_idx], x_sq)
        pool._cache["diversity"] = (labelled_idx, dist)
    top = dist[unlabelled].max()
    if top > 0:
        scores[unlabelled] = dist[unlabelled] / top
    return scores


# --------------------------------------------------------------------------- combination


def _check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(weights, Mapping) or not weights:
        raise PluginError("no selector strategy is weighted; give at least one strategy a weight above 0")
    checked = {}
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not math.isfinite(w):
            raise PluginError(f"the weight of selector strategy '{name}' must be a number, got {w!r}")
        if w < 0:
            raise PluginError(f"the weight of selector strategy '{name}' is {w}; weights must be 0 or more")
        checked[str(name)] = float(w)
    if sum(checked.values()) <= 0:
        raise PluginError(
            "all selector weights are zero, so no strategy decides the next sample; "
            "give at least one strategy a weight above 0"
        )
    return checked


def combined_scores(pool: Pool, weights: Mapping[str, float],
                    params: Mapping[str, Mapping[str, Any]] | None = None, *,
                    registry: Registry | ProjectRegistry = REGISTRY) -> np.ndarray:
    """The combined score ``s(x) = sum_j w_j s_j(x) / sum_j w_j`` of every sample.

    Parameters
    ----------
    pool : Pool
    weights : mapping of str to float
        Strategy name -> weight (>= 0). Zero-weight strategies are checked
        (the name must exist) but not run.
    params : mapping of str to mapping, optional
        Strategy name -> its parameters (validated against the declared
        :class:`~labelassist.workflow.registry.Param` s).
    registry : Registry or ProjectRegistry, optional
        Where the strategy names are looked up: a project's registry
        (:meth:`~labelassist.workflow.registry.Registry.for_project`) to reach its
        plug-ins; default the built-in strategies only.

    Returns
    -------
    ndarray of float64, shape (N,)
        In [0, 1]; entries of labelled samples are meaningless.

    Raises
    ------
    PluginError
        A negative or non-numeric weight, all weights zero, an unknown strategy
        name, a bad parameter, or a strategy returning the wrong shape or
        values outside [0, 1].
    """
    checked = _check_weights(weights)
    params = dict(params or {})
    # Every name and parameter block is checked, weighted or not: a typo in the
    # project settings must not be silently ignored.
    steps = {name: registry.get("selector", name) for name in [*checked, *params]}
    resolved = {name: steps[name].resolve(params.get(name)) for name in steps}
    n = len(pool)
    total = np.zeros(n, dtype=np.float64)
    for name, w in checked.items():
        if w == 0:
            continue
        try:
            s = np.asarray(steps[name].func(pool, **resolved[name]), dtype=np.float64)
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plug-in failure is reported by name
            raise PluginError(f"selector strategy '{name}' failed: {type(exc).__name__}: {exc}") from exc
        if s.shape != (n,):
            raise PluginError(f"selector strategy '{name}' returned shape {s.shape}, expected ({n},)")
        s = np.where(pool.labelled, 0.0, s)
        if not np.isfinite(s).all() or s.min(initial=0.0) < -1e-9 or s.max(initial=0.0) > 1.0 + 1e-9:
            raise PluginError(f"selector strategy '{name}' returned scores outside [0, 1]")
        total += w * np.clip(s, 0.0, 1.0)
    return total / sum(checked.values())


def rank(pool: Pool, weights: Mapping[str, float],
         params: Mapping[str, Mapping[str, Any]] | None = None, *,
         registry: Registry | ProjectRegistry = REGISTRY) -> np.ndarray:
    """Unlabelled samples, best first.

    Parameters
    ----------
    pool : Pool
    weights, params, registry
        As :func:`combined_scores`.

    Returns
    -------
    ndarray of int64
        Indices of the unlabelled samples ordered by decreasing combined score;
        equal scores keep sequential order (sequence, frame, index), so the
        result is deterministic.

    Raises
    ------
    PluginError
        See :func:`combined_scores`.
    """
    scores = combined_scores(pool, weights, params, registry=registry)
    cand = np.flatnonzero(~pool.labelled)
    return cand[np.lexsort((_positions(pool)[cand], -scores[cand]))].astype(np.int64)


def select_next(pool: Pool, weights: Mapping[str, float],
                params: Mapping[str, Mapping[str, Any]] | None = None, *,
                registry: Registry | ProjectRegistry = REGISTRY) -> int | None:
    """The next sample to label, or None when every sample is labelled.

    Parameters and errors as :func:`rank`.
    """
    order = rank(pool, weights, params, registry=registry)
    return int(order[0]) if order.size else None
