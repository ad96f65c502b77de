"""The network's input pixels from an image, as its card says (percentile, unit or mean/std)."""

from __future__ import annotations

import numpy as np

from labelassist import intensity
from labelassist.models.card import ModelCard, ModelError

__all__ = ["percentile_normalise", "normalise"]


def percentile_normalise(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Grey float32 in [0, 1]; the image's own ``low``/``high`` percentiles map to 0 and 1.

    Identical to ``labelassist.training.core.percentile_normalise`` (what the
    shipped models were trained with). Non-finite pixels become 0; a flat
    image becomes all 0.
    """
    return intensity.percentile_rescale_per_channel(intensity.to_grey_float32(image), low, high)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.size == 0 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ModelError(f"a model needs a grey (H, W) or RGB (H, W, 3) image, got shape {image.shape}")
    if image.dtype.kind not in "biuf":
        raise ModelError(f"a model cannot use {image.dtype} pixels")
    if image.dtype == np.bool_:
        image = image.astype(np.uint8)
    return image


def normalise(image: np.ndarray, card: ModelCard) -> np.ndarray:
    """The network's input pixels at image resolution: (H, W) for 1 channel, (H, W, 3) for 3."""
    image = _check_image(image)
    if card.channels == 1:
        x = intensity.to_grey_float32(image)
    else:
        x = image[:, :, :3] if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    kind = card.normalisation.get("kind", "percentile")
    if kind == "percentile":
        low, high = card.normalisation.get("low", 0.5), card.normalisation.get("high", 99.5)
        return intensity.percentile_rescale_per_channel(x.astype(np.float32, copy=False), low, high)
    if x.dtype not in (np.uint8, np.uint16, np.float32):
        x = x.astype(np.float32)
    out = intensity.as_float01(np.ascontiguousarray(x))
    if kind == "meanstd":
        mean = np.asarray(card.normalisation["mean"], np.float32)
        std = np.asarray(card.normalisation["std"], np.float32)
        out = (out - mean) / std
    return out.astype(np.float32, copy=False)
