"""The prompts a careful annotator would give, simulated from a true mask.

An evaluation of an interactive method needs prompts; these are the ones a careful annotator
gives (a tap in the middle of each object and of each background region, a box around each
object), so an evaluation's figures are an upper bound of what a hurried tap gives.
:func:`simulate_prompts` serves the pre-label evaluation (:mod:`.prelabel_eval`),
:func:`object_boxes` the box-prompt evaluation (:mod:`.box_eval`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Prompts", "object_boxes", "simulate_prompts"]


@dataclass(frozen=True)
class Prompts:
    """Prompts simulated from a true mask.

    Attributes
    ----------
    points : list of (x, y)
        One foreground tap per segment, pixels.
    background_points : list of (x, y)
        One tap per background region, pixels.
    boxes : list of (x0, y0, x1, y1)
        Bounding box of each segment, pixels (``x1``, ``y1`` exclusive), in
        the order of ``points``.
    """

    points: list[tuple[int, int]]
    background_points: list[tuple[int, int]]
    boxes: list[tuple[int, int, int, int]]


def _interior_point(region: np.ndarray) -> tuple[int, int]:
    """The pixel farthest from the region's edge (the image border counts as an edge)."""
    padded = np.pad(region, 1).view(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def simulate_prompts(truth: np.ndarray, min_area: int = 16) -> Prompts:
    """The taps and boxes a careful annotator would give for ``truth``.

    Parameters
    ----------
    truth : ndarray of bool, shape (H, W)
        True mask.
    min_area : int
        Segments and background regions smaller than this (pixels) get no
        prompt: nobody taps a speck.

    Returns
    -------
    Prompts
        A foreground tap at the interior point of each 8-connected segment
        (the maximum of the distance transform: the spot farthest from any
        edge, where a finger lands when aiming at the object's middle), a
        background tap at the interior point of each 4-connected background
        region, and each segment's bounding box.
    """
    truth = np.ascontiguousarray(np.asarray(truth, dtype=bool))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(truth.view(np.uint8), connectivity=8)
    points, boxes = [], []
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        # The distance transform of the segment's own bounding box is enough (and cheap).
        px, py = _interior_point(labels[y : y + h, x : x + w] == k)
        points.append((x + px, y + py))
        boxes.append((x, y, x + w, y + h))
    background = []
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~truth).view(np.uint8), connectivity=4)
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        px, py = _interior_point(labels[y : y + h, x : x + w] == k)
        background.append((x + px, y + py))
    return Prompts(points=points, background_points=background, boxes=boxes)


def object_boxes(truth: np.ndarray, min_area: int = 50,
                 limit: int | None = None) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """The box an annotator would draw around each object of a true mask.

    Parameters
    ----------
    truth : ndarray of bool, shape (H, W)
        True mask.
    min_area : int
        Objects (8-connected segments) smaller than this, in pixels, get no box.
    limit : int, optional
        Keep at most this many boxes (an evaluation's time is spent per box):
        objects at evenly spaced ranks of size, so small and large ones are
        both represented.

    Returns
    -------
    list of ((x0, y0, x1, y1), object mask)
        Boxes in pixels (``x1``, ``y1`` exclusive) and each object's own mask,
        cropped to its box (the object lies wholly inside it).
    """
    truth = np.ascontiguousarray(np.asarray(truth) != 0)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(truth.view(np.uint8), connectivity=8)
    order = sorted((k for k in range(1, n) if stats[k, 4] >= min_area), key=lambda k: -int(stats[k, 4]))
    if limit is not None and len(order) > limit:
        order = [order[int(i)] for i in np.unique(np.linspace(0, len(order) - 1, max(limit, 0)).round())]
    out = []
    for k in order:
        x, y, w, h = (int(v) for v in stats[k, :4])
        out.append(((x, y, x + w, y + h), labels[y : y + h, x : x + w] == k))
    return out

