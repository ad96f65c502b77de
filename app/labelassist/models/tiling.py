"""Tiles for images larger than the network's input: where they start, how big, how they blend.

Images larger than the network's tile are run as overlapping tiles whose predictions are
blended with weights that fall towards each tile's border (the least reliable part of a
fully convolutional prediction); :meth:`labelassist.models.Model.predict_normalised` runs them.
"""

from __future__ import annotations

import math

import numpy as np


def _tile_length(length: int, tile: int, overlap: int, multiple: int) -> int:
    """Side of the tiles that cover ``length`` with the fewest tiles of at most ``tile``."""
    if length <= tile:
        return -(-length // multiple) * multiple
    n = math.ceil((length - overlap) / (tile - overlap))
    side = math.ceil((length + (n - 1) * overlap) / n)
    return min(tile, -(-side // multiple) * multiple)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: stride ``tile - overlap``, the last tile flush with the end."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    n = math.ceil((length - tile) / stride) + 1
    starts = [min(i * stride, length - tile) for i in range(n)]
    return sorted(set(starts))


def _blend_window(th: int, tw: int, overlap: int) -> np.ndarray:
    """Weights rising linearly over ``overlap`` pixels from each tile border (never exactly 0)."""

    def ramp(n):
        if overlap <= 0:
            return np.ones(n, np.float32)
        d = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(np.float32)
        return np.clip((d + 0.5) / overlap, 1e-3, 1.0)

    return np.outer(ramp(th), ramp(tw)).astype(np.float32)
