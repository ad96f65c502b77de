"""Numpy arrays as Kivy textures: a picture on a screen, a label tinted over its image."""

from __future__ import annotations

import numpy as np
from kivy.graphics.texture import Texture


def numpy_texture(rgb: np.ndarray) -> Texture:
    """A texture showing an (H, W[, 3]) uint8 array with row 0 at the top."""
    rgb = np.ascontiguousarray(rgb)
    fmt = "luminance" if rgb.ndim == 2 else "rgb"
    texture = Texture.create(size=(rgb.shape[1], rgb.shape[0]), colorfmt=fmt, mipmap=False)
    texture.flip_vertical()
    texture.blit_buffer(rgb.tobytes(), colorfmt=fmt, bufferfmt="ubyte")
    return texture


def composite(display: np.ndarray, mask: np.ndarray, max_side: int = 1024) -> np.ndarray:
    """The image with the mask tinted magenta, at most ``max_side`` pixels (before/after views)."""
    step = max(1, int(np.ceil(max(display.shape[:2]) / max_side)))
    grey = display[::step, ::step]
    rgb = np.repeat(grey[..., None], 3, axis=2) if grey.ndim == 2 else grey[..., :3].copy()
    m = mask[::step, ::step]
    tint = np.array([255, 40, 200], np.float32)
    rgb = rgb.astype(np.float32)
    rgb[m] = rgb[m] * 0.45 + tint * 0.55
    return rgb.astype(np.uint8)
