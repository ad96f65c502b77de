"""Pre-labels l(x): a first mask the annotator corrects instead of painting from scratch.

Every step has the signature ``l(image, context, **params) -> Prelabel``:

``image``
    ``(H, W)`` grey or ``(H, W, 3)`` RGB, any dtype :func:`labelassist.images.read_image`
    returns (uint8, uint16, float32), raw or pre-processed by h(x).
``context``
    A :class:`PrelabelContext`: what the session knows besides the pixels
    (the neighbouring frame's label, the annotator's taps, box and scribbles,
    a prediction model).

Built-in steps:

=============  ================================================  =========================
name           what it does                                       needs
=============  ================================================  =========================
``otsu``       one global Otsu threshold                          nothing
``previous``   the neighbouring frame's label                     ``previous_mask``
``flood``      magic wand: the region around a tap whose grey     a tap (``points``)
               level stays within a tolerance of the tap's
``watershed``  watershed of the gradient, seeded by the taps      a tap (background taps or
                                                                  the image border for the
                                                                  background)
``grabcut``    OpenCV GrabCut in a box around the object          a box or a scribble
``onnx``       the project's model, thresholded                   ``model``
=============  ================================================  =========================

Rules shared by all steps (one place: :func:`_grey`):

* an image that is empty (no pixels) or *blank* (every pixel has the same
  value, e.g. an all-zero frame) raises :class:`~labelassist.errors.PluginError`
  "the image is blank ...": there is nothing to pre-label, and a silent empty
  mask would look like a method that found nothing;
* an interactive step without the prompt it needs raises PluginError saying
  what to do ("tap inside the object first");
* the mask is always ``bool`` of the image's ``(H, W)``, also for RGB input.

The one exception to "errors, not empty masks" is ``previous`` at the start of a
sequence, see :func:`previous`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import cv2
import numpy as np

from labelassist.errors import PluginError
from labelassist.intensity import fill_non_finite, percentile_window, to_display, to_grey
from labelassist.workflow.components import hole_mask
from labelassist.workflow.registry import Param, register

__all__ = [
    "NO_PREVIOUS_NOTE",
    "Prelabel",
    "PrelabelContext",
    "flood",
    "grabcut",
    "onnx",
    "otsu",
    "otsu_threshold",
    "previous",
    "texture",
    "watershed",
]

NO_PREVIOUS_NOTE = "no previous label in this sequence: this frame starts empty"


@dataclass(frozen=True)
class Prelabel:
    """The result of a pre-label step.

    Attributes
    ----------
    mask : ndarray of bool, shape (H, W)
        Proposed foreground.
    probability : ndarray of float32, shape (H, W), or None
        Per-pixel foreground probability in [0, 1] when the method has one
        (a model), else None.
    method : str
        Name of the step that made it.
    note : str
        Empty for a normal result. A sentence for the UI when the mask is a
        stand-in rather than a proposal (``previous`` at a sequence start).
    """

    mask: np.ndarray
    probability: np.ndarray | None
    method: str
    note: str = ""

    @property
    def is_placeholder(self) -> bool:
        """True when the step had nothing to offer and the mask is an empty stand-in."""
        return bool(self.note)


class ProbabilityModel(Protocol):
    """What the ``onnx`` step needs from a model (the ONNX session lives in ``labelassist.models``)."""

    def predict(self, image: np.ndarray) -> np.ndarray:  # pragma: no cover - protocol
        """Foreground probability in [0, 1], shape ``image.shape[:2]``."""


@dataclass
class PrelabelContext:
    """What a pre-label step may use besides the image; every field is optional.

    Coordinates are image pixels, ``x`` to the right and ``y`` down, as the
    canvas reports them after undoing zoom and pan.

    Attributes
    ----------
    previous_mask : ndarray of bool, shape (H, W), or None
        Latest label of the neighbouring frame of the same sequence; None at
        the start of a sequence or for images that belong to none.
    points : list of (x, y)
        Foreground taps, pixels.
    background_points : list of (x, y)
        Background taps, pixels.
    box : (x0, y0, x1, y1) or None
        A box around the object, pixels; ``x1``/``y1`` exclusive. Corners may
        come in any order.
    foreground_scribble, background_scribble : ndarray of bool, shape (H, W), or None
        Pen strokes marking sure foreground / background.
    model : object with ``predict(image) -> ndarray`` or None
        The project's prediction model, see :class:`ProbabilityModel`.
    """

    previous_mask: np.ndarray | None = None
    points: list[tuple[float, float]] = field(default_factory=list)
    background_points: list[tuple[float, float]] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    foreground_scribble: np.ndarray | None = None
    background_scribble: np.ndarray | None = None
    model: ProbabilityModel | None = None


# -- shared input handling --------------------------------------------------------------------


def _grey(image: np.ndarray) -> np.ndarray:
    """Check ``image`` and return it as one 2-D channel (uint8, uint16 or float32).

    Raises PluginError for a shape or dtype we cannot segment and for a blank
    image. RGB becomes luma (ITU-R BT.601 weights, what cv2 uses); NaN and
    infinities in float images are replaced by the finite extremes so that
    they do not poison a histogram or a gradient.
    """
    image = np.asarray(image)
    if image.size == 0:
        raise PluginError(f"the image is empty (shape {image.shape}): there is nothing to pre-label")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise PluginError(f"pre-labels need a grey (H, W) or RGB (H, W, 3) image, got shape {image.shape}")
    if image.dtype.kind not in "biuf":
        raise PluginError(f"pre-labels cannot use {image.dtype} pixels")
    try:
        grey = fill_non_finite(to_grey(image))
    except ValueError:  # not one finite pixel
        raise PluginError("the image is blank (no pixel has a finite value): there is nothing to pre-label") from None
    lo, hi, _, _ = cv2.minMaxLoc(grey)
    if lo == hi:
        raise PluginError(f"the image is blank (every pixel is {lo:g}): there is nothing to pre-label")
    return np.ascontiguousarray(grey)


def _empty_mask(shape: tuple[int, int]) -> np.ndarray:
    return np.zeros(shape, dtype=bool)


def _points(points: Sequence[Sequence[float]] | None, shape: tuple[int, int], what: str) -> list[tuple[int, int]]:
    """Round taps to pixels and check that they lie on the image."""
    height, width = shape
    out = []
    for p in points or ():
        try:
            x, y = float(p[0]), float(p[1])
        except (TypeError, ValueError, IndexError):
            raise PluginError(f"a {what} must be an (x, y) pair of pixel coordinates, got {p!r}") from None
        xi, yi = int(round(x)), int(round(y))
        if not (0 <= xi < width and 0 <= yi < height):
            raise PluginError(f"the {what} at ({x:g}, {y:g}) is outside the image ({width}x{height} pixels)")
        out.append((xi, yi))
    return out


def _scribble(scribble: np.ndarray | None, shape: tuple[int, int], what: str) -> np.ndarray | None:
    if scribble is None:
        return None
    scribble = np.asarray(scribble)
    if scribble.shape != tuple(shape):
        raise PluginError(f"the {what} is {_size(scribble.shape)} but the image is {_size(shape)}")
    scribble = scribble != 0
    return scribble if scribble.any() else None


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else str(shape)


def _context(context: PrelabelContext | None) -> PrelabelContext:
    if context is None:
        return PrelabelContext()
    if not isinstance(context, PrelabelContext):
        raise PluginError(f"a pre-label step needs a PrelabelContext, got {type(context).__name__}")
    return context


def _display_grey(grey: np.ndarray) -> np.ndarray:
    """The grey levels the annotator sees (``to_display``: 0.5/99.5 % window; uint8 as is)."""
    return to_display(grey)


def texture(grey: np.ndarray, radius: int = 10) -> np.ndarray:
    """Local contrast: log of the local standard deviation, mapped to the display range.

    Brightfield and phase-contrast cells differ from the empty dish by texture,
    not by brightness (the reason Otsu fails on scratch assays); this map makes
    the textured region bright and the flat region dark, so the grey-level
    tools (flood, watershed, GrabCut) can separate them.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        uint8, uint16 or float32.
    radius : int
        Half-size of the square window, pixels (window ``2 * radius + 1``).

    Returns
    -------
    ndarray of uint8, shape (H, W)
        ``to_display(log1p(std))``. The logarithm compresses the very textured
        spots (cell borders, debris) so one tolerance fits the whole region.
    """
    x = _display_grey(grey).astype(np.float32)
    k = (2 * int(radius) + 1,) * 2
    mean = cv2.blur(x, k, borderType=cv2.BORDER_REFLECT)
    mean_sq = cv2.blur(x * x, k, borderType=cv2.BORDER_REFLECT)
    std = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
    return to_display(np.log1p(std))


def _feature(grey: np.ndarray, feature: str, radius: int) -> np.ndarray:
    return texture(grey, radius) if feature == "texture" else _display_grey(grey)


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), float(sigma)) if sigma > 0 else image


# -- otsu ------------------------------------------------------------------------------------------


def _histogram(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Full-precision histogram of a grey image, one bin per level.

    Returns ``(hist, levels, offset, scale)``: ``levels`` is the image as
    integer levels (uint8/uint16, the image itself when it already is one) and
    a level ``k`` stands for the value ``offset + k / scale``.
    """
    if grey.dtype == np.uint8:
        levels, n = grey, 256
    elif grey.dtype == np.uint16:
        levels, n = grey, 65536
    else:
        # Floats: quantise to 16 bits over their range; finer than any sensor, and the
        # histogram stays one calcHist call.
        lo, hi, _, _ = cv2.minMaxLoc(grey)
        scale = 65535.0 / (hi - lo)
        levels = ((grey - np.float32(lo)) * np.float32(scale) + np.float32(0.5)).astype(np.uint16)
        hist = cv2.calcHist([levels], [0], None, [65536], [0, 65536]).ravel()
        return hist, levels, float(lo), float(scale)
    # calcHist with one bin per level is exact and ~5x faster than np.bincount on uint16.
    hist = cv2.calcHist([levels], [0], None, [n], [0, n]).ravel()
    return hist, levels, 0.0, 1.0


