"""Reading images, stacks and videos; the display conversion; thumbnails.

Everything the application knows about image files goes through this module:

* :func:`probe` lists the frames of a file (one per TIFF page or video frame)
  without decoding pixels where the format allows it;
* :func:`read_image` and :func:`read_mask` decode one frame into a numpy array
  with a small, fixed set of layouts and dtypes that the rest of the code can
  rely on;
* :func:`discover` walks the folders a user imports and groups their frames
  into sequences;
* :func:`thumbnail` turns any supported image into small 8-bit pixels for
  the screen (the conversion itself lives in :mod:`labelassist.intensity`).

Arrays returned by :func:`read_image` are ``(H, W)`` grey or ``(H, W, 3)`` RGB
with dtype ``uint8``, ``uint16`` or ``float32``; nothing else leaves this module.
Frames larger than :data:`MAX_BYTES` once decoded are refused before decoding, and
every loop over the pages or frames of a file stops at :data:`MAX_FRAMES`.
Every problem a user can cause (missing, empty, truncated, unsupported or
absurdly large files, headers that declare more pixels than the file can hold,
page directories that loop, non-binary masks) raises
:class:`~labelassist.errors.ImageReadError` or
:class:`~labelassist.errors.MaskError` with one sentence naming the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import struct
import tempfile
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import tifffile

from labelassist.errors import ImageReadError, MaskError
from labelassist.intensity import percentile_window, to_display

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "MAX_BYTES",
    "MAX_PIXELS",
    "MAX_FRAMES",
    "FrameInfo",
    "SourceFrame",
    "DiscoverResult",
    "probe",
    "read_image",
    "read_mask",
    "read_mask_details",
    "MaskRead",
    "tiff_planes",
    "natural_key",
    "discover",
    "file_hash",
    "path_to_text",
    "text_to_path",
    "printable",
    "thumbnail",
    "ThumbnailCache",
]

log = logging.getLogger(__name__)

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

MAX_FRAMES = 20_000
"""Most frames (TIFF page directories, video frames) read from one file. Every
loop over the pages or frames of a file stops here, so a damaged file whose
page directories point back at themselves cannot make an import run forever."""

# Deflate cannot compress more than 1032:1, so a PNG whose pixel data would need more
# than this many times its file size is damaged or crafted (a "decompression bomb").
_DEFLATE_MAX_RATIO = 1032
# A Huffman-coded JPEG spends at least one bit per 8x8 block of a component, so it holds at
# most 8 x 64 = 512 pixels per byte; a header declaring more is impossible for the file.
_JPEG_MAX_PIXELS_PER_BYTE = 512

_SUPPORTED = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# How far from the end to look for a PNG's IEND chunk: tolerates a little trailing junk.
_PNG_TAIL = 4096


# --------------------------------------------------------------------------- errors


def _read_error(path: Path, reason: str) -> ImageReadError:
    """An :class:`ImageReadError` "<name> could not be read: <reason>" that remembers ``path``."""
    err = ImageReadError(f"{Path(path).name} could not be read: {reason}")
    err.path = Path(path)  # the full path goes to the log; the message stays short
    return err


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


# --------------------------------------------------------------------------- file checks


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


@dataclass(frozen=True)
class _Header:
    """What a PNG/JPEG/BMP header says, before any pixel is decoded.

    ``dtype`` and ``channels`` describe the array :func:`read_image` returns (None
    where only decoding can tell); ``decoder_channels`` and ``itemsize`` what the
    decoder allocates, for the memory limit.
    """

    height: int
    width: int
    dtype: str | None
    channels: int | None
    decoder_channels: int
    itemsize: int

    def check(self, path: Path) -> None:
        """Refuse the frame before decoding if it has no pixels or is too large."""
        _check_geometry(path, self.height, self.width, self.channels or 1, 1)
        size = decoded_bytes(self.height, self.width, self.decoder_channels, self.itemsize)
        if size > MAX_BYTES:
            _check_geometry(path, self.height, self.width, self.decoder_channels, self.itemsize)


# Values per pixel of each PNG colour type (grey, -, RGB, palette, grey+alpha, -, RGBA).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_header(path: Path, size: int) -> _Header:
    """The IHDR chunk's facts; checks the signature and that an IEND chunk is near the end."""
    head, tail = _read_head_tail(path, size, 33, _PNG_TAIL)
    if not head.startswith(_PNG_SIGNATURE):
        raise _read_error(path, "it is not a PNG file (the PNG signature is missing)")
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise _read_error(path, "the PNG file is damaged (its header chunk is missing)")
    if b"IEND" not in tail:
        raise _read_error(path, "the PNG file is truncated (its end chunk IEND is missing)")
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", head[16:26])
    # OpenCV's IMREAD_UNCHANGED: grey stays grey; palette, grey+alpha and RGBA
    # come out as BGR(A), and we drop alpha -> 3 channels.
    channels = {0: 1, 2: 3, 3: 3, 4: 3, 6: 3}.get(colour_type)
    if channels is None:
        raise _read_error(path, f"the PNG file is damaged (unknown colour type {colour_type})")
    decoder = 1 if colour_type == 0 else (3 if colour_type == 2 else 4)  # palettes may carry alpha
    return _Header(height, width, "uint16" if bit_depth == 16 else "uint8", channels, decoder,
                   2 if bit_depth == 16 else 1)


