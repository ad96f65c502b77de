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
