"""Agreement between two binary masks."""

from __future__ import annotations

import numpy as np


def dice(a: np.ndarray, b: np.ndarray, empty: float = 1.0) -> float:
    """Dice-Sørensen coefficient DSC = 2|a ∩ b| / (|a| + |b|).

    Parameters
    ----------
    a, b : ndarray of bool, same shape
        Masks; any non-zero value counts as foreground.
    empty : float
        Value returned when both masks are empty (they agree perfectly).

    Returns
    -------
    float
        In [0, 1]; 1 means identical foreground.
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in size: {a.shape} and {b.shape}")
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return float(empty)
    return 2.0 * int(np.count_nonzero(a & b)) / total


def correction_effort(prelabel: np.ndarray, truth: np.ndarray) -> float:
    """Pixels an annotator must change to turn ``prelabel`` into ``truth``, relative to scratch.

    Labelling from scratch means painting every foreground pixel of ``truth``;
    correcting means flipping every pixel where the two masks differ. The ratio
    is 0 for a perfect pre-label and 1 for an empty one (it can exceed 1 for a
    pre-label that is worse than nothing).

    Parameters
    ----------
    prelabel, truth : ndarray of bool, same shape

    Returns
    -------
    float
        ``|prelabel xor truth| / |truth|``; 0 when both are empty, inf when only
        ``truth`` is empty and the pre-label is not.
    """
    prelabel = np.asarray(prelabel, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if prelabel.shape != truth.shape:
        raise ValueError(f"masks differ in size: {prelabel.shape} and {truth.shape}")
    changed = int(np.count_nonzero(prelabel ^ truth))
    scratch = int(np.count_nonzero(truth))
    if scratch == 0:
        return 0.0 if changed == 0 else float("inf")
    return changed / scratch