def _otsu_level(hist: np.ndarray, window: bool) -> int:
    """Otsu's threshold as a level ``t`` of ``hist`` (foreground: level > t)."""
    hist = np.asarray(hist, dtype=np.float64)
    nonzero = np.flatnonzero(hist)
    lo, hi = int(nonzero[0]), int(nonzero[-1])
    if window:
        cdf = np.cumsum(hist)
        total = cdf[-1]
        wlo = int(np.searchsorted(cdf, 0.005 * total, side="left"))
        whi = int(np.searchsorted(cdf, 0.995 * total, side="left"))
        if whi > wlo:
            # Clipping to the window = moving the tails into the end bins.
            hist = hist.copy()
            hist[wlo] += hist[:wlo].sum()
            hist[whi] += hist[whi + 1 :].sum()
            lo, hi = wlo, whi
    h = hist[lo : hi + 1]
    k = np.arange(h.size, dtype=np.float64)
    w0 = np.cumsum(h)
    w1 = w0[-1] - w0
    m0 = np.cumsum(h * k)
    m1 = m0[-1] - m0
    with np.errstate(divide="ignore", invalid="ignore"):
        # Between-class variance up to a constant factor: w0 w1 (mu0 - mu1)^2.
        between = w0 * w1 * (m0 / w0 - m1 / w1) ** 2
    between[~np.isfinite(between)] = -1.0
    between[-1] = -1.0  # everything in one class is no split
    return lo + int(np.argmax(between))


