"""The teach tool's strokes: object and background scribbles on the open image (no GUI).

The strokes teach the instant learner what the object and the background look like
(``Session.teach``); they are never the label. They live beside the label layer, not in it:
no undo atoms, nothing journalled, dropped when another sample opens. A stroke of one class
over the other takes its pixels (painting background where an object stroke was wrong
corrects it), so a pixel is never both.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)

OBJECT_CODE = np.uint8(8)        # the overlay's pixel code bits (label_canvas): bit 3 object,
BACKGROUND_CODE = np.uint8(16)   # bit 4 background


def stroke_stamp(shape: tuple[int, int], p0: Sequence[float], p1: Sequence[float],
                 radius: float) -> tuple[Rect, np.ndarray] | None:
    """The pixels of a round-capped line of ``radius`` from ``p0`` to ``p1`` (image pixels, x right).

    The same geometry as the label brush (:meth:`labelassist.label_layer.LabelLayer.paint_segment`).

    Returns
    -------
    (rect, stamp) or None
        ``stamp`` is a bool array of the rectangle's size; None when the line is off the image.
    """
    h, w = shape
    r = max(0.5, float(radius))
    x0 = max(0, int(np.floor(min(p0[0], p1[0]) - r - 1)))
    y0 = max(0, int(np.floor(min(p0[1], p1[1]) - r - 1)))
    x1 = min(w, int(np.ceil(max(p0[0], p1[0]) + r + 1)) + 1)
    y1 = min(h, int(np.ceil(max(p0[1], p1[1]) + r + 1)) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    stamp = np.zeros((y1 - y0, x1 - x0), np.uint8)
    f = 16  # sub-pixel precision for cv2 (shift 4)
    a = (int(round((p0[0] - x0) * f)), int(round((p0[1] - y0) * f)))
    b = (int(round((p1[0] - x0) * f)), int(round((p1[1] - y0) * f)))
    cv2.line(stamp, a, b, 1, thickness=max(1, int(round(2 * r))), lineType=cv2.LINE_8, shift=4)
    cv2.circle(stamp, a, int(round(r * f)), 1, thickness=-1, lineType=cv2.LINE_8, shift=4)
    cv2.circle(stamp, b, int(round(r * f)), 1, thickness=-1, lineType=cv2.LINE_8, shift=4)
    return (x0, y0, x1, y1), stamp.astype(bool)


class TeachStrokes:
    """Object and background strokes painted on one image.

    Parameters
    ----------
    shape : tuple of int
        (height, width) of the image.

    Attributes
    ----------
    object, background : ndarray of bool
        Where object and where background was painted (never both at one pixel).
    """

    def __init__(self, shape: tuple[int, int]):
        self.object = np.zeros(shape, dtype=bool)
        self.background = np.zeros(shape, dtype=bool)
        self._dirty: Rect | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.object.shape

    @property
    def has_object(self) -> bool:
        return bool(self.object.any())

    @property
    def has_background(self) -> bool:
        return bool(self.background.any())

    @property
    def empty(self) -> bool:
        return not (self.has_object or self.has_background)

    def paint_segment(self, p0: Sequence[float], p1: Sequence[float], radius: float,
                      background: bool = False) -> None:
        """Paint one segment of a stroke of object (or ``background``); it takes the other class's pixels."""
        made = stroke_stamp(self.shape, p0, p1, radius)
        if made is None:
            return
        (x0, y0, x1, y1), stamp = made
        paint, other = (self.background, self.object) if background else (self.object, self.background)
        paint[y0:y1, x0:x1] |= stamp
        other[y0:y1, x0:x1] &= ~stamp
        self._grow_dirty((x0, y0, x1, y1))

    def clear(self) -> None:
        """No strokes any more (the whole image is dirty when there were some)."""
        if not self.empty:
            self._grow_dirty((0, 0, self.shape[1], self.shape[0]))
        self.object[:] = False
        self.background[:] = False

    def codes(self, rect: Rect) -> np.ndarray:
        """The overlay's stroke code bits of ``rect`` (uint8: :data:`OBJECT_CODE`, :data:`BACKGROUND_CODE`)."""
        x0, y0, x1, y1 = rect
        code = self.object[y0:y1, x0:x1].view(np.uint8) * OBJECT_CODE
        code |= self.background[y0:y1, x0:x1].view(np.uint8) * BACKGROUND_CODE
        return code

    def take_dirty(self) -> Rect | None:
        """The rectangle changed since the last call (None when nothing changed), and reset it."""
        dirty, self._dirty = self._dirty, None
        return dirty

    def _grow_dirty(self, rect: Rect) -> None:
        if self._dirty is None:
            self._dirty = rect
        else:
            a, b, c, d = self._dirty
            self._dirty = (min(a, rect[0]), min(b, rect[1]), max(c, rect[2]), max(d, rect[3]))


__all__ = ["TeachStrokes", "stroke_stamp", "OBJECT_CODE", "BACKGROUND_CODE"]
