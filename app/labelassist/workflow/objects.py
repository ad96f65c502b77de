"""One object at a time into a binary mask: what tap-to-segment proposes, and how it is added.

A binary mask has no instance ids: two cells are two objects only while they are two
8-connected segments (what inspection counts and COCO export writes). Tap-to-segment adds
objects one by one, so an object that touches one already labelled must keep a one-pixel
background seam from it, or the two silently become one segment.

Pure functions, numpy in and out; coordinates are image pixels, x right and y down.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = ["BOX_MARGIN", "MERGE_SHARE", "add_object", "object_at"]

#: A box proposal is kept to the box grown by this share of its size (at least 2 pixels): a
#: model may bleed past a box drawn tight, never onto the far neighbours the user left out.
BOX_MARGIN = 0.05
#: An object already in the mask joins the new one (no seam) when the new one covers at least
#: this share of it: the user is redrawing or growing that object, not adding a neighbour (a
#: proposal that spills over half of a small neighbour must not swallow it).
MERGE_SHARE = 0.8

Point = tuple[float, float]
Box = tuple[float, float, float, float]


def _inside(points: Sequence[Point], shape: tuple[int, int]) -> list[tuple[int, int]]:
    h, w = shape
    return [(int(x), int(y)) for x, y in points if 0 <= int(x) < w and 0 <= int(y) < h]


def object_at(proposal: np.ndarray, points: Sequence[Point] = (), box: Box | None = None) -> np.ndarray:
    """The object a prompt asked for, out of a model's whole-image answer.

    Parameters
    ----------
    proposal : ndarray of bool, shape (H, W)
        What the segmenter returned (it may hold other, similar-looking objects).
    points : sequence of (x, y)
        The object taps. With taps, only the 8-connected segments under a tap
        are kept; a tap that hit no segment keeps the nearest one (a tap on a
        thin cell misses by a pixel).
    box : (x0, y0, x1, y1) or None
        The box drawn around the object: the answer is cut to the box grown by
        :data:`BOX_MARGIN`; without taps, the segments touching the box's
        middle half are kept, else the largest one in the box.

    Returns
    -------
    ndarray of bool, shape (H, W)
        Empty when nothing was found.
    """
    mask = np.asarray(proposal, dtype=bool)
    h, w = mask.shape
    if points and not _inside(points, mask.shape):
        return np.zeros_like(mask)  # every tap off the image: nothing was pointed at
    if box is not None:
        if not all(np.isfinite(float(v)) for v in box):
            raise ValueError(f"a box must be four finite numbers, got {tuple(box)!r}")
        x0, x1 = sorted((float(box[0]), float(box[2])))
        y0, y1 = sorted((float(box[1]), float(box[3])))
        mx, my = max(2.0, BOX_MARGIN * (x1 - x0)), max(2.0, BOX_MARGIN * (y1 - y0))
        cut = np.zeros_like(mask)
        cy0, cy1 = max(0, int(y0 - my)), min(h, int(np.ceil(y1 + my)))
        cx0, cx1 = max(0, int(x0 - mx)), min(w, int(np.ceil(x1 + mx)))
        cut[cy0:cy1, cx0:cx1] = mask[cy0:cy1, cx0:cx1]
        mask = cut
    if not mask.any():
        return mask
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    taps = _inside(points, mask.shape)
    keep: set[int] = set()
    if taps:
        for x, y in taps:
            if labels[y, x]:
                keep.add(int(labels[y, x]))
            else:  # the nearest segment to a tap that missed
                ys, xs = np.nonzero(labels)
                nearest = int(np.argmin((xs - x) ** 2 + (ys - y) ** 2))
                keep.add(int(labels[ys[nearest], xs[nearest]]))
    elif box is not None:
        qx0, qx1 = int(x0 + (x1 - x0) / 4), int(np.ceil(x1 - (x1 - x0) / 4))
        qy0, qy1 = int(y0 + (y1 - y0) / 4), int(np.ceil(y1 - (y1 - y0) / 4))
        middle = labels[max(0, qy0):max(0, qy1) + 1, max(0, qx0):max(0, qx1) + 1]
        keep = {int(v) for v in np.unique(middle) if v}
        if not keep:
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            keep = {int(np.argmax(sizes))}
    else:
        return mask
    return np.isin(labels, sorted(keep))


def add_object(existing: np.ndarray, new: np.ndarray, merge_share: float = MERGE_SHARE) -> np.ndarray:
    """The mask with ``new`` added as an object of its own.

    Where ``new`` touches or overlaps an object already in ``existing``, the
    pixels of ``new`` next to that object stay background, a one-pixel seam,
    so the two remain separate 8-connected segments; when the seam cuts
    ``new`` in pieces, only its largest piece is added. An existing object that
    ``new`` covers for at least ``merge_share`` of its area is taken to be the
    same object (the user redrew or grew it): the two are joined instead.

    Parameters
    ----------
    existing, new : ndarray of bool, shape (H, W)
    merge_share : float
        See above; above 1.0 nothing is ever joined.

    Returns
    -------
    ndarray of bool, shape (H, W)
        A new array; ``existing`` is not changed. Existing pixels are never
        removed.

    Examples
    --------
    >>> a = np.zeros((5, 9), bool); a[1:4, 1:4] = True
    >>> b = np.zeros((5, 9), bool); b[1:4, 4:8] = True   # touches a
    >>> from labelassist.workflow.components import count_segments
    >>> count_segments(add_object(a, b))
    2
    """
    existing = np.asarray(existing, dtype=bool)
    new = np.asarray(new, dtype=bool)
    if existing.shape != new.shape:
        raise ValueError(f"the object is {new.shape[1]}x{new.shape[0]} but the mask is "
                         f"{existing.shape[1]}x{existing.shape[0]}")
    result = existing | new
    if not new.any() or not existing.any():
        return result
    # Only the neighbourhood of the new object matters: work in its box grown by 2 pixels.
    ys, xs = np.nonzero(new)
    h, w = new.shape
    y0, y1 = max(0, ys.min() - 2), min(h, ys.max() + 3)
    x0, x1 = max(0, xs.min() - 2), min(w, xs.max() + 3)
    old, add = existing[y0:y1, x0:x1], new[y0:y1, x0:x1]
    n, labels = cv2.connectedComponents(old.view(np.uint8), connectivity=8)
    if n <= 1:
        return result
    # Sizes over the whole mask: an object reaching out of the window must not look small.
    touching = np.unique(labels[cv2.dilate(add.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)])
    touching = [int(t) for t in touching if t]
    if not touching:
        return result
    full_n, full_labels = cv2.connectedComponents(existing.view(np.uint8), connectivity=8)
    full_sizes = np.bincount(full_labels.ravel(), minlength=full_n)
    covered = np.bincount(full_labels[new], minlength=full_n)
    apart = np.zeros_like(old)
    for t in touching:
        # the same object in the full labelling (any of its pixels in the window)
        full_id = int(full_labels[y0:y1, x0:x1][labels == t][0])
        if covered[full_id] < merge_share * full_sizes[full_id]:
            apart |= labels == t
    if not apart.any():
        return result
    seam = cv2.dilate(apart.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~old
    window = result[y0:y1, x0:x1]
    window[seam & add] = False
    # The seam may cut the new object in pieces (a thin cell passing a neighbour): one object was
    # asked for, so its largest piece stays, with the objects it joined.
    new_only = window & add & ~old
    pieces, piece = cv2.connectedComponents((new_only | (old & ~apart)).view(np.uint8), connectivity=8)
    ids = piece[new_only]
    if pieces > 2 and len(np.unique(ids)) > 1:
        window[new_only & (piece != np.argmax(np.bincount(ids)))] = False
    return result