def otsu_threshold(image: np.ndarray, window: bool = True) -> float:
    """Otsu's global threshold at full precision, from a one-bin-per-level histogram.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        Any dtype; RGB is converted to grey first.
    window : bool
        Clip to the 0.5/99.5 percentile window first (the display window), so
        that saturated halos and dead pixels do not pull the threshold.

    Returns
    -------
    float
        Threshold in image units; foreground candidates are ``grey > t``.
        With ``window=False`` this equals ``skimage.filters.threshold_otsu``
        for integer images (the same histogram, one bin per level).
    """
    grey = _grey(image)
    hist, _, offset, scale = _histogram(grey)
    return offset + _otsu_level(hist, window) / scale


@register(
    "prelabel",
    "otsu",
    params=[
        Param("polarity", str, "auto", choices=("auto", "bright", "dark"),
              help="Which side of the threshold is the object: auto takes the smaller side."),
        Param("sigma", float, 0.0, low=0.0, high=20.0,
              help="Gaussian smoothing before thresholding, pixels (0 = none)."),
        Param("window", bool, True,
              help="Ignore the darkest and brightest 0.5 percent (the display window) when thresholding."),
    ],
)
def otsu(image: np.ndarray, context: PrelabelContext | None = None, polarity: str = "auto",
         sigma: float = 0.0, window: bool = True) -> Prelabel:
    """Otsu threshold: one global grey level splits object from background.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        Any dtype; RGB is converted to grey, 16-bit data is thresholded at
        full precision.
    context : PrelabelContext, optional
        Not used.
    polarity : {'auto', 'bright', 'dark'}
        ``bright``: foreground above the threshold; ``dark``: at or below it;
        ``auto``: the side with fewer pixels (objects are usually the
        minority; set it explicitly when they are not, e.g. cell interiors in
        EM membrane images).
    sigma : float
        Gaussian smoothing before thresholding, pixels; 0 = none.
    window : bool
        Threshold the 0.5/99.5 percentile-windowed data (what the display
        shows) instead of the full range. Measured mean DSC with ``auto`` on
        usiigaci_phase: 0.260 windowed against 0.234 full range (the saturated
        halos pull the full-range threshold up).

    Returns
    -------
    Prelabel
        ``method='otsu'``, no probability.

    Raises
    ------
    PluginError
        For a blank image or an unusable array.

    Notes
    -----
    One histogram pass (``cv2.calcHist``, one bin per level, 3 ms on a
    2048x2048 uint16 image), the Otsu search on the histogram, one comparison
    pass: about 5 ms in all against 21 ms for ``skimage.filters.threshold_otsu``
    plus the comparison (``bench/bench_prelabel.py``).
    """
    _context(context)
    grey = _grey(image)
    grey = _smooth(grey, sigma)
    hist, levels, _, _ = _histogram(grey)
    t = _otsu_level(hist, window)
    above = float(hist[t + 1 :].sum())
    bright = polarity == "bright" or (polarity == "auto" and above <= hist.sum() - above)
    # A uint8/uint16 comparison with an in-range scalar stays in the native dtype (no upcast copy).
    mask = levels > levels.dtype.type(t) if bright else levels <= levels.dtype.type(t)
    return Prelabel(mask=mask, probability=None, method="otsu")


