"""Post-processing p(y): suggested clean-ups of a finished label, each shown before/after.

Every step has the signature ``p(mask, **params) -> (new_mask, Change)``. It
returns a new bool array and never writes into ``mask``; the :class:`Change`
says in numbers and in one plain sentence what the step would do, so that the
annotator can accept or reject it. Nothing is applied silently: the session
decides what to keep.

Segments are 8-connected, holes are 4-connected background regions that do
not reach the border (see :mod:`labelassist.workflow.components`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from labelassist.errors import PluginError
from labelassist.workflow import components
from labelassist.workflow.registry import REGISTRY, Param, ProjectRegistry, Registry, register
from labelassist.workflow.results import Change

__all__ = [
    "Change",
    "Suggestion",
    "closing",
    "fill_holes",
    "keep_largest",
    "opening",
    "remove_small",
    "smooth",
    "suggest",
]


def _result(mask: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, Change]:
    return new, Change.between(mask, new)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


@register(
    "postprocess",
    "fill_holes",
    params=[Param("max_area", int, 0, low=0, help="Largest hole to fill, in pixels; 0 fills holes of any size.")],
)
def fill_holes(mask: np.ndarray, max_area: int = 0) -> tuple[np.ndarray, Change]:
    """Fill holes: background regions enclosed by the label.

    A hole is a 4-connected background region that does not reach the image
    border. One flood fill from the border finds them all (about 10x faster
    than ``scipy.ndimage.binary_fill_holes``, same result).

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    max_area : int
        Largest hole that is filled, in pixels; larger holes are kept (they
        are usually meant, like the lumen of a vessel). 0 fills every hole.

    Returns
    -------
    new_mask : ndarray of bool, shape (H, W)
    change : Change
    """
    mask = components.as_mask(mask)
    holes = components.hole_mask(mask)
    if max_area > 0:
        n, labels = cv2.connectedComponents(holes.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
        # Holes are few pixels: work on their indices only, not on the whole image.
        where = np.flatnonzero(holes)
        hole_of = labels.ravel()[where]
        small = np.bincount(hole_of, minlength=n) <= max_area
        holes = np.zeros_like(mask)
        holes.ravel()[where[small[hole_of]]] = True
    return _result(mask, mask | holes)


@register(
    "postprocess",
    "closing",
    params=[Param("radius", int, 2, low=0, high=50, help="Radius of the disk, in pixels.")],
)
def closing(mask: np.ndarray, radius: int = 2) -> tuple[np.ndarray, Change]:
    """Close gaps and notches narrower than the disk (dilation, then erosion).

    The image border does not erode a segment that touches it.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    radius : int
        Radius of the disk-shaped structuring element, in pixels; 0 changes nothing.
    """
    mask = components.as_mask(mask)
    if radius == 0:
        return _result(mask, mask.copy())
    # OpenCV's default border value is neutral for both erosion and dilation.
    new = cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_CLOSE, _disk(radius))
    return _result(mask, new.view(bool))


@register(
    "postprocess",
    "opening",
    params=[Param("radius", int, 2, low=0, high=50, help="Radius of the disk, in pixels.")],
)
def opening(mask: np.ndarray, radius: int = 2) -> tuple[np.ndarray, Change]:
    """Remove specks, spurs and bridges narrower than the disk (erosion, then dilation).

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    radius : int
        Radius of the disk-shaped structuring element, in pixels; 0 changes nothing.
    """
    mask = components.as_mask(mask)
    if radius == 0:
        return _result(mask, mask.copy())
    new = cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_OPEN, _disk(radius))
    return _result(mask, new.view(bool))


@register(
    "postprocess",
    "remove_small",
    params=[Param("min_area", int, 20, low=0, help="Segments smaller than this are removed, in pixels.")],
)
def remove_small(mask: np.ndarray, min_area: int = 20) -> tuple[np.ndarray, Change]:
    """Remove segments smaller than ``min_area`` pixels (stray strokes, dust).

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    min_area : int
        Smallest segment that is kept, in pixels; 0 keeps everything.
    """
    mask = components.as_mask(mask)
    labels, areas = components.label_segments(mask)
    small = np.flatnonzero(areas < min_area)
    return _result(mask, mask & ~components.select(labels, small))


@register(
    "postprocess",
    "keep_largest",
    params=[Param("n", int, 1, low=1, help="How many of the largest segments to keep.")],
)
def keep_largest(mask: np.ndarray, n: int = 1) -> tuple[np.ndarray, Change]:
    """Keep the ``n`` largest segments and remove all others.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    n : int
        Number of segments to keep; on equal areas the one met first in
        reading order wins.
    """
    mask = components.as_mask(mask)
    labels, areas = components.label_segments(mask)
    # Stable sort on -area keeps reading order among equal areas.
    order = np.argsort(-areas[1:], kind="stable") + 1
    return _result(mask, components.select(labels, order[:n]))


@register(
    "postprocess",
    "smooth",
    params=[Param("radius", float, 2.0, low=0.0, high=50.0, help="Smoothing radius (Gaussian sigma), in pixels.")],
)
def smooth(mask: np.ndarray, radius: float = 2.0) -> tuple[np.ndarray, Change]:
    """Smooth the outline: Gaussian blur of the mask, then threshold at one half.

    Jagged edges, bumps and dents of about ``radius`` pixels or less vanish;
    straight edges and large shapes stay where they are. Structures thinner
    than about the radius vanish too.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    radius : float
        Standard deviation of the Gaussian, in pixels; 0 changes nothing.
    """
    mask = components.as_mask(mask)
    if radius == 0:
        return _result(mask, mask.copy())
    # Replicating the border keeps an edge that meets the image border at right angles straight.
    blurred = cv2.GaussianBlur(
        mask.astype(np.float32), (0, 0), sigmaX=radius, sigmaY=radius, borderType=cv2.BORDER_REPLICATE
    )
    return _result(mask, blurred > 0.5)


# eq=False: comparing two suggestions would compare their mask arrays, which has no single truth value.
@dataclass(frozen=True, eq=False)
class Suggestion:
    """One post-processing step that would change the label, for a before/after view.

    Attributes
    ----------
    step : str
        Registered name of the post-processing step.
    params : dict
        Parameter values it ran with (defaults filled in).
    mask : ndarray of bool
        The label as the step would leave it.
    change : Change
        What differs from the label now.
    """

    step: str
    params: dict[str, Any]
    mask: np.ndarray
    change: Change


def suggest(mask: np.ndarray, choices: list[dict[str, Any]], *,
            registry: Registry | ProjectRegistry = REGISTRY) -> list[Suggestion]:
    """Run the project's post-processing choices and return those that change the label.

    Each choice runs on the label as it is now (not on the result of the one
    before), so each suggestion can be accepted or rejected on its own.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
        The annotator's label; it is not modified.
    choices : list of dict
        ``{"step": name, **params}`` per step, e.g. ``{"step": "fill_holes", "max_area": 0}``.
    registry : Registry or ProjectRegistry, optional
        Where the step names are looked up: a project's registry
        (:meth:`~labelassist.workflow.registry.Registry.for_project`) to reach its
        plug-ins; default the built-in steps only.

    Returns
    -------
    list of Suggestion
        In the order of ``choices``; steps that change nothing are left out.

    Raises
    ------
    PluginError
        For an unknown step or parameter, a value out of range, or a step
        that returns something other than a mask of the same size and a Change.
    """
    mask = components.as_mask(mask)
    # Plug-in steps get a read-only view, so a step that writes into its input fails loudly.
    frozen = mask.view()
    frozen.flags.writeable = False
    found = []
    for number, choice in enumerate(choices, start=1):
        if not isinstance(choice, dict) or not isinstance(choice.get("step"), str):
            raise PluginError(f"post-processing choice {number} must name its 'step', got {choice!r}")
        values = dict(choice)
        name = values.pop("step")
        step = registry.get("postprocess", name)
        params = step.resolve(values)
        result = step.func(frozen, **params)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Change)):
            raise PluginError(f"postprocess '{name}' must return (mask, Change), got {type(result).__name__}")
        new, change = result
        new = np.asarray(new)
        if new.shape != mask.shape or new.dtype != bool:
            raise PluginError(
                f"postprocess '{name}' returned a {new.dtype} array of shape {new.shape};"
                f" expected bool {mask.shape}"
            )
        if change.changed:
            found.append(Suggestion(step=name, params=params, mask=new, change=change))
    return found
