"""What a PNG, JPEG or BMP header says before any pixel is decoded, and the PNG's full check.

The readers refuse a file from its header alone when it declares no pixels, more than
:data:`~labelassist.images.frames.MAX_BYTES` once decoded, or more pixels than a file of
its size can hold (a "decompression bomb"); a PNG's chunks are walked with their
checksums, because OpenCV silently makes up the rows of a PNG whose data was cut off.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from labelassist.fileio import read_error as _read_error
from labelassist.images.frames import MAX_BYTES, _check_geometry, _read_head_tail, decoded_bytes

__all__ = ["png_raw_size"]

# Deflate cannot compress more than 1032:1, so a PNG whose pixel data would need more
# than this many times its file size is damaged or crafted (a "decompression bomb").
_DEFLATE_MAX_RATIO = 1032
# A Huffman-coded JPEG spends at least one bit per 8x8 block of a component, so it holds at
# most 8 x 64 = 512 pixels per byte; a header declaring more is impossible for the file.
_JPEG_MAX_PIXELS_PER_BYTE = 512

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# How far from the end to look for a PNG's IEND chunk: tolerates a little trailing junk.
_PNG_TAIL = 4096


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
