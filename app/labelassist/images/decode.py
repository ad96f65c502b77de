"""Decoding images, TIFF stacks and videos: :func:`probe` lists the frames, :func:`read_image` decodes one.

PNG, JPEG and BMP go through OpenCV after their headers were checked
(:mod:`~labelassist.images.headers`); TIFF through tifffile (OpenCV's libtiff for the
compressions tifffile lacks); videos through OpenCV (FFmpeg). Every loop over the pages or
frames of a file stops at :data:`MAX_FRAMES`.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import tifffile

from labelassist.errors import ImageReadError
from labelassist.fileio import read_error as _read_error
from labelassist.images.frames import (
    TIFF_EXTENSIONS,
    VIDEO_EXTENSIONS,
    FrameInfo,
    _check_file,
    _check_geometry,
    _normalise,
    _output_dtype,
)
from labelassist.images.headers import _png_verify, _single_header

__all__ = ["MAX_FRAMES", "probe", "read_image", "tiff_planes"]

MAX_FRAMES = 20_000
"""Most frames (TIFF page directories, video frames) read from one file. Every
loop over the pages or frames of a file stops here, so a damaged file whose
page directories point back at themselves cannot make an import run forever."""


def _decode_single(path: Path, keep_alpha: bool = False) -> np.ndarray:
    try:
        # imdecode of the bytes, not imread: cv2.imread cannot open non-ASCII paths on Windows.
        buffer = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise _read_error(path, exc.strerror or str(exc)) from None
    arr = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise _read_error(path, f"the {path.suffix.lower().lstrip('.').upper()} data could not be decoded")
    return _normalise(arr, path, bgr=True, keep_alpha=keep_alpha)


def _probe_single(path: Path, size: int) -> list[FrameInfo]:
    header = _single_header(path, size)
    header.check(path)  # refuse huge files before decoding
    if path.suffix.lower() == ".png":
        try:
            with open(path, "rb") as fh:
                _png_verify(path, fh.read())
        except OSError as exc:
            raise _read_error(path, exc.strerror or str(exc)) from None
    height, width, dtype, channels = header.height, header.width, header.dtype, header.channels
    if dtype is None or channels is None:
        arr = _decode_single(path)
        height, width = arr.shape[:2]
        dtype, channels = arr.dtype.name, (1 if arr.ndim == 2 else 3)
    return [FrameInfo(path, 0, height, width, dtype, channels)]


def _read_single(path: Path, size: int, keep_alpha: bool = False) -> np.ndarray:
    _single_header(path, size).check(path)  # refuse huge files before decoding
    return _decode_single(path, keep_alpha)


# --------------------------------------------------------------------------- TIFF


def _open_tiff(path: Path) -> tifffile.TiffFile:
    try:
        return tifffile.TiffFile(path)
    except OSError as exc:
        raise _read_error(path, exc.strerror or str(exc)) from None
    except Exception:  # tifffile raises TiffFileError, ValueError, struct.error... for bad files
        raise _read_error(path, "it is not a valid TIFF file") from None


def _tiff_pages(tif: tifffile.TiffFile, path: Path) -> list[tuple[int, object]]:
    """Full-resolution pages as (index in the file's IFD chain, page)."""
    pages = []
    seen: set[int] = set()
    try:
        # tifffile follows the chain of page directories as far as it goes: a directory that
        # points back at itself (or at an earlier one) would be followed forever, caching a
        # page object each time. Stop at the first repeated offset and after MAX_FRAMES.
        for raw_index, page in enumerate(tif.pages):
            offset = getattr(page, "offset", None)
            if offset in seen:
                raise _read_error(path, "the TIFF file is damaged (its page directories form a loop)")
            seen.add(offset)
            if raw_index >= MAX_FRAMES:
                raise _read_error(path, f"it has more than {MAX_FRAMES} pages (the limit per file); "
                                        "split it into smaller stacks")
            # Bit 0 = reduced-resolution copy (pyramids, thumbnails), bit 2 = transparency mask.
            if getattr(page, "subfiletype", 0) & 0b101:
                continue
            pages.append((raw_index, page))
    except ImageReadError:
        raise
    except Exception:  # a damaged IFD chain part-way through the file
        raise _read_error(path, "the TIFF file is damaged or truncated (a page directory is unreadable)") from None
    if not pages:
        raise _read_error(path, "the TIFF file contains no image pages")
    return pages


def _tiff_geometry(page, path: Path, size: int) -> tuple[int, int, int, np.dtype]:
    """(height, width, stored channels, stored dtype) of a page; checks data lies inside the file."""
    sizes = dict(zip(page.axes, page.shape))
    height, width, channels = sizes.get("Y", 0), sizes.get("X", 0), sizes.get("S", 1)
    extra = {axis: n for axis, n in sizes.items() if axis not in "YXS" and n > 1}
    if extra:
        raise _read_error(path, "it has a 3-D page (volumes inside one TIFF page are not supported)")
    if page.dtype is None:
        raise _read_error(path, "its TIFF sample format is not supported")
    offsets, counts = page.dataoffsets, page.databytecounts
    if offsets and counts and max(o + c for o, c in zip(offsets, counts)) > size:
        raise _read_error(path, "the TIFF file is truncated (image data lies beyond the end of the file)")
    stored = np.dtype(page.dtype)
    _check_geometry(path, height, width, channels, max(stored.itemsize, _output_dtype(stored, path).itemsize))
    return height, width, channels, stored


def _probe_tiff(path: Path, size: int) -> list[FrameInfo]:
    with _open_tiff(path) as tif:
        infos = []
        for index, (_, page) in enumerate(_tiff_pages(tif, path)):
            height, width, channels, dtype = _tiff_geometry(page, path, size)
            infos.append(
                FrameInfo(path, index, height, width, _output_dtype(dtype, path).name, 1 if channels == 1 else 3)
            )
    return infos


def _read_tiff(path: Path, size: int, page_index: int, keep_alpha: bool = False) -> np.ndarray:
    with _open_tiff(path) as tif:
        pages = _tiff_pages(tif, path)
        if not 0 <= page_index < len(pages):
            raise _read_error(path, f"it has no page {page_index} (it has {len(pages)})")
        raw_index, page = pages[page_index]
        height, width, channels, _ = _tiff_geometry(page, path, size)
        try:
            arr = page.asarray()
        except (KeyError, ValueError, ImportError, ModuleNotFoundError) as exc:
            if "imagecodecs" in str(exc) or isinstance(exc, ImportError):
                # tifffile alone lacks LZW/JPEG/PackBits (the imagecodecs package);
                # OpenCV's libtiff has them, and OpenCV writes LZW TIFFs itself.
                return _read_tiff_opencv(path, raw_index, page.compression, keep_alpha)
            raise _read_error(path, "the TIFF image data could not be decoded") from None
        except Exception:  # zlib.error, struct.error... from damaged strips
            raise _read_error(path, "the TIFF image data could not be decoded") from None
        if page.axes.startswith("S") and arr.ndim == 3:  # planar RGB: (S, H, W) -> (H, W, S)
            arr = np.moveaxis(arr, 0, -1)
        arr = arr.reshape(height, width, channels)  # drops length-1 axes tifffile may keep
    return _normalise(arr, path, bgr=False, keep_alpha=keep_alpha)


def _read_tiff_opencv(path: Path, raw_index: int, compression, keep_alpha: bool = False) -> np.ndarray:
    ok, mats = cv2.imreadmulti(str(path), raw_index, 1, flags=cv2.IMREAD_UNCHANGED)
    if not ok or not mats:
        name = getattr(compression, "name", str(compression))
        raise _read_error(path, f"its TIFF compression ({name}) cannot be decoded here")
    return _normalise(mats[0], path, bgr=True, keep_alpha=keep_alpha)


# --------------------------------------------------------------------------- video


def _open_video(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise _read_error(path, "it could not be opened as a video (unknown or damaged format)")
    return cap


def _probe_video(path: Path) -> list[FrameInfo]:
    cap = _open_video(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise _read_error(path, "the video has no readable frames")
        first = _normalise(frame, path, bgr=True)
        count = 1
        # CAP_PROP_FRAME_COUNT comes from container metadata and is often wrong:
        # count by grabbing (demuxes and decodes, but skips colour conversion).
        # Bounded: a damaged stream must not keep the import reading forever.
        while cap.grab():
            count += 1
            if count > MAX_FRAMES:
                raise _read_error(path, f"it has more than {MAX_FRAMES} frames (the limit per file); "
                                        "split it into shorter videos")
    finally:
        cap.release()
    height, width = first.shape[:2]
    channels = 1 if first.ndim == 2 else 3
    return [FrameInfo(path, k, height, width, first.dtype.name, channels) for k in range(count)]


def _read_video(path: Path, page: int) -> np.ndarray:
    if page < 0:
        raise _read_error(path, f"it has no frame {page}")
    cap = _open_video(path)
    try:
        if page > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, page)
            if int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) != page:
                # The backend could not seek exactly: start again and read up to the frame.
                cap.release()
                cap = _open_video(path)
                for _ in range(page):
                    if not cap.grab():
                        raise _read_error(path, f"it has no frame {page}")
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        raise _read_error(path, f"it has no frame {page}")
    return _normalise(frame, path, bgr=True)


# --------------------------------------------------------------------------- public readers


def probe(path: str | os.PathLike) -> list[FrameInfo]:
    """List the frames of an image, TIFF stack or video.

    Parameters
    ----------
    path : path-like
        An image (``IMAGE_EXTENSIONS``) or video (``VIDEO_EXTENSIONS``) file.

    Returns
    -------
    list of FrameInfo
        One entry per full-resolution TIFF page, per video frame, or a single
        entry for a still image. Reduced-resolution and thumbnail TIFF pages
        are skipped, and ``FrameInfo.page`` counts only the pages kept.

    Raises
    ------
    ImageReadError
        Missing or empty file, unsupported extension, damaged or truncated
        content, a frame with no pixels or more than :data:`MAX_BYTES` decoded,
        a header declaring more pixels than the file can hold, more than
        :data:`MAX_FRAMES` pages or frames, page directories that loop, or a
        channel count other than 1, 3 or 4.

    Notes
    -----
    JPEG and TIFF are probed from their headers (JPEG: SOF and the EOI
    marker; TIFF: page directories and strip extents), so no pixels are
    decoded. A PNG's chunks are walked with their checksums and its pixel data
    inflated (not decoded) to its end, because OpenCV silently makes up the
    rows of a PNG whose data was cut off. BMP files are decoded once. Videos are
    read through to count their frames, because the container's frame count
    is unreliable; this takes about as long as playing the video once.
    """
    path, size = _check_file(path)
    ext = path.suffix.lower()
    if ext in TIFF_EXTENSIONS:
        return _probe_tiff(path, size)
    if ext in VIDEO_EXTENSIONS:
        return _probe_video(path)
    return _probe_single(path, size)


def read_image(path: str | os.PathLike, page: int = 0) -> np.ndarray:
    """Decode one frame of an image, TIFF stack or video.

    Parameters
    ----------
    path : path-like
        An image or video file (see :func:`probe`).
    page : int, optional
        Frame index: full-resolution TIFF page or video frame (0-based).
        Must be 0 for other still images.

    Returns
    -------
    ndarray
        ``(H, W)`` grey or ``(H, W, 3)`` RGB, C-contiguous. OpenCV's BGR order
        is converted to RGB and alpha is dropped; RGB images whose channels
        are equal stay 3-channel. The dtype is kept for ``uint8``, ``uint16``
        and ``float32``; ``bool`` becomes ``uint8`` (0 and 255); ``float16``,
        ``float64`` and all other integer types become ``float32``, which keeps
        ``int8``/``int16`` values exactly and wider integers exactly up to
        2**24. Float images may contain NaN and infinities; they are passed
        through (:func:`~labelassist.intensity.to_display` shows NaN as black).

    Raises
    ------
    ImageReadError
        For the reasons listed in :func:`probe`, or when ``page`` does not exist.

    Notes
    -----
    EXIF orientation is ignored (pixels are returned as stored). Video frames
    are always 3-channel ``uint8``; seeking uses ``CAP_PROP_POS_FRAMES`` and
    falls back to reading from the start when the backend cannot seek exactly.
    """
    return _read_frame(path, page, keep_alpha=False)


def _read_frame(path: str | os.PathLike, page: int, keep_alpha: bool) -> np.ndarray:
    """:func:`read_image`, optionally keeping a 4th (alpha) channel as ``(H, W, 4)`` RGBA."""
    path, size = _check_file(path)
    ext = path.suffix.lower()
    if ext in TIFF_EXTENSIONS:
        return _read_tiff(path, size, page, keep_alpha)
    if ext in VIDEO_EXTENSIONS:
        return _read_video(path, page)
    if page != 0:
        raise _read_error(path, f"it has no page {page} (it is a single image)")
    return _read_single(path, size, keep_alpha)


def tiff_planes(path: str | os.PathLike, page: int = 0) -> int:
    """How many separately stored colour planes a TIFF page has (1 unless its planar configuration is 'separate').

    Parameters
    ----------
    path : path-like
    page : int, optional
        Full-resolution page, as :func:`probe` counts them.

    Returns
    -------
    int
        1 for files that are not TIFF.
    """
    path = Path(path)
    if path.suffix.lower() not in TIFF_EXTENSIONS:
        return 1
    with _open_tiff(path) as tif:
        _, tiff_page = _tiff_pages(tif, path)[page]
        separate = int(getattr(tiff_page, "planarconfig", 1)) == 2
        return int(getattr(tiff_page, "samplesperpixel", 1)) if separate else 1
