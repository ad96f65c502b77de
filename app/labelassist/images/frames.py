"""What a frame is once read: the files accepted, the size limit, the arrays every reader returns.

Every reader (:mod:`~labelassist.images.decode`) checks a file with :func:`_check_file`
before touching it, refuses frames above :data:`MAX_BYTES` with :func:`_check_geometry`
and hands its decoded pixels to :func:`_normalise`, which gives the ``(H, W)`` grey or
``(H, W, 3)`` RGB ``uint8``/``uint16``/``float32`` arrays that leave the package.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelassist.fileio import read_error as _read_error

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "MAX_BYTES",
    "MAX_PIXELS",
    "FrameInfo",
    "decoded_bytes",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
"""Still-image file extensions (lower case) that :func:`read_image` accepts."""

VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv"})
"""Video file extensions read through OpenCV (FFmpeg); each frame is one sample."""

TIFF_EXTENSIONS = frozenset({".tif", ".tiff"})
"""Extensions read with tifffile (one frame per full-resolution page)."""

MAX_BYTES = 256 * 2**20
"""Largest decoded frame accepted, in bytes of its array (height x width x
channels x bytes per value): 8192 x 8192 RGB 8-bit or 16-bit grey fit. Bigger
files are refused before decoding, because decoding them (and the pre-label's
working copies, several times the frame) would exhaust a tablet's memory. It
counts bytes, not pixels, because a 16-bit RGB frame needs six times the
memory of an 8-bit grey one with the same pixels."""

MAX_PIXELS = MAX_BYTES
"""The limit in pixels of an 8-bit grey frame (kept for callers of earlier versions)."""

_SUPPORTED = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS


def _supported_list() -> str:
    images = ", ".join(sorted(IMAGE_EXTENSIONS))
    videos = ", ".join(sorted(VIDEO_EXTENSIONS))
    return f"images {images}; videos {videos}"


# --------------------------------------------------------------------------- frame info


@dataclass(frozen=True)
class FrameInfo:
    """Geometry and pixel type of one frame, as :func:`read_image` will return it.

    Attributes
    ----------
    path : Path
        The file.
    page : int
        Frame index inside the file: the full-resolution TIFF page (reduced
        resolution and thumbnail pages are not counted), the video frame, or 0.
    height, width : int
        Frame size in pixels.
    dtype : str
        Numpy dtype name of the array :func:`read_image` returns
        (``'uint8'``, ``'uint16'`` or ``'float32'``).
    channels : int
        1 (grey, array ``(H, W)``) or 3 (RGB, array ``(H, W, 3)``).
    """

    path: Path
    page: int
    height: int
    width: int
    dtype: str
    channels: int


def _output_dtype(dtype: np.dtype, path: Path) -> np.dtype:
    """The dtype :func:`read_image` returns for stored pixels of ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype in (np.uint8, np.uint16, np.float32):
        return dtype
    if dtype.kind in "iuf":
        # int8/int16 and floats fit float32 exactly; int32/uint32/(u)int64 keep
        # their value up to 2**24 and approximately beyond, which is ample for display.
        return np.dtype(np.float32)
    raise _read_error(path, f"its pixel type {dtype.name} is not supported")


def _convert_dtype(arr: np.ndarray, path: Path) -> np.ndarray:
    out = _output_dtype(arr.dtype, path)
    if arr.dtype == out:
        return arr
    if arr.dtype == np.bool_:
        return arr.view(np.uint8) * np.uint8(255)
    return arr.astype(out)


def decoded_bytes(height: int, width: int, channels: int = 1, itemsize: int = 1) -> int:
    """Bytes of the array a frame decodes to.

    Parameters
    ----------
    height, width : int
        Frame size in pixels.
    channels : int, optional
        Values per pixel as the decoder delivers them (alpha included).
    itemsize : int, optional
        Bytes per value (1 for 8-bit, 2 for 16-bit, 4 for float32...).

    Returns
    -------
    int
    """
    return int(height) * int(width) * max(1, int(channels)) * max(1, int(itemsize))


def _check_geometry(path: Path, height: int, width: int, channels: int, itemsize: int = 1) -> None:
    """Refuse frames with no pixels, too many bytes (:data:`MAX_BYTES`) or odd channel counts."""
    if height <= 0 or width <= 0:
        raise _read_error(path, f"the image has no pixels ({width} x {height})")
    size = decoded_bytes(height, width, channels, itemsize)
    if size > MAX_BYTES:
        raise _read_error(
            path,
            f"the image is too large ({width} x {height} pixels, {size / 2**20:.0f} MB decoded; "
            f"the limit is {MAX_BYTES / 2**20:.0f} MB)",
        )
    if channels not in (1, 3, 4):
        raise _read_error(path, f"it has {channels} colour channels (expected 1, 3 or 4)")


def _normalise(arr: np.ndarray, path: Path, bgr: bool, keep_alpha: bool = False) -> np.ndarray:
    """Decoded pixels -> ``(H, W)`` or ``(H, W, 3)`` RGB in an output dtype.

    ``bgr`` says the channels come from OpenCV (BGR/BGRA order). With
    ``keep_alpha`` a 4-channel frame stays ``(H, W, 4)`` RGBA (for masks, whose
    pixels may be in the alpha channel only).
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        _check_geometry(path, arr.shape[0], arr.shape[1], 1, arr.itemsize)
    elif arr.ndim == 3:
        _check_geometry(path, arr.shape[0], arr.shape[1], arr.shape[2], arr.itemsize)
        if keep_alpha and arr.shape[2] == 4:
            arr = arr[:, :, [2, 1, 0, 3]] if bgr else arr  # BGRA -> RGBA
        elif bgr:
            arr = arr[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
        else:
            arr = arr[:, :, :3]
    else:
        raise _read_error(path, f"it has {arr.ndim} dimensions (expected a 2-D image)")
    return np.ascontiguousarray(_convert_dtype(arr, path))


def _check_file(path: str | os.PathLike) -> tuple[Path, int]:
    """Existence, type, size and extension checks shared by every reader; returns (path, size)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _read_error(path, "the file does not exist") from None
    except OSError as exc:
        raise _read_error(path, exc.strerror or str(exc)) from None
    if stat.S_ISDIR(st.st_mode):
        raise _read_error(path, "it is a folder, not a file")
    ext = path.suffix.lower()
    if ext not in _SUPPORTED:
        kind = f"{ext} files are" if ext else "files without an extension are"
        raise _read_error(path, f"{kind} not supported (supported: {_supported_list()})")
    if st.st_size == 0:
        raise _read_error(path, "the file is empty (0 bytes)")
    return path, st.st_size


def _read_head_tail(path: Path, size: int, head: int, tail: int) -> tuple[bytes, bytes]:
    try:
        with open(path, "rb") as fh:
            first = fh.read(head)
            fh.seek(max(0, size - tail))
            last = fh.read(tail)
    except OSError as exc:
        raise _read_error(path, exc.strerror or str(exc)) from None
    return first, last