# -- previous --------------------------------------------------------------------------------------


@register("prelabel", "previous")
def previous(image: np.ndarray, context: PrelabelContext | None = None) -> Prelabel:
    """Previous label: the neighbouring frame's latest label, unchanged.

    For sequences (time-lapse, serial sections) where neighbouring frames look
    alike, so the last label needs only small corrections.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        Only its size is used (and it must not be blank, like for every step).
    context : PrelabelContext
        ``previous_mask``: the neighbouring frame's label, or None.

    Returns
    -------
    Prelabel
        ``method='previous'``. At the start of a sequence (``previous_mask``
        is None) an **empty mask** with ``note`` = :data:`NO_PREVIOUS_NOTE`
        (``is_placeholder`` is True): the first frame of every sequence has no
        neighbour, which is expected and must not look like a failure, and
        the annotator simply starts from scratch. An evaluation counts it as
        the empty pre-label it is (DSC 0 against a non-empty truth).

    Raises
    ------
    PluginError
        When the previous label's size differs from the image's.
    """
    context = _context(context)
    grey = _grey(image)
    if context.previous_mask is None:
        return Prelabel(mask=_empty_mask(grey.shape), probability=None, method="previous", note=NO_PREVIOUS_NOTE)
    prev = np.asarray(context.previous_mask)
    if prev.shape != grey.shape:
        raise PluginError(
            f"the previous label is {_size(prev.shape)} but this image is {_size(grey.shape)}: "
            "they cannot belong to the same sequence"
        )
    return Prelabel(mask=prev != 0, probability=None, method="previous")


# -- flood -----------------------------------------------------------------------------------------

_FEATURE_PARAM = Param(
    "feature", str, "intensity", choices=("intensity", "texture"),
    help="Compare grey levels (intensity) or local contrast (texture, for brightfield and phase contrast).",
)
_RADIUS_PARAM = Param("texture_radius", int, 10, low=1, high=100,
                      help="Window half-size of the texture feature, pixels.")


