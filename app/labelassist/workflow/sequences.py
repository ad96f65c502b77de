"""Where a new sequence or a strong change starts in an ordered pool of feature vectors.

The ``sequence_aware`` selector strategy (:mod:`labelassist.workflow.selector`) draws one sample
of every cluster before it revisits any; the clusters are the known sequences split where the
images change strongly. A step between neighbouring frames is scored by how far each side is
from the frames just before and after it (:func:`boundary_scores`, so periodic motion that
returns within a few frames does not count), and the chain of frames is cut where a step stands
out against the variation inside both neighbouring clusters (:func:`find_boundaries`,
Felzenszwalb-Huttenlocher on a chain). Numpy in and out; the features are the cached selector
features (:mod:`labelassist.workflow.features`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["boundary_scores", "find_boundaries"]


def _lag_distances(features: np.ndarray, order: np.ndarray, lags: int) -> np.ndarray:
    """``out[k - 1, i] = |x_i - x_{i-k}|`` along ``order`` for k = 1..lags (inf for i < k).

    Rows are gathered block by block, so no (N, D) copy of the features is made
    (at N = 100 000, D = 768 that copy alone costs more than all the arithmetic).
    """
    m = order.size
    out = np.full((lags, m), np.inf)
    # Small blocks (about 4 MB) stay in cache across the lags: 2-3x faster than large ones.
    step = max(16, (1 << 20) // max(1, features.shape[1]))
    for start in range(0, m, step):
        stop = min(m, start + step)
        lo = max(0, start - lags)
        block = features[order[lo:stop]]
        for k in range(1, lags + 1):
            first = max(start, k)  # positions i in [first, stop) that have a partner i - k
            if first >= stop:
                continue
            diff = block[first - lo : stop - lo] - block[first - k - lo : stop - k - lo]
            out[k - 1, first:stop] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def boundary_scores(features: np.ndarray, order: np.ndarray | None = None, window: int = 1,
                    breaks: np.ndarray | None = None) -> np.ndarray:
    """How strongly the samples change at each step of an ordered pool.

    Parameters
    ----------
    features : ndarray, shape (N, D)
    order : ndarray of int, shape (M,), optional
        Pool indices in sequence order. Default: ``arange(N)``.
    window : int
        Look-back / look-ahead in frames. 1 gives the plain Euclidean distance
        between consecutive samples. With ``window = w`` the score of the step
        into position ``i`` is the smaller of (a) the distance from sample
        ``i`` to the nearest of the ``w`` samples before it and (b) the
        distance from sample ``i - 1`` to the nearest of the ``w`` samples from
        ``i`` on: a step is only large when *neither* side has seen anything
        like the other, so periodic motion (a beating heart, a swimming cell)
        that returns within ``w`` frames does not look like a new sequence.
    breaks : ndarray of int, optional
        Positions (in ``order``) where a known sequence starts; windows never
        look across them.

    Returns
    -------
    ndarray of float64, shape (M - 1,)
        Score of the step between positions ``i - 1`` and ``i`` at index ``i - 1``,
        in feature units; ``inf`` at ``breaks``.
    """
    features = np.asarray(features, dtype=np.float32)
    order = np.arange(features.shape[0]) if order is None else np.asarray(order, dtype=np.int64)
    m = order.size
    window = int(window)
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if m < 2:
        return np.zeros(0, dtype=np.float64)
    segment = np.zeros(m, dtype=np.int64)
    if breaks is not None and len(breaks):
        segment[np.asarray(breaks, dtype=np.int64)] = 1
        segment = np.cumsum(segment)
    w = min(window, m - 1)
    # lag[k - 1, i] = |x_i - x_{i-k}|, inf where that pair crosses a break or the start;
    # padded with inf on the right so the look-ahead below can index past the end.
    lag = np.full((w, m + w), np.inf)
    lag[:, :m] = _lag_distances(features, order, w)
    for k in range(1, w + 1):
        lag[k - 1, k:m][segment[k:] != segment[:-k]] = np.inf
    before = lag[:, 1:m].min(axis=0)  # (a): sample i against the w before it
    after = np.full(m - 1, np.inf)
    for k in range(1, w + 1):  # (b): sample i-1 against x_{i-1+k}, k = 1..w
        np.minimum(after, lag[k - 1, k : m - 1 + k], out=after)
    return np.minimum(before, after)


def _felzenszwalb_chain(scores: np.ndarray, tau: float, forced: np.ndarray) -> np.ndarray:
    """Felzenszwalb-Huttenlocher segmentation of a chain; returns the cut positions.

    Steps are visited from the smallest up; two neighbouring clusters A, B merge
    when the step between them is at most ``min(Int(A) + tau/|A|, Int(B) + tau/|B|)``,
    Int being the largest step already inside a cluster. A jump therefore
    starts a new cluster only if it stands out against the variation *inside
    both neighbours*, which adapts the threshold to each stretch of the pool
    (a smooth time-lapse next to a jumpy stack of unrelated fields).
    """
    m = scores.size + 1
    end_of = list(range(m))  # valid at cluster starts
    start_of = list(range(m))  # valid at cluster ends
    internal = [0.0] * m  # valid at cluster starts
    share = [0.0] + [tau / size for size in range(1, m + 1)]  # tau / |C|, looked up not divided
    merged = bytearray(m - 1)
    steps = scores.tolist()
    blocked = set((np.asarray(forced, dtype=np.int64) - 1).tolist())
    # Plain Python lists and locals: this loop is the only per-step Python code
    # (about 0.1 s at N = 100 000, and its result is cached on the pool).
    for e in np.argsort(scores, kind="stable").tolist():
        if e in blocked:
            continue
        a = start_of[e]  # cluster ending at position e (left of the step)
        b = e + 1  # cluster starting at position e + 1 (right of the step)
        b_end = end_of[b]
        d = steps[e]
        if d <= internal[a] + share[b - a] and d <= internal[b] + share[b_end - e]:
            end_of[a] = b_end
            start_of[b_end] = a
            internal[a] = d  # visited in increasing order: d is the new largest step inside
            merged[e] = 1
    cut = np.frombuffer(bytes(merged), dtype=np.uint8) == 0
    return np.flatnonzero(cut) + 1


def find_boundaries(features: np.ndarray, order: np.ndarray | None = None, window: int = 3,
                    threshold: float = 16.0, breaks: np.ndarray | None = None) -> np.ndarray:
    """Where a new sequence or a strong change starts in an ordered pool.

    Parameters
    ----------
    features : ndarray, shape (N, D)
        Reduced feature vectors (:mod:`labelassist.workflow.features`).
    order : ndarray of int, shape (M,), optional
        Pool indices in sequence order (frame order within known sequences,
        the sorted pool otherwise). Default: ``arange(N)``.
    window : int
        Frames compared on each side of a step (:func:`boundary_scores`);
        1 = consecutive distances only.
    threshold : float
        Contrast needed for a cut, in median steps (the median of all nonzero
        step scores, so the rule has no units and adapts to the pool): a step
        starts a new cluster when it exceeds, for at least one of the two
        neighbouring clusters, the largest step inside it plus
        ``threshold / size`` median steps (Felzenszwalb-Huttenlocher on the
        chain of frames). Larger = fewer clusters.
    breaks : ndarray of int, optional
        Positions in ``order`` that are known sequence starts; they are always
        returned and windows never look across them.

    Returns
    -------
    ndarray of int64
        Sorted positions ``i`` in ``order`` (1 <= i < M) such that ``order[i]``
        starts a new cluster.

    Notes
    -----
    On the 503 medaka ventricle masks (25 recordings, one ordered pool, no
    file numbers used) the defaults find the true boundaries with precision
    1.00 and recall 0.92; see ``tests/test_selector.py``.
    """
    features = np.asarray(features)
    order = np.arange(features.shape[0]) if order is None else np.asarray(order, dtype=np.int64)
    m = order.size
    forced = np.zeros(0, dtype=np.int64) if breaks is None else np.unique(np.asarray(breaks, dtype=np.int64))
    if forced.size and (forced[0] < 1 or forced[-1] >= m):
        raise ValueError(f"breaks must lie in [1, {m - 1}]")
    if m < 2:
        return forced
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    scores = boundary_scores(features, order, window, forced)
    inside = np.ones(m - 1, dtype=bool)
    inside[forced - 1] = False
    usable = scores[inside & (scores > 0) & np.isfinite(scores)]
    if usable.size == 0:  # nothing changes anywhere (or only known breaks)
        return forced
    tau = float(threshold) * float(np.median(usable))
    scores = np.where(np.isfinite(scores), scores, 0.0)
    return np.union1d(_felzenszwalb_chain(scores, tau, forced), forced).astype(np.int64)