def png_raw_size(height: int, width: int, bit_depth: int, colour_type: int, interlaced: bool) -> int:
    """Bytes of a PNG's decompressed pixel stream (filter bytes included).

    Parameters
    ----------
    height, width : int
    bit_depth : int
        1, 2, 4, 8 or 16.
    colour_type : int
        0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA.
    interlaced : bool
        Adam7 interlacing (seven reduced images, each row with a filter byte).

    Returns
    -------
    int
    """
    bits = bit_depth * _PNG_SAMPLES.get(colour_type, 4)
    if not interlaced:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        cols = (width - x0 + dx - 1) // dx if width > x0 else 0
        rows = (height - y0 + dy - 1) // dy if height > y0 else 0
        if cols and rows:
            total += rows * (1 + (cols * bits + 7) // 8)
    return total


def _png_verify(path: Path, data: bytes) -> None:
    """Walk every chunk (lengths, names, checksums) and inflate the pixel data to its end.

    OpenCV decodes a PNG whose pixel data was cut off (and an IEND chunk appended
    again) into an image with made-up rows, without an error; this refuses it.
    The loop advances by at least one chunk header each time, so it always ends.
    """
    pos, idat, ihdr = 8, [], None
    while True:
        if pos + 12 > len(data):
            raise _read_error(path, "the PNG file is truncated (a chunk runs past the end of the file)")
        length, name = struct.unpack(">I4s", data[pos:pos + 8])
        if length > 2**31 - 1 or not name.isalpha():
            raise _read_error(path, f"the PNG file is damaged (unreadable chunk at byte {pos})")
        end = pos + 8 + length
        if end + 4 > len(data):
            raise _read_error(path, "the PNG file is truncated (a chunk runs past the end of the file)")
        (crc,) = struct.unpack(">I", data[end:end + 4])
        if zlib.crc32(data[pos + 4:end]) != crc:
            raise _read_error(path, f"the PNG file is damaged (its {name.decode('ascii')} chunk fails its checksum)")
        if name == b"IHDR" and length >= 13:
            ihdr = struct.unpack(">IIBBBBB", data[pos + 8:pos + 21])
        elif name == b"IDAT":
            idat.append((pos + 8, end))
        elif name == b"IEND":
            break
        pos = end + 4
    if ihdr is None or not idat:
        raise _read_error(path, "the PNG file is damaged (its header or pixel data chunk is missing)")
    width, height, bit_depth, colour_type, _, _, interlace = ihdr
    expected = png_raw_size(height, width, bit_depth, colour_type, interlace == 1)
    compressed = sum(e - s for s, e in idat)
    if expected > _DEFLATE_MAX_RATIO * compressed + 1024:
        raise _read_error(path, f"the PNG file declares {width} x {height} pixels, more than its "
                                f"{compressed} bytes of pixel data can hold (damaged or crafted)")
    inflater, total = zlib.decompressobj(), 0
    try:
        for start, end in idat:
            pending = data[start:end]
            while pending and not inflater.eof:
                total += len(inflater.decompress(pending, 1 << 20))  # bounded output per step
                pending = inflater.unconsumed_tail
                if total > expected:
                    break
            if inflater.eof or total > expected:
                break
    except zlib.error:
        raise _read_error(path, "the PNG file is damaged (its pixel data cannot be decompressed)") from None
    if not inflater.eof or total != expected:
        raise _read_error(path, "the PNG file is damaged or truncated (its pixel data ends early or runs long)")


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_ARITHMETIC = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_header(path: Path, size: int) -> _Header:
    """The SOF marker's facts (dtype None where only decoding can tell).

    Checks the SOI and EOI markers: OpenCV silently returns a partly grey image
    for a truncated JPEG, so a missing EOI (``FFD9``) is refused here. A header
    declaring more pixels than a Huffman-coded file of this size can hold is
    refused too, before the decoder allocates them.
    """
    _, tail = _read_head_tail(path, size, 0, 64)
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\xff\xd8":
                raise _read_error(path, "it is not a JPEG file (the JPEG start marker is missing)")
            # Some writers pad after EOI with zeros or a newline.
            if not tail.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
                raise _read_error(path, "the JPEG file is truncated (its end marker FFD9 is missing)")
            while True:  # ends: every step reads at least one byte and never seeks back
                byte = fh.read(1)
                if not byte:
                    break
                if byte != b"\xff":
                    continue
                marker = fh.read(1)
                while marker == b"\xff":  # fill bytes
                    marker = fh.read(1)
                if not marker:
                    break
                code = marker[0]
                if code == 0xD8 or 0xD0 <= code <= 0xD7 or code == 0x01:
                    continue  # markers without a length
                if code in (0xD9, 0xDA):
                    break  # EOI or start of scan before any frame header
                length_bytes = fh.read(2)
                if len(length_bytes) < 2:
                    break
                (length,) = struct.unpack(">H", length_bytes)
                if length < 2:
                    raise _read_error(path, "the JPEG file is damaged (a segment has an impossible length)")
                if code in _JPEG_SOF:
                    sof = fh.read(6)
                    if len(sof) < 6:
                        break
                    precision, height, width, ncomp = struct.unpack(">BHHB", sof)
                    if code not in _JPEG_ARITHMETIC and height * width > _JPEG_MAX_PIXELS_PER_BYTE * size:
                        raise _read_error(path, f"the JPEG file declares {width} x {height} pixels, more than "
                                                f"a file of {size} bytes can hold (damaged or crafted)")
                    itemsize = 1 if precision <= 8 else 2
                    if precision != 8 or height == 0 or ncomp not in (1, 3, 4):
                        # 12-bit, DNL-sized or exotic: the decoder tells the rest.
                        return _Header(max(height, 1), width, None, None, max(ncomp, 1), itemsize)
                    return _Header(height, width, "uint8", 1 if ncomp == 1 else 3, ncomp, 1)  # CMYK -> BGR
                fh.seek(length - 2, os.SEEK_CUR)
    except OSError as exc:
        raise _read_error(path, exc.strerror or str(exc)) from None
    raise _read_error(path, "the JPEG file is damaged (no frame header was found)")


def _bmp_header(path: Path, size: int) -> _Header:
    """(height, width) from a BMP header; the channel count needs decoding (palettes)."""
    head, _ = _read_head_tail(path, size, 34, 0)
    if len(head) < 26 or not head.startswith(b"BM"):
        raise _read_error(path, "it is not a BMP file (the BMP signature is missing)")
    (declared,) = struct.unpack("<I", head[2:6])
    if declared and size < declared:
        raise _read_error(path, f"the BMP file is truncated ({size} of {declared} bytes)")
    (header_size,) = struct.unpack("<I", head[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", head[18:22])
        bits, compression = struct.unpack("<H", head[24:26])[0], 0
    else:
        width, height = struct.unpack("<ii", head[18:26])
        bits, compression = (struct.unpack("<HI", head[28:34]) if len(head) >= 34 else (24, 0))
    height = abs(height)
    if compression == 0 and width > 0 and bits in (1, 4, 8, 16, 24, 32):
        stride = (width * bits + 31) // 32 * 4  # rows are padded to 4 bytes
        if height * stride > size:
            raise _read_error(path, f"the BMP file is truncated (its {width} x {height} pixels need "
                                    f"{height * stride} bytes, the file has {size})")
    return _Header(height, width, None, None, 4 if bits == 32 else 3, 1)


def _single_header(path: Path, size: int) -> _Header:
    """Header facts of a PNG/JPEG/BMP."""
    ext = path.suffix.lower()
    if ext == ".png":
        return _png_header(path, size)
    if ext in (".jpg", ".jpeg"):
        return _jpeg_header(path, size)
    return _bmp_header(path, size)


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


# --------------------------------------------------------------------------- discovery


_DIGITS = re.compile(r"([0-9]+)")


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value ("img2" < "img10").

    Parameters
    ----------
    text : str
        A file name or relative path.

    Returns
    -------
    tuple
        ``(parts, text)`` where ``parts`` alternates case-folded text and
        integers; ``text`` breaks ties ("img02" vs "img2") deterministically.
    """
    parts = _DIGITS.split(text)
    # split() always yields text at even and digits at odd positions, so two keys
    # never compare an int with a str.
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), text


_TRAILING_NUMBER = re.compile(r"[0-9]+$")


def _sequence_prefix(stem: str) -> str:
    """'t01' -> 't', 'img_002' -> 'img', '000' -> ''."""
    stripped = _TRAILING_NUMBER.sub("", stem)
    return stripped.rstrip("_-. ") if stripped != stem else stem


@dataclass(frozen=True)
class SourceFrame:
    """One frame found by :func:`discover`.

    Attributes
    ----------
    path : Path
        Absolute path of the file.
    page : int
        Frame index inside the file (``FrameInfo.page``).
    name : str
        Path relative to the import root (POSIX separators), plus ``#<page>``
        for files with more than one frame.
    sequence : str
        Sequence id: for a multi-frame TIFF or video its relative path without
        extension; for still images ``<relative parent>/<stem prefix>`` where
        the prefix is the stem without its trailing number (``images/t07.png``
        -> ``images/t``; ``000.png`` at the root -> ``/``).
    frame : int
        Position in the sequence (0-based): the page index for stacks, the
        rank in natural order of the name for still images.
    info : FrameInfo
        Geometry and pixel type.
    """

    path: Path
    page: int
    name: str
    sequence: str
    frame: int
    info: FrameInfo


@dataclass(frozen=True)
class DiscoverResult:
    """What :func:`discover` found.

    Attributes
    ----------
    frames : list of SourceFrame
        Every readable frame, files in natural order, pages in order.
    skipped : list of Path
        Files that are not images or videos (by extension), e.g. ``LICENSE``.
    errors : dict of Path -> ImageReadError
        Files that could not be probed (only filled when ``on_error`` is given).

    Iterating over the result, or ``len()``, goes over ``frames``.
    """

    frames: list[SourceFrame] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    errors: dict[Path, ImageReadError] = field(default_factory=dict)

    def __iter__(self) -> Iterator[SourceFrame]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    def sequences(self) -> dict[str, list[SourceFrame]]:
        """Frames grouped by sequence id, each list in frame order."""
        groups: dict[str, list[SourceFrame]] = {}
        for frame in self.frames:
            groups.setdefault(frame.sequence, []).append(frame)
        return {key: sorted(group, key=lambda f: f.frame) for key, group in groups.items()}


def _is_hidden(entry: os.DirEntry) -> bool:
    if entry.name.startswith("."):
        return True
    try:  # Windows "hidden" attribute
        return bool(getattr(entry.stat(), "st_file_attributes", 0) & 2)
    except OSError:
        return False


def _walk(folder: Path, errors: list[tuple[Path, ImageReadError]], seen: set[str]) -> Iterator[Path]:
    """Files under ``folder`` depth-first, entries in natural order, hidden ones left out."""
    real = os.path.realpath(folder)
    if real in seen:  # a symlink loop
        return
    seen.add(real)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: natural_key(e.name))
    except OSError as exc:
        errors.append((folder, _read_error(folder, f"the folder cannot be listed ({exc.strerror or exc})")))
        return
    for entry in entries:
        if _is_hidden(entry):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk(Path(entry.path), errors, seen)
        else:
            yield Path(entry.path)


def discover(
    sources: Iterable[str | os.PathLike],
    on_error: Callable[[Path, ImageReadError], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DiscoverResult:
    """Find the frames in image files, stacks, videos and folders.

    Parameters
    ----------
    sources : iterable of path-like
        Files or folders; folders are walked recursively (natural order,
        hidden files and folders ignored). A file listed twice is read once.
    on_error : callable, optional
        ``on_error(path, error)`` for a file that cannot be probed; the file is
        then recorded in ``DiscoverResult.errors`` and skipped. Without it the
        first :class:`ImageReadError` is raised.
    progress : callable, optional
        ``progress(done, total)`` after each image or video file is probed.

    Returns
    -------
    DiscoverResult
        ``frames``, ``skipped`` (not images by extension) and ``errors``.

    Notes
    -----
    Names are relative to the folder for a folder source and to the file's
    parent for a file source. When a later source would repeat a name or a
    sequence id of an earlier one (two folders both holding ``000.png``), its
    names and sequences get the source folder's name as a prefix
    (``B/000.png``). A file with a single frame is a still image whatever its
    type, so single-page TIFFs group with their numbered neighbours.
    """
    walk_errors: list[tuple[Path, ImageReadError]] = []
    candidates: list[tuple[int, Path, Path]] = []  # (source index, root, file)
    skipped: list[Path] = []
    roots: list[Path] = []
    seen_files: set[Path] = set()
    seen_dirs: set[str] = set()
    for index, source in enumerate(sources):
        source = Path(os.path.abspath(source))
        if source.is_dir():
            root, files = source, _walk(source, walk_errors, seen_dirs)
        else:
            root, files = source.parent, [source]
        roots.append(root)
        for file in files:
            if file in seen_files:
                continue
            seen_files.add(file)
            if file.suffix.lower() in _SUPPORTED:
                candidates.append((index, root, file))
            else:
                skipped.append(file)

    errors: dict[Path, ImageReadError] = {}

    def fail(path: Path, exc: ImageReadError) -> None:
        if on_error is None:
            raise exc
        errors[path] = exc
        on_error(path, exc)

    for path, exc in walk_errors:
        fail(path, exc)

    probed: dict[int, list[tuple[PurePosixPath, list[FrameInfo]]]] = {}
    for done, (index, root, file) in enumerate(candidates, start=1):
        try:
            infos = probe(file)
        except ImageReadError as exc:
            fail(file, exc)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the rest of an import
            log.exception("probing %r failed", file)
            fail(file, _read_error(file, f"its reader failed ({type(exc).__name__}; details in the log)"))
        else:
            probed.setdefault(index, []).append((PurePosixPath(file.relative_to(root).as_posix()), infos))
        if progress is not None:
            progress(done, len(candidates))

    frames: list[SourceFrame] = []
    used_names: set[str] = set()
    used_sequences: set[str] = set()
    for index in sorted(probed):
        files = probed[index]
        prefix = None
        own = _frames_of_source(files, prefix)
        attempt = 1
        while any(f.name in used_names for f in own) or {f.sequence for f in own} & used_sequences:
            label = roots[index].name or f"source{index + 1}"
            prefix = label if attempt == 1 else f"{label} ({attempt})"
            own = _frames_of_source(files, prefix)
            attempt += 1
        used_names.update(f.name for f in own)
        used_sequences.update(f.sequence for f in own)
        frames.extend(own)
    return DiscoverResult(frames=frames, skipped=skipped, errors=errors)


def _frames_of_source(files: list[tuple[PurePosixPath, list[FrameInfo]]], prefix: str | None) -> list[SourceFrame]:
    """Names, sequence ids and frame numbers for the probed files of one source."""
    rels = [(PurePosixPath(prefix, rel) if prefix else rel, infos) for rel, infos in files]
    image_sequence: dict[str, str] = {}  # name -> sequence, still images only
    for rel, infos in rels:
        if len(infos) == 1:
            parent = "" if str(rel.parent) == "." else str(rel.parent)
            image_sequence[str(rel)] = f"{parent}/{_sequence_prefix(rel.stem)}"
    # Rank still images within their sequence by natural order of the name.
    members: dict[str, list[str]] = {}
    for name, seq in image_sequence.items():
        members.setdefault(seq, []).append(name)
    rank = {}
    for seq, names in members.items():
        for k, name in enumerate(sorted(names, key=natural_key)):
            rank[name] = k

    stack_ids: set[str] = set()
    out = []
    for rel, infos in rels:
        name = str(rel)
        if len(infos) == 1:
            out.append(SourceFrame(infos[0].path, 0, name, image_sequence[name], rank[name], infos[0]))
            continue
        sequence = str(rel.with_suffix(""))
        if sequence in members or sequence in stack_ids:  # e.g. a.tif beside a.avi
            sequence = name
        stack_ids.add(sequence)
        for info in infos:
            out.append(SourceFrame(info.path, info.page, f"{name}#{info.page}", sequence, info.page, info))
    return out


# --------------------------------------------------------------------------- names in the database

# A stored path never starts with "./": Project.relative() returns normalised paths, in which
# pathlib drops "." parts. So this prefix marks, without any ambiguity, a path whose bytes are
# not UTF-8 (SQLite stores text as UTF-8 only) and were percent-encoded.
_BYTES_PREFIX = "./"


def path_to_text(path: str | os.PathLike) -> str:
    """How a path is stored as text: itself, or percent-encoded bytes when it is not UTF-8.

    On Linux a file name is any bytes; Python gives the undecodable ones as lone
    surrogates (``os.fsdecode``, ``surrogateescape``), which SQLite cannot store.
    Such a path becomes ``"./"`` followed by its bytes percent-encoded, which
    :func:`text_to_path` turns back into the same file name. Every other path is
    returned unchanged, so existing projects read as before.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str
        Valid UTF-8 text.
    """
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _BYTES_PREFIX + urllib.parse.quote(os.fsencode(text), safe="/")


def text_to_path(text: str) -> str:
    """The path :func:`path_to_text` stored (the same string for ordinary paths)."""
    if text.startswith(_BYTES_PREFIX):
        return os.fsdecode(urllib.parse.unquote_to_bytes(text[len(_BYTES_PREFIX):]))
    return text


def printable(text: str) -> str:
    """``text`` safe to print and to store: undecodable bytes as ``\\xNN``, control characters escaped.

    File names may hold bytes that are not UTF-8 (lone surrogates once decoded) and
    characters such as newlines or terminal escape sequences; a report line or a
    sample name must neither fail to print or store nor change the terminal. The
    undecodable bytes are shown as the bytes they are (``caf\\xe9.png``); every other
    control character as :func:`labelassist.textout.safe` shows it.
    """
    from labelassist.textout import safe

    if _has_surrogates(text):
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return safe(text)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


# --------------------------------------------------------------------------- hashing


def file_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content, as 64 hex digits.

    Parameters
    ----------
    path : path-like
        Any file.
    chunk : int, optional
        Read size in bytes.

    Raises
    ------
    ImageReadError
        The file cannot be read.
    """
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    except FileNotFoundError:
        raise _read_error(path, "the file does not exist") from None
    except OSError as exc:
        raise _read_error(path, exc.strerror or str(exc)) from None
    return digest.hexdigest()


# --------------------------------------------------------------------------- display


def thumbnail(image: np.ndarray, max_side: int = 128) -> np.ndarray:
    """A small ``uint8`` preview with the aspect ratio kept.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(H, W, 3)``, any dtype :func:`~labelassist.intensity.to_display` accepts.
    max_side : int, optional
        Longest side of the result in pixels. Smaller images are not enlarged.

    Returns
    -------
    ndarray of uint8
        ``(h, w)`` or ``(h, w, 3)`` with ``max(h, w) <= max_side``.

    Notes
    -----
    The display window is computed on the full image, then the raw pixels are
    shrunk with ``cv2.INTER_AREA`` and mapped through :func:`~labelassist.intensity.to_display`;
    shrinking first keeps this cheap for large 16-bit frames.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if image.dtype in (np.uint8, np.uint16, np.float32):
        window = None if image.dtype == np.uint8 else percentile_window(image)
        small = image if factor == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(to_display(small, window))
    shown = to_display(image)
    return shown if factor == 1.0 else cv2.resize(shown, size, interpolation=cv2.INTER_AREA)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class ThumbnailCache:
    """Thumbnails kept as PNG files in a folder, computed on first use.

    Parameters
    ----------
    folder : path-like
        Cache folder; created when the first thumbnail is written.
    max_side : int, optional
        Longest side of the thumbnails in pixels (part of the file name, so
        caches of different sizes can share a folder).

    Notes
    -----
    Files are written to a temporary file and renamed into place, so a crash
    never leaves half a PNG; an unreadable cache file is simply regenerated.
    Failing to write (disk full, read-only folder) is logged, not raised: the
    cache is an optimisation.
    """

    def __init__(self, folder: str | os.PathLike, max_side: int = 128) -> None:
        self.folder = Path(folder)
        self.max_side = int(max_side)

    def path_for(self, key: str) -> Path:
        """Cache file of ``key``: the key with unsafe characters replaced, plus a
        short hash of the key when anything was replaced (so keys never collide)."""
        safe = _UNSAFE.sub("_", key)[:120]
        if safe != key:
            safe += "-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]
        return self.folder / f"{safe}.{self.max_side}px.png"

    def get(self, key: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The thumbnail of ``key``, from the cache or computed from ``load()``.

        Parameters
        ----------
        key : str
            Identifies the image, e.g. ``f"{sha256}_{page}"``.
        load : callable
            Returns the full image (any :func:`read_image` array); only called
            when the cache has no valid file for ``key``.

        Returns
        -------
        ndarray of uint8
            ``(h, w)`` or ``(h, w, 3)`` RGB.
        """
        path = self.path_for(key)
        cached = self._load(path)
        if cached is not None:
            return cached
        thumb = thumbnail(load(), self.max_side)
        self._store(path, thumb)
        return thumb

    def _load(self, path: Path) -> np.ndarray | None:
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError:
            return None
        # A half-written or damaged file (no IEND) is not trusted even if it decodes partly.
        if data.size < 8 or b"IEND" not in data[-_PNG_TAIL:].tobytes():
            log.warning("thumbnail cache file %s is damaged; regenerating it", path)
            return None
        thumb = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if thumb is None or thumb.dtype != np.uint8 or thumb.ndim not in (2, 3):
            log.warning("thumbnail cache file %s is damaged; regenerating it", path)
            return None
        return thumb if thumb.ndim == 2 else np.ascontiguousarray(thumb[:, :, 2::-1])

    def _store(self, path: Path, thumb: np.ndarray) -> None:
        ok, encoded = cv2.imencode(".png", thumb if thumb.ndim == 2 else np.ascontiguousarray(thumb[:, :, ::-1]))
        if not ok:
            log.warning("thumbnail for %s could not be encoded", path.name)
            return
        tmp = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.folder)
            with os.fdopen(fd, "wb") as fh:
                fh.write(encoded.tobytes())
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            log.warning("thumbnail cache %s could not be written: %s", self.folder, exc)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