@register(
    "prelabel",
    "flood",
    params=[
        Param("tolerance", int, 24, low=0, high=255,
              help="How far a grey level may be from the tapped one, in display grey levels (0-255)."),
        Param("sigma", float, 6.0, low=0.0, high=30.0,
              help="Gaussian smoothing before filling, pixels: larger ignores fine texture."),
        _FEATURE_PARAM,
        _RADIUS_PARAM,
        Param("fill_holes", bool, True, help="Fill holes inside the filled region."),
    ],
)
def flood(image: np.ndarray, context: PrelabelContext | None = None, tolerance: int = 24, sigma: float = 6.0,
          feature: str = "intensity", texture_radius: int = 10, fill_holes: bool = True) -> Prelabel:
    """Magic wand: the connected region around each tap with a similar grey level.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        Any dtype; compared in display grey levels (``to_display``).
    context : PrelabelContext
        ``points``: one or more foreground taps (pixels); each fills its own
        region and the result is their union. Background taps are not used.
    tolerance : int
        Largest difference to the tapped pixel's (smoothed) grey level,
        display grey levels 0..255, either direction (OpenCV's fixed range:
        a floating range creeps along gentle gradients through the whole
        image).
    sigma : float
        Gaussian smoothing of the display image first, pixels; the grey
        level at a tap is then a local mean, so a tap on a speck does not
        decide the region.
    feature : {'intensity', 'texture'}
        Fill on the display grey levels (the default: a magic wand works on
        what the annotator sees), or on :func:`texture`, for objects that
        differ from the background by texture rather than brightness
        (brightfield, phase contrast). With texture use a wider tolerance:
        ``tolerance=48, sigma=8, texture_radius=15`` measured, one tap per
        segment, per-segment mean DSC 0.856 on scratch_assay where the grey
        wand leaks through the scratch (0.427); one tap in every segment,
        whole-image mean DSC 0.617 against 0.333 on usiigaci_phase and 0.856
        against 0.859 on isbi2012_membrane.
    texture_radius : int
        Window half-size for ``feature='texture'``, pixels.
    fill_holes : bool
        Fill holes inside the region (objects are labelled solid).

    Returns
    -------
    Prelabel
        ``method='flood'``.

    Raises
    ------
    PluginError
        Without a tap ("tap inside the object first"), for a tap outside the
        image, or for a blank image.
    """
    context = _context(context)
    grey = _grey(image)
    taps = _points(context.points, grey.shape, "tap")
    if not taps:
        raise PluginError("the magic wand needs a tap: tap inside the object first")
    g = _smooth(_feature(grey, feature, texture_radius), sigma)
    g = np.ascontiguousarray(g)
    fill = np.zeros((g.shape[0] + 2, g.shape[1] + 2), np.uint8)
    flags = 8 | (1 << 8) | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE
    for x, y in taps:
        # The shared mask keeps earlier fills: a tap inside one returns at once.
        cv2.floodFill(g, fill, (x, y), 0, (tolerance,), (tolerance,), flags)
    mask = fill[1:-1, 1:-1].astype(bool)
    if fill_holes:
        # OpenCV-based, ~10x faster than ndi.binary_fill_holes at 2048x2048 (same holes).
        mask |= hole_mask(mask)
    return Prelabel(mask=mask, probability=None, method="flood")


# -- watershed -------------------------------------------------------------------------------------


def _markers(shape: tuple[int, int], fg: list[tuple[int, int]], bg: list[tuple[int, int]],
             fg_scribble: np.ndarray | None, bg_scribble: np.ndarray | None, radius: int) -> np.ndarray:
    """int32 markers: 1 foreground, 2 background, 0 unknown (cv2.watershed's convention)."""
    markers = np.zeros(shape, np.int32)
    if not bg and bg_scribble is None:
        # No background prompt: the image border is background (an object in the middle).
        markers[0, :] = markers[-1, :] = markers[:, 0] = markers[:, -1] = 2
    for x, y in bg:
        cv2.circle(markers, (x, y), radius, 2, -1)
    if bg_scribble is not None:
        markers[bg_scribble] = 2
    # Foreground last: where a tap and the border or a background prompt overlap, the tap wins.
    for x, y in fg:
        cv2.circle(markers, (x, y), radius, 1, -1)
    if fg_scribble is not None:
        markers[fg_scribble] = 1
    return markers


