"""Lossless, compact encoding of binary masks for the label store.

A binary mask is packed to one bit per pixel and deflated: a 2048² mask with
smooth blobs takes a few kilobytes, and decoding is a few milliseconds.
"""

from __future__ import annotations

import zlib

import numpy as np

CODEC = "packbits-zlib"


def encode_mask(mask: np.ndarray) -> bytes:
    """Pack a 2-D boolean mask to bytes (row-major, one bit per pixel, zlib level 6).

    The shape is not stored in the blob; the store keeps height and width beside it.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {mask.shape}")
    return zlib.compress(np.packbits(mask.astype(bool, copy=False), axis=None).tobytes(), 6)


def decode_mask(blob: bytes, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_mask`; returns a ``(height, width)`` bool array."""
    bits = np.frombuffer(zlib.decompress(blob), dtype=np.uint8)
    n = height * width
    if bits.size * 8 < n:
        raise ValueError(f"mask blob holds {bits.size * 8} pixels, expected {n}")
    return np.unpackbits(bits, count=n).astype(bool).reshape(height, width)


def encode_delta(indices: np.ndarray, values: np.ndarray) -> bytes:
    """Pack a sparse mask change: flat pixel ``indices`` (ascending or not) and their new bool ``values``.

    Used for the stroke journal: a few hundred bytes per stroke instead of a mask.
    """
    indices = np.ascontiguousarray(indices, dtype="<u4").ravel()
    values = np.asarray(values, dtype=bool).ravel()
    if indices.size != values.size:
        raise ValueError(f"{indices.size} indices but {values.size} values")
    # Sorted indices deflate far better as differences; the sort is undone by keeping values paired.
    order = np.argsort(indices, kind="stable")
    indices, values = indices[order], values[order]
    diffs = np.diff(indices, prepend=np.uint32(0)).astype("<u4")
    header = np.array([indices.size], dtype="<u4").tobytes()
    return zlib.compress(header + diffs.tobytes() + np.packbits(values).tobytes(), 6)


def decode_delta(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_delta`: ``(indices uint32 ascending, values bool)``."""
    raw = zlib.decompress(blob)
    n = int(np.frombuffer(raw[:4], dtype="<u4")[0])
    diffs = np.frombuffer(raw[4 : 4 + 4 * n], dtype="<u4")
    indices = np.cumsum(diffs, dtype=np.uint64).astype(np.uint32)
    values = np.unpackbits(np.frombuffer(raw[4 + 4 * n :], dtype=np.uint8), count=n).astype(bool)
    return indices, values
