"""Deliberate damage to true masks, shared by the inspection and post-processing tests."""

from __future__ import annotations

import numpy as np

from labelassist.workflow import components


def cut(mask: np.ndarray, label: int = 1, thickness: int = 1) -> np.ndarray:
    """Erase a horizontal line across segment ``label`` at its middle row.

    Parameters
    ----------
    mask : ndarray of bool
        A true mask; not modified.
    label : int
        The segment, numbered as :func:`labelassist.workflow.components.label_segments` numbers them.
    thickness : int
        Rows erased, from the middle row down.

    Returns
    -------
    ndarray of bool
        A copy with the segment cut in two (when the line crosses it whole).
    """
    labels, _ = components.label_segments(mask)
    rows = np.flatnonzero((labels == label).any(axis=1))
    middle = (rows[0] + rows[-1]) // 2
    band = slice(middle, middle + thickness)
    out = mask.copy()
    out[band] &= labels[band] != label
    return out