@register(
    "prelabel",
    "watershed",
    params=[
        Param("sigma", float, 2.0, low=0.0, high=30.0, help="Gaussian smoothing before the watershed, pixels."),
        Param("feature", str, "texture", choices=("intensity", "texture"),
              help="Flood grey levels (intensity) or local contrast (texture, for brightfield and phase contrast)."),
        _RADIUS_PARAM,
        Param("tap_radius", int, 3, low=0, high=50, help="Radius of the seed drawn at each tap, pixels."),
    ],
)
def watershed(image: np.ndarray, context: PrelabelContext | None = None, sigma: float = 2.0,
              feature: str = "texture", texture_radius: int = 10, tap_radius: int = 3) -> Prelabel:
    """Tap to segment: seeded watershed between foreground and background taps.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        Any dtype.
    context : PrelabelContext
        ``points`` (foreground taps) and/or ``foreground_scribble`` seed the
        object; ``background_points`` and/or ``background_scribble`` seed the
        background. Without any background prompt the image border is the
        background seed: tap the background when the object touches the border.
    sigma : float
        Gaussian smoothing of the feature image, pixels.
    feature : {'intensity', 'texture'}
        Watershed on display grey levels, or on :func:`texture`. The default
        is texture. Measured mean DSC with one tap per segment and per
        background region (:func:`labelassist.workflow.evaluate.simulate_prompts`):
        scratch_assay 0.873 texture against 0.562 intensity, isbi2012_membrane
        0.867 against 0.864.
    texture_radius : int
        Window half-size for ``feature='texture'``, pixels.
    tap_radius : int
        Each tap seeds a disc of this radius, pixels (a finger is not a pixel).

    Returns
    -------
    Prelabel
        ``method='watershed'``.

    Raises
    ------
    PluginError
        Without a foreground tap or scribble, for a tap outside the image, or
        for a blank image.

    Notes
    -----
    ``cv2.watershed`` on the smoothed feature image (its flooding order is the
    neighbour difference, i.e. the gradient), ~10x faster than
    ``skimage.segmentation.watershed`` on a Sobel gradient.
    """
    context = _context(context)
    grey = _grey(image)
    fg = _points(context.points, grey.shape, "tap")
    bg = _points(context.background_points, grey.shape, "background tap")
    fg_scribble = _scribble(context.foreground_scribble, grey.shape, "foreground scribble")
    bg_scribble = _scribble(context.background_scribble, grey.shape, "background scribble")
    if not fg and fg_scribble is None:
        raise PluginError("tap-to-segment needs a tap: tap inside the object first")
    g = _smooth(_feature(grey, feature, texture_radius), sigma)
    markers = _markers(grey.shape, fg, bg, fg_scribble, bg_scribble, tap_radius)
    # cv2.watershed marks the outer pixel frame as a boundary (-1): pad by one so the
    # frame falls outside the image.
    padded = cv2.copyMakeBorder(np.ascontiguousarray(g), 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    labels = cv2.watershed(cv2.cvtColor(padded, cv2.COLOR_GRAY2BGR),
                           cv2.copyMakeBorder(markers, 1, 1, 1, 1, cv2.BORDER_REPLICATE))[1:-1, 1:-1]
    mask = labels == 1
    # Watershed lines (-1) between object and background belong to the object's outline.
    ridge = labels == -1
    if ridge.any():
        mask |= ridge & cv2.dilate(mask.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return Prelabel(mask=mask, probability=None, method="watershed")


# -- grabcut ---------------------------------------------------------------------------------------


def _box(box: Sequence[float], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Order, round and clip a box to the image; reject boxes that miss it or are too small."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise PluginError(f"a box must be (x0, y0, x1, y1) in pixels, got {box!r}") from None
    height, width = shape
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    bx0, by0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    bx1, by1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    if bx1 - bx0 < 2 or by1 - by0 < 2:
        raise PluginError(
            f"the box ({x0:g}, {y0:g}) to ({x1:g}, {y1:g}) does not cover the object: "
            f"draw it around the object, inside the image ({width}x{height} pixels)"
        )
    return bx0, by0, bx1, by1


def _extent(mask: np.ndarray | None) -> tuple[int, int, int, int] | None:
    """Bounding box ``(x0, y0, x1, y1)`` of a mask's foreground (exclusive ends), or None."""
    if mask is None or not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _union(boxes: Sequence[tuple[int, int, int, int] | None]) -> tuple[int, int, int, int]:
    boxes = [b for b in boxes if b is not None]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def _grabcut_features(grey: np.ndarray, image: np.ndarray, feature: str, radius: int,
                      crop: tuple[slice, slice], window: tuple[float, float]) -> np.ndarray:
    """8-bit 3-channel image of the crop for GrabCut's colour models."""
    ys, xs = crop
    if feature == "intensity":
        if image.ndim == 3:
            return np.ascontiguousarray(to_display(image[ys, xs, :3], window))
        d = to_display(grey[ys, xs], window)
        return cv2.merge([d, d, d])
    # Texture: padding the crop by the window radius keeps the box filter's view at the crop edge.
    height, width = grey.shape
    py0, py1 = max(0, ys.start - radius), min(height, ys.stop + radius)
    px0, px1 = max(0, xs.start - radius), min(width, xs.stop + radius)
    region = to_display(grey[py0:py1, px0:px1], window)
    inner = (slice(ys.start - py0, ys.stop - py0), slice(xs.start - px0, xs.stop - px0))
    d = region[inner]
    smooth = cv2.GaussianBlur(region, (0, 0), float(radius))[inner]
    return cv2.merge([d, smooth, texture(region, radius)[inner]])


@register(
    "prelabel",
    "grabcut",
    params=[
        Param("iterations", int, 3, low=1, high=20, help="GrabCut iterations: more is slower and rarely better."),
        Param("feature", str, "texture", choices=("intensity", "texture"),
              help="Model colours (intensity) or grey level, smoothed grey level and local contrast (texture)."),
        _RADIUS_PARAM,
        Param("margin", float, 0.1, low=0.0, high=1.0,
              help="Background kept around the box, as a fraction of the box size."),
        Param("max_side", int, 128, low=32, high=4096,
              help="Work on a copy at most this many pixels wide and high, then scale up (speed)."),
    ],
)
def grabcut(image: np.ndarray, context: PrelabelContext | None = None, iterations: int = 3,
            feature: str = "texture", texture_radius: int = 10, margin: float = 0.1,
            max_side: int = 128) -> Prelabel:
    """GrabCut: the object inside a box, separated by colour models and a graph cut.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        Any dtype.
    context : PrelabelContext
        ``box`` around the object (outside it is sure background) and/or
        ``foreground_scribble`` / ``background_scribble`` (sure labels);
        foreground and background taps count as small scribbles.
    iterations : int
        GrabCut iterations.
    feature : {'intensity', 'texture'}
        What GrabCut's Gaussian mixtures see: the display colours (grey
        replicated for grey images), or three grey-image channels: display
        grey, its Gaussian blur and :func:`texture`. The default is texture:
        with grey levels alone the models cannot tell textured cells from the
        background (scratch_assay, the box of each segment, all 60 frames:
        mean DSC 0.27 on intensity against 0.97 on texture).
    texture_radius : int
        Window half-size of the texture channel and sigma of the blurred
        channel, pixels.
    margin : float
        Background band kept around the box, fraction of the box's size
        (at least 8 pixels); pixels further away are background and are not
        processed at all.
    max_side : int
        The crop is scaled down (area averaging) until its longer side is at
        most this, pixels; GrabCut's cost grows with the pixel count, and the
        mask is scaled back up (linear interpolation of the 0/1 mask, cut at
        0.5).

    Returns
    -------
    Prelabel
        ``method='grabcut'``; empty outside the box.

    Raises
    ------
    PluginError
        Without a box or scribble ("draw a box around the object first"),
        for a box that misses the image or leaves no background and no
        background scribble, or for a blank image.
    """
    context = _context(context)
    grey = _grey(image)
    shape = grey.shape
    height, width = shape
    fg = _points(context.points, shape, "tap")
    bg = _points(context.background_points, shape, "background tap")
    fg_scribble = _scribble(context.foreground_scribble, shape, "foreground scribble")
    bg_scribble = _scribble(context.background_scribble, shape, "background scribble")
    if context.box is None and fg_scribble is None and not fg:
        raise PluginError("GrabCut needs a box: draw a box around the object first (or scribble on it)")

    # The region of interest: the box and every foreground prompt.
    box = _box(context.box, shape) if context.box is not None else None
    x0, y0, x1, y1 = _union([box, _extent(fg_scribble)] + [(x, y, x + 1, y + 1) for x, y in fg])
    pad_x = max(8, int(round(margin * (x1 - x0))))
    pad_y = max(8, int(round(margin * (y1 - y0))))
    if box is None:
        # Without a box the object may extend well beyond the scribbles (a stroke is thin in
        # one direction: pad by its longer side), and the background prompts must be in view.
        pad_x = pad_y = max(pad_x, pad_y, x1 - x0, y1 - y0)
        x0, y0, x1, y1 = _union([(x0, y0, x1, y1), _extent(bg_scribble)] + [(x, y, x + 1, y + 1) for x, y in bg])
    cx0, cy0 = max(0, x0 - pad_x), max(0, y0 - pad_y)
    cx1, cy1 = min(width, x1 + pad_x), min(height, y1 + pad_y)
    crop = (slice(cy0, cy1), slice(cx0, cx1))
    ch, cw = cy1 - cy0, cx1 - cx0

    # Everything below works on the crop only (a small box on a big image stays cheap).
    marks = np.zeros((ch, cw), np.uint8)  # 1 sure foreground, 2 sure background
    if bg_scribble is not None:
        marks[bg_scribble[crop]] = 2
    for x, y in bg:
        cv2.circle(marks, (x - cx0, y - cy0), 3, 2, -1)
    for x, y in fg:
        cv2.circle(marks, (x - cx0, y - cy0), 3, 1, -1)
    if fg_scribble is not None:
        marks[fg_scribble[crop]] = 1
    if box is not None:
        bx0, by0, bx1, by1 = box
        init = np.full((ch, cw), cv2.GC_BGD, np.uint8)
        init[by0 - cy0 : by1 - cy0, bx0 - cx0 : bx1 - cx0] = cv2.GC_PR_FGD
    else:
        # Scribbles only: each unknown pixel starts with the class of the nearest prompt (the
        # crop's frame stands for the background when there is no background prompt); starting
        # all of them as background would leave GrabCut with a foreground of the strokes alone.
        bg_seed = marks == 2
        if not bg_seed.any():
            bg_seed[0, :] = bg_seed[-1, :] = bg_seed[:, 0] = bg_seed[:, -1] = True
        d_fg = cv2.distanceTransform((marks != 1).view(np.uint8), cv2.DIST_L2, 3)
        d_bg = cv2.distanceTransform((~bg_seed).view(np.uint8), cv2.DIST_L2, 3)
        init = np.where(d_fg < d_bg, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    init[marks == 2] = cv2.GC_BGD
    init[marks == 1] = cv2.GC_FGD
    if not ((init == cv2.GC_BGD) | (init == cv2.GC_PR_BGD)).any():
        raise PluginError(
            "the box covers the whole image, so GrabCut sees no background: draw it around the object "
            "leaving some background outside, or scribble on the background"
        )

    feats = _grabcut_features(grey, np.asarray(image), feature, texture_radius, crop, percentile_window(grey))
    scale = min(1.0, max_side / max(ch, cw))
    work = init
    if scale < 1.0:
        size = (max(2, int(round(cw * scale))), max(2, int(round(ch * scale))))
        feats = cv2.resize(feats, size, interpolation=cv2.INTER_AREA)
        work = cv2.resize(init, size, interpolation=cv2.INTER_NEAREST)
        # Thin strokes must survive the downscale: a small pixel touched by a stroke keeps it
        # (the box edge does not need this; nearest-neighbour keeps it where it is).
        for value, mark in ((cv2.GC_BGD, 2), (cv2.GC_FGD, 1)):
            touched = cv2.resize((marks == mark).astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA)
            work[touched > 0] = value
    work = work.copy()
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(feats, work, None, bgd_model, fgd_model, int(iterations), cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:
        # GrabCut needs samples of both classes to fit its models.
        raise PluginError(f"GrabCut could not separate object and background here ({exc.err.strip()}); "
                          "draw the box a little larger or scribble on the object") from None
    fg_small = ((work == cv2.GC_FGD) | (work == cv2.GC_PR_FGD)).astype(np.float32)
    if scale < 1.0:
        fg_small = cv2.resize(fg_small, (cw, ch), interpolation=cv2.INTER_LINEAR)
    inside = fg_small > 0.5
    # Sure labels stay sure (outside the box included): the upscale must not blur them.
    inside[init == cv2.GC_BGD] = False
    inside[init == cv2.GC_FGD] = True
    mask = _empty_mask(shape)
    mask[crop] = inside
    return Prelabel(mask=mask, probability=None, method="grabcut")


# -- onnx ------------------------------------------------------------------------------------------


@register(
    "prelabel",
    "onnx",
    params=[Param("threshold", float, 0.5, low=0.0, high=1.0,
                  help="Probability above which a pixel is foreground.")],
)
def onnx(image: np.ndarray, context: PrelabelContext | None = None, threshold: float = 0.5) -> Prelabel:
    """Model: the project's segmentation network (ONNX U-Net), thresholded.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        Passed to ``context.model.predict`` as it is.
    context : PrelabelContext
        ``model``: an object with ``predict(image) -> probability map``
        (``labelassist.models`` loads the ONNX session and tiles the image).
    threshold : float
        Probability above which a pixel is foreground.

    Returns
    -------
    Prelabel
        ``method='onnx'`` with the probability map (float32 in [0, 1]).

    Raises
    ------
    PluginError
        When no model is installed, or its output does not fit the image.
    """
    context = _context(context)
    grey = _grey(image)
    if context.model is None:
        raise PluginError("no model is installed for this project")
    prob = np.asarray(context.model.predict(image))
    if prob.ndim == 3 and prob.shape[2] == 1:
        prob = prob[:, :, 0]
    if prob.shape != grey.shape:
        raise PluginError(
            f"the model's output is {_size(prob.shape)} but the image is {_size(grey.shape)}: "
            "the model does not fit this image"
        )
    prob = np.nan_to_num(prob.astype(np.float32), nan=0.0)
    prob = np.clip(prob, 0.0, 1.0)
    return Prelabel(mask=prob > threshold, probability=prob, method="onnx")
