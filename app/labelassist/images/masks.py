"""Binary masks from image files: which channel holds the mask, and which values count as binary."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelassist.errors import MaskError
from labelassist.images.decode import _read_frame, tiff_planes

__all__ = ["MaskRead", "read_mask", "read_mask_details"]


def _unique_values(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values; a histogram for 8/16-bit data is much faster than sorting."""
    if values.dtype in (np.uint8, np.uint16):
        counts = np.bincount(values.ravel(), minlength=256)
        return np.flatnonzero(counts).astype(values.dtype)
    return np.unique(values)  # NaNs collapse into one


def _format_values(values: np.ndarray, limit: int = 8) -> str:
    def fmt(v) -> str:
        return str(int(v)) if float(v).is_integer() else f"{float(v):g}"

    shown = ", ".join(fmt(v) for v in values[:limit])
    if len(values) > limit:
        shown += f" …and {len(values) - limit} more"
    return shown


def _binary(path: Path, values: np.ndarray, where: str = "") -> np.ndarray:
    """``values != 0`` after checking they are a binary encoding (0/255, 0/1, 0/65535)."""
    found_values = _unique_values(values)
    allowed = [{0, 255}, {0, 1}] + ([{0, 65535}] if values.dtype == np.uint16 else [])
    found = set(found_values.tolist())
    if not any(found <= ok for ok in allowed):
        raise MaskError(
            f"{path.name} is not a binary mask: {where or 'found'} values {_format_values(found_values)} "
            "(expected 0 and 255, or 0 and 1)"
        )
    return values != 0


def _uniform(values: np.ndarray) -> bool:
    return len(_unique_values(values)) <= 1


@dataclass(frozen=True)
class MaskRead:
    """A mask as :func:`read_mask_details` read it.

    Attributes
    ----------
    mask : ndarray of bool, shape (H, W)
    channel : str
        Where the mask was: ``'grey'`` (one channel), ``'colour'`` (equal colour
        channels) or ``'alpha'`` (the alpha channel, the colour channels being blank).
    """

    mask: np.ndarray
    channel: str


def read_mask_details(path: str | os.PathLike, page: int = 0) -> MaskRead:
    """Read a binary mask, saying which channel held it.

    Rules, in order:

    * a grey mask is the mask;
    * colour channels must be equal (a colour mask with different channels is refused);
      a TIFF page whose colour channels are stored as separate planes and differ is
      refused with its own message, because that is how tifffile saves a ``(3, H, W)``
      stack of three masks, which must be pages instead;
    * an alpha channel that is not uniform is the mask when the colour channels are
      uniform (a mask drawn on a transparent layer); when both vary they must hold the
      same mask, else the file is refused; a uniform alpha channel is ignored.

    Values must be binary: 0/255, 0/1 or, for 16-bit files, 0/65535; a single value is
    accepted too (all 0 = empty, all 255 or all 1 = full).

    Parameters
    ----------
    path : path-like
        A mask image (any format :func:`read_image` reads).
    page : int, optional
        TIFF page or video frame.

    Returns
    -------
    MaskRead

    Raises
    ------
    ImageReadError
        The file cannot be read (see :func:`read_image`).
    MaskError
        The values are not binary, or the rules above refuse the file.
    """
    path = Path(path)
    image = _read_frame(path, page, keep_alpha=True)
    alpha = None
    if image.ndim == 3 and image.shape[2] == 4:
        image, alpha = image[..., :3], image[..., 3]
    channel = "grey"
    if image.ndim == 3:
        if not (np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])):
            planes = tiff_planes(path, page)
            if planes > 1:
                raise MaskError(
                    f"{path.name} holds {planes} different masks as the colour planes of one TIFF page; "
                    f"save them as {planes} pages (one mask per page)")
            raise MaskError(f"{path.name} is not a binary mask: its colour channels differ")
        image, channel = image[..., 0], "colour"
    if alpha is None or _uniform(alpha):
        return MaskRead(_binary(path, image), channel)
    if _uniform(image):
        return MaskRead(_binary(path, alpha, "its alpha channel has"), "alpha")
    colour_mask, alpha_mask = _binary(path, image), _binary(path, alpha, "its alpha channel has")
    if not np.array_equal(colour_mask, alpha_mask):
        raise MaskError(f"{path.name} holds one mask in its colour channels and a different one in its alpha "
                        "channel; save the mask in one of them only")
    return MaskRead(colour_mask, channel)


def read_mask(path: str | os.PathLike, page: int = 0) -> np.ndarray:
    """Read a binary mask as a boolean array (see :func:`read_mask_details` for the rules).

    Parameters
    ----------
    path : path-like
        A mask image (any format :func:`read_image` reads).
    page : int, optional
        TIFF page or video frame.

    Returns
    -------
    ndarray of bool, shape (H, W)
        True where the mask is non-zero.

    Raises
    ------
    ImageReadError
        The file cannot be read (see :func:`read_image`).
    MaskError
        The values are not binary, or the channels disagree.
    """
    return read_mask_details(path, page).mask
