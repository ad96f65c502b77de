"""Reduced grey-level features of a sample, for the selector.

The selector compares images by the Euclidean distance between small feature
vectors (Schilling et al. 2021: "reduced feature space"). The vectors are
computed once per sample, in the background, and cached by the caller in the
store as ``float32`` arrays; :data:`FEATURE_KIND` and :data:`FEATURE_VERSION`
name the recipe so a cache made by another recipe is recomputed, never mixed.

Recipe (:func:`extract_features`)
---------------------------------
1. :func:`labelassist.intensity.to_display` (the same percentile window the
   screen uses, so 8-bit, 16-bit and float images become comparable),
2. grey (RGB is converted with the usual luma weights),
3. ``cv2.resize(..., INTER_AREA)`` to 32 x 24 pixels (aspect ratio is not
   kept: every sample gets the same 768 numbers),
4. per-sample standardisation: zero mean, unit length.

Step 4 matters for sequence-boundary detection: on the medaka ventricle masks
it raised precision at equal recall compared with raw ``[0, 1]`` thumbnails,
because a beating heart changes the *amount* of foreground from frame to frame
while a new recording changes its *layout*. It also puts every distance in
``[0, 2]`` (``sqrt(2 - 2 cos)``), whatever the modality.
"""

from __future__ import annotations

import cv2
import numpy as np

from labelassist.intensity import to_display

__all__ = [
    "FEATURE_KIND",
    "FEATURE_VERSION",
    "FEATURE_ID",
    "FEATURE_SIZE",
    "grey_thumbnail_features",
    "standardize",
    "extract_features",
]

#: Name of the recipe of :func:`extract_features`; stored beside cached vectors.
FEATURE_KIND = "grey-thumb-32x24-zscore"
#: Bumped whenever :func:`extract_features` would return different numbers.
FEATURE_VERSION = 1
#: ``"<kind>/v<version>"``: one string to compare with a cache's label.
FEATURE_ID = f"{FEATURE_KIND}/v{FEATURE_VERSION}"
#: Thumbnail size (width, height) in pixels used by :func:`extract_features`.
FEATURE_SIZE = (32, 24)


def grey_thumbnail_features(image: np.ndarray, size: tuple[int, int] = (32, 24)) -> np.ndarray:
    """A tiny grey thumbnail as a flat vector in [0, 1].

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(H, W, 3)`` RGB, ``uint8``, ``uint16``, ``float32`` or
        ``bool`` (a mask: False = 0, True = 1).
    size : (int, int)
        Thumbnail (width, height) in pixels, OpenCV order. The aspect ratio of
        ``image`` is not kept.

    Returns
    -------
    ndarray of float32, shape (width * height,)
        Row-major thumbnail, 0 = black and 1 = white of the display window.

    Notes
    -----
    ``INTER_AREA`` averages every source pixel, so the result does not alias
    on fine texture and costs about a millisecond for a 512 x 512 image.
    """
    width, height = int(size[0]), int(size[1])
    if width < 1 or height < 1:
        raise ValueError(f"thumbnail size must be positive, got {size!r}")
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) or 0 in image.shape[:2]:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    if image.dtype == np.bool_:
        # A mask is already two-level: 0/255 directly, no percentile window to compute.
        shown = image.astype(np.uint8) * np.uint8(255)
    else:
        shown = to_display(image)
    if shown.ndim == 3:
        shown = cv2.cvtColor(np.ascontiguousarray(shown), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(np.ascontiguousarray(shown), (width, height), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32).ravel() * np.float32(1.0 / 255.0)


def standardize(features: np.ndarray) -> np.ndarray:
    """Zero mean and unit Euclidean length per vector.

    Parameters
    ----------
    features : ndarray, shape (D,) or (N, D)
        One vector or one per row.

    Returns
    -------
    ndarray of float32, same shape
        Each vector minus its mean, divided by its length; a constant vector
        (a flat image) becomes all zeros rather than NaN. Distances between
        results lie in ``[0, 2]``.
    """
    x = np.asarray(features, dtype=np.float32)
    centred = x - x.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(centred, axis=-1, keepdims=True)
    # Flat images: below float32 noise there is no layout to compare.
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(norm > 1e-6, centred / norm, np.float32(0.0))
    return out.astype(np.float32, copy=False)


def extract_features(image: np.ndarray) -> np.ndarray:
    """The selector's feature vector of one sample (recipe :data:`FEATURE_ID`).

    Parameters
    ----------
    image : ndarray
        As :func:`grey_thumbnail_features` accepts (images or boolean masks).

    Returns
    -------
    ndarray of float32, shape (768,)
        Standardised 32 x 24 grey thumbnail (see the module notes).
    """
    return standardize(grey_thumbnail_features(image, FEATURE_SIZE))
