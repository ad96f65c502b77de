"""What the label store returns: samples, label versions, and the time and author it records."""

from __future__ import annotations

import getpass
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from labelassist.errors import StoreError
from labelassist.maskcodec import CODEC, decode_mask


def utc_now() -> str:
    """Current time as ISO 8601 UTC with milliseconds (sortable as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def current_user() -> str:
    """The operating-system user, the default author of labels and events."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some kiosk environments
        return "unknown"


@dataclass(frozen=True)
class Sample:
    """One image to label: a single image file, a page of a stack or a frame of a video."""

    id: int
    path: str
    page: int
    name: str
    hash: str
    file_size: int
    height: int
    width: int
    dtype: str
    channels: int
    sequence: str
    frame: int
    added_at: str
    mtime_ns: int | None = None  # the file's modification time at import (None: imported before schema 4)


# Columns a new sample may leave out.
_OPTIONAL_SAMPLE_COLUMNS = {"id", "added_at", "mtime_ns"}


class DamagedLabelError(StoreError):
    """A stored label version whose mask blob no longer decodes."""


@dataclass(frozen=True)
class LabelVersion:
    """One saved version of a sample's label. ``mask`` is decoded lazily."""

    id: int
    sample_id: int
    parent_id: int | None
    created_at: str
    author: str
    source: str
    height: int
    width: int
    area: int
    seconds: float
    strokes: int
    note: str | None
    codec: str
    blob: bytes
    score: float | None = None
    warned: bool = False

    @property
    def mask(self) -> np.ndarray:
        """The label as a ``(height, width)`` bool array."""
        if self.codec != CODEC:
            raise StoreError(f"label version {self.id} uses an unknown mask encoding {self.codec!r}")
        try:
            return decode_mask(self.blob, self.height, self.width)
        except (zlib.error, ValueError) as exc:
            # Disk damage inside a blob (integrity_check does not look into blobs): a plain error
            # naming the version, never a zlib message, wherever the mask is read.
            raise DamagedLabelError(
                f"label version {self.id} is damaged (its stored mask no longer decompresses); earlier "
                "versions are kept, and 'labelassist restore' puts a backup back") from exc


_SAMPLE_COLUMNS = [f for f in Sample.__dataclass_fields__]
_LABEL_COLUMNS = [
    "id", "sample_id", "parent_id", "created_at", "author", "source", "height", "width", "area",
    "seconds", "strokes", "note", "codec", "mask", "score", "warned",
]
