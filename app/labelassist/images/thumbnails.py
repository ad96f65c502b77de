"""Small 8-bit previews of any image, and a folder of them computed on first use."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from labelassist.images.headers import _PNG_TAIL
from labelassist.intensity import percentile_window, to_display

__all__ = ["thumbnail", "ThumbnailCache"]

log = logging.getLogger(__name__)


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
