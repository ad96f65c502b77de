"""The label layer: a binary mask being edited, with sparse undo history. No GUI here.

Where a pen stroke goes (follow the names)::

    ui.label_canvas.LabelCanvas.on_touch_move     the pen moves: one stroke segment
      -> LabelLayer.paint_segment                 rasterised into the numpy mask; the dirty
                                                  rectangle grows (LabelLayer.take_dirty)
    ui.label_canvas.LabelCanvas.on_touch_up       the pen lifts
      -> LabelLayer.end_edit -> Edit              the stroke as sparse atoms (changed pixels)
      -> ui.session_worker.SessionWorker.journal   Session.record_edit: on disk before the
                                                  next stroke starts
    "Save & next"
      -> ui.session_worker.SessionWorker.save     Session.save off the UI thread (coalesced)

The mask (``LabelLayer.mask``, ``(H, W)`` bool) is the truth. Every change goes through
:meth:`LabelLayer.begin_edit` ... :meth:`LabelLayer.end_edit`, which groups the changed
pixels of one stroke, fill or drag into one :class:`Edit`. An edit keeps only the pixels it
changed, as row runs (start index, length, new value); the old value is the opposite of the
new one (a binary mask), so undo and redo are exact and never copy the mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from labelassist.workflow import objects

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), image pixels


@dataclass(frozen=True)
class Edit:
    """One undoable change of the mask: the pixels it switched, as row runs.

    Attributes
    ----------
    kind : str
        What made it: ``brush``, ``eraser``, ``lasso``, ``polygon``, ``bucket``,
        ``segment``, ``prelabel``, ``suggestion``, ``clear``...
    starts, lengths : ndarray of int64
        Runs of consecutive flat (row-major) pixel indices that changed.
    values : ndarray of bool
        The new value of each run (the old value is its opposite).
    """

    kind: str
    starts: np.ndarray
    lengths: np.ndarray
    values: np.ndarray

    @property
    def size(self) -> int:
        """Number of pixels changed."""
        return int(self.lengths.sum())

    @property
    def nbytes(self) -> int:
        return int(self.starts.nbytes + self.lengths.nbytes + self.values.nbytes)

    def indices(self) -> np.ndarray:
        """Flat indices of every changed pixel, ascending."""
        if not len(self.starts):
            return np.zeros(0, np.int64)
        total = int(self.lengths.sum())
        # offsets within each run: 0..len-1, via a cumulative trick without a Python loop
        run_of = np.repeat(np.arange(len(self.starts)), self.lengths)
        first = np.cumsum(self.lengths) - self.lengths
        return self.starts[run_of] + (np.arange(total) - first[run_of])

    def pixel_values(self) -> np.ndarray:
        """New value of each pixel of :meth:`indices`."""
        return np.repeat(self.values, self.lengths)

    @classmethod
    def from_pixels(cls, kind: str, indices: np.ndarray, values: np.ndarray) -> "Edit":
        """Group changed pixels (any order, no duplicates) into runs."""
        order = np.argsort(indices, kind="stable")
        idx = np.asarray(indices, np.int64)[order]
        val = np.asarray(values, bool)[order]
        if not len(idx):
            empty = np.zeros(0, np.int64)
            return cls(kind, empty, empty.copy(), np.zeros(0, bool))
        breaks = np.flatnonzero((np.diff(idx) != 1) | (val[1:] != val[:-1])) + 1
        starts_at = np.concatenate(([0], breaks))
        lengths = np.diff(np.concatenate((starts_at, [len(idx)])))
        # int32 is enough for images up to 2**31 pixels (46341²): halves the history's memory
        dtype = np.int32 if idx[-1] < 2**31 else np.int64
        return cls(kind, idx[starts_at].astype(dtype), lengths.astype(np.int32), val[starts_at])

    def inverse(self) -> "Edit":
        return Edit(self.kind, self.starts, self.lengths, ~self.values)


class LabelLayer:
    """A binary mask under edit, with undo/redo of whole strokes.

    Parameters
    ----------
    mask : ndarray of bool, (H, W)
        The starting mask (copied).
    """

    def __init__(self, mask: np.ndarray):
        self.mask = np.array(mask, dtype=bool, copy=True)
        self.height, self.width = self.mask.shape
        self.undo_stack: list[Edit] = []
        self.redo_stack: list[Edit] = []
        self._kind: str | None = None
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._dirty: Rect | None = None
        self.strokes = 0  # finished edits made by hand (for Session.save)

    # -- dirty rectangle --------------------------------------------------------------------
    def _grow_dirty(self, rect: Rect) -> None:
        x0, y0, x1, y1 = rect
        if x1 <= x0 or y1 <= y0:
            return
        if self._dirty is None:
            self._dirty = rect
        else:
            a, b, c, d = self._dirty
            self._dirty = (min(a, x0), min(b, y0), max(c, x1), max(d, y1))

    def take_dirty(self) -> Rect | None:
        """The rectangle changed since the last call (None when nothing changed), and reset it."""
        dirty, self._dirty = self._dirty, None
        return dirty

    # -- edits ------------------------------------------------------------------------------
    @property
    def editing(self) -> bool:
        return self._kind is not None

    def begin_edit(self, kind: str) -> None:
        """Start grouping changes into one undoable edit (a stroke, a fill...)."""
        if self._kind is not None:
            self.end_edit()
        self._kind = kind
        self._pending = []

    def end_edit(self) -> Edit | None:
        """Close the current edit; returns it (None when it changed nothing)."""
        if self._kind is None:
            return None
        kind, pending = self._kind, self._pending
        self._kind, self._pending = None, []
        if not pending:
            return None
        indices = np.concatenate([p[0] for p in pending])
        values = np.concatenate([p[1] for p in pending])
        edit = Edit.from_pixels(kind, indices, values)
        self.undo_stack.append(edit)
        self.redo_stack.clear()
        self.strokes += 1
        return edit

    def cancel_edit(self) -> None:
        """Revert the current edit as if it never happened (a finger stroke that became a pinch)."""
        if self._kind is None:
            return
        for indices, values in reversed(self._pending):
            self._write(indices, ~values)
        self._kind, self._pending = None, []

    def _write(self, indices: np.ndarray, values: np.ndarray) -> None:
        if not len(indices):
            return
        self.mask.ravel()[indices] = values
        ys, xs = np.divmod(indices, self.width)
        self._grow_dirty((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))

    def _change_region(self, rect: Rect, new_region: np.ndarray) -> int:
        """Write ``new_region`` (bool, the rect's shape) where it differs from the mask."""
        if self._kind is None:
            raise RuntimeError("changes to the label layer must happen between begin_edit and end_edit")
        x0, y0, x1, y1 = rect
        old = self.mask[y0:y1, x0:x1]
        ys, xs = np.nonzero(old != new_region)
        if not len(ys):
            return 0
        indices = (ys + y0).astype(np.int64) * self.width + (xs + x0)
        values = new_region[ys, xs]
        old[ys, xs] = values
        self._grow_dirty((x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1))
        self._pending.append((indices, values))
        return len(indices)

    def _clip(self, x0: float, y0: float, x1: float, y1: float) -> Rect:
        return (max(0, int(np.floor(x0))), max(0, int(np.floor(y0))),
                min(self.width, int(np.ceil(x1)) + 1), min(self.height, int(np.ceil(y1)) + 1))

    # -- tools ------------------------------------------------------------------------------
    def paint_segment(self, p0: Sequence[float], p1: Sequence[float], radius: float, value: bool = True) -> int:
        """Paint (or erase with ``value=False``) a round-capped line of ``radius`` from p0 to p1.

        Points are in image pixels (x right, y down). Returns the number of changed pixels.
        """
        r = max(0.5, float(radius))
        rect = self._clip(min(p0[0], p1[0]) - r - 1, min(p0[1], p1[1]) - r - 1,
                          max(p0[0], p1[0]) + r + 1, max(p0[1], p1[1]) + r + 1)
        x0, y0, x1, y1 = rect
        if x1 <= x0 or y1 <= y0:
            return 0
        stamp = np.zeros((y1 - y0, x1 - x0), np.uint8)
        shift = 4  # sub-pixel precision for cv2 (1/16 pixel)
        f = 1 << shift
        a = (int(round((p0[0] - x0) * f)), int(round((p0[1] - y0) * f)))
        b = (int(round((p1[0] - x0) * f)), int(round((p1[1] - y0) * f)))
        thickness = max(1, int(round(2 * r)))
        cv2.line(stamp, a, b, 1, thickness=thickness, lineType=cv2.LINE_8, shift=shift)
        cv2.circle(stamp, a, int(round(r * f)), 1, thickness=-1, lineType=cv2.LINE_8, shift=shift)
        cv2.circle(stamp, b, int(round(r * f)), 1, thickness=-1, lineType=cv2.LINE_8, shift=shift)
        region = self.mask[y0:y1, x0:x1].copy()
        region[stamp.astype(bool)] = value
        return self._change_region(rect, region)

    def fill_polygon(self, points: Sequence[Sequence[float]], value: bool = True) -> int:
        """Fill a closed polygon (lasso or polygon tool), image pixels."""
        if len(points) < 3:
            return 0
        pts = np.asarray(points, dtype=np.float64)
        rect = self._clip(pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
        x0, y0, x1, y1 = rect
        if x1 <= x0 or y1 <= y0:
            return 0
        stamp = np.zeros((y1 - y0, x1 - x0), np.uint8)
        local = np.round((pts - (x0, y0)) * 16).astype(np.int32)
        cv2.fillPoly(stamp, [local], 1, lineType=cv2.LINE_8, shift=4)
        region = self.mask[y0:y1, x0:x1].copy()
        region[stamp.astype(bool)] = value
        return self._change_region(rect, region)

    def bucket_fill(self, x: float, y: float) -> int:
        """Flip the 4-connected region of equal value under (x, y) (fill a hole, clear a blob)."""
        ix, iy = int(x), int(y)
        if not (0 <= ix < self.width and 0 <= iy < self.height):
            return 0
        value = bool(self.mask[iy, ix])
        work = self.mask.astype(np.uint8)
        flood = np.zeros((self.height + 2, self.width + 2), np.uint8)
        _, _, _, (bx, by, bw, bh) = cv2.floodFill(work, flood, (ix, iy), 2, flags=4)
        rect = (bx, by, bx + bw, by + bh)
        region = self.mask[by:by + bh, bx:bx + bw].copy()
        region[work[by:by + bh, bx:bx + bw] == 2] = not value
        return self._change_region(rect, region)

    def set_mask(self, new: np.ndarray, where: np.ndarray | None = None) -> int:
        """Make the mask equal ``new`` (everywhere, or only ``where``): accept a pre-label or suggestion."""
        new = np.asarray(new, dtype=bool)
        if new.shape != self.mask.shape:
            raise ValueError(f"mask shape {new.shape} differs from the layer's {self.mask.shape}")
        target = new if where is None else np.where(where, new, self.mask)
        diff = target != self.mask
        if not diff.any():
            return 0
        ys, xs = np.nonzero(diff)
        rect = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        x0, y0, x1, y1 = rect
        return self._change_region(rect, target[y0:y1, x0:x1])

    def add_mask(self, other: np.ndarray) -> int:
        """Union with ``other``."""
        other = np.asarray(other, dtype=bool)
        return self.set_mask(other, where=other)

    def add_object(self, obj: np.ndarray) -> int:
        """Add ``obj`` as an object of its own (a tap-to-segment proposal the user added).

        Where it touches an object already in the mask, a one-pixel background seam keeps
        the two separate segments (:func:`labelassist.workflow.objects.add_object`).
        """
        return self.set_mask(objects.add_object(self.mask, obj))

    # -- history ----------------------------------------------------------------------------
    def _apply(self, edit: Edit) -> None:
        self._write(edit.indices(), edit.pixel_values())

    def undo(self) -> Edit | None:
        """Undo the newest edit; returns the change applied (for the journal), None if nothing to undo."""
        if self._kind is not None:
            self.end_edit()
        if not self.undo_stack:
            return None
        edit = self.undo_stack.pop()
        inverse = edit.inverse()
        self._apply(inverse)
        self.redo_stack.append(edit)
        return inverse

    def redo(self) -> Edit | None:
        if self._kind is not None:
            self.end_edit()
        if not self.redo_stack:
            return None
        edit = self.redo_stack.pop()
        self._apply(edit)
        self.undo_stack.append(edit)
        return edit

    def history_bytes(self) -> int:
        """Memory held by undo and redo history."""
        return sum(e.nbytes for e in self.undo_stack) + sum(e.nbytes for e in self.redo_stack)


__all__ = ["Edit", "LabelLayer", "Rect"]
