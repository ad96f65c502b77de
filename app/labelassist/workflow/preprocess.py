"""Pre-processing h(x): what the annotator sees instead of the raw image.

Every step has the signature ``h(image, **params) -> ndarray``: it accepts a
``(H, W)`` grey or ``(H, W, 3)`` RGB image of any dtype that
:func:`labelassist.images.read_image` returns (uint8, uint16, float32) and
returns float32 in [0, 1] of the same shape. Steps chain: :func:`run_pipeline`
feeds each step's result to the next, and a float image already in [0, 1]
passes through :func:`as_float01` unchanged, so only the first step sees raw
sensor values.

The steps change only what is shown; the label is always drawn on the raw
image's pixel grid.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from labelassist import intensity
from labelassist.errors import PluginError
from labelassist.workflow.registry import REGISTRY, Param, ProjectRegistry, Registry, register

__all__ = [
    "as_float01",
    "bilateral",
    "clahe",
    "gamma",
    "gaussian",
    "median",
    "nl_means",
    "percentile_normalise",
    "run_pipeline",
    "to_uint8",
]


def _check_layout(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or image.size == 0:
        raise PluginError(f"pre-processing needs a grey (H, W) or RGB (H, W, 3) image, got shape {image.shape}")
    if image.dtype.kind not in "biuf":
        raise PluginError(f"pre-processing cannot use {image.dtype} pixels")
    return image


def as_float01(image: np.ndarray) -> np.ndarray:
    """:func:`labelassist.intensity.as_float01` of an image the steps accept.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        Any dtype that :func:`labelassist.images.read_image` returns, or bool.

    Returns
    -------
    ndarray of float32 in [0, 1]
        A new array; ``image`` is not modified.

    Raises
    ------
    PluginError
        Another layout, an empty image, or non-numeric pixels.
    """
    return intensity.as_float01(_check_layout(image))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """:func:`labelassist.intensity.to_uint8` of an image the steps accept: ``round(255 * as_float01(image))``.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        Usually a pre-processing result (float32 in [0, 1]); any dtype that
        :func:`as_float01` accepts.

    Returns
    -------
    ndarray of uint8
    """
    return intensity.to_uint8(_check_layout(image))


# -- steps ----------------------------------------------------------------------------------------
@register(
    "preprocess",
    "percentile_normalise",
    params=[
        Param("low", float, 0.5, low=0.0, high=100.0, help="Percentile shown as black, in percent."),
        Param("high", float, 99.5, low=0.0, high=100.0, help="Percentile shown as white, in percent."),
    ],
)
def percentile_normalise(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Stretch contrast: the ``low`` percentile becomes 0, the ``high`` percentile 1.

    The usual first step for 16-bit microscopy, whose values fill only a small
    part of 0..65535. All channels of an RGB image share one window, so
    colours keep their balance.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
    low, high : float
        Percentiles in percent (0..100), ``low < high``; values outside the
        window are clipped (about ``low`` percent of the pixels become 0 and
        ``100 - high`` percent become 1).

    Returns
    -------
    ndarray of float32 in [0, 1]
    """
    image = _check_layout(image)
    if not low < high:
        raise PluginError(f"preprocess 'percentile_normalise': low ({low}) must be below high ({high})")
    return intensity.percentile_rescale(image, low, high)


@register(
    "preprocess",
    "gamma",
    params=[
        Param("gamma", float, 1.0, low=0.1, high=10.0, help="Exponent: below 1 brightens dark parts, above 1 darkens.")
    ],
)
def gamma(image: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Gamma correction ``x ** gamma`` of the image in [0, 1].

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
    gamma : float
        Exponent (no unit); 1 changes nothing, 0.5 lifts dark regions.

    Returns
    -------
    ndarray of float32 in [0, 1]
    """
    x = as_float01(image)
    if gamma != 1.0:
        np.power(x, np.float32(gamma), out=x)
    return x


@register(
    "preprocess",
    "clahe",
    params=[
        Param("clip_limit", float, 2.0, low=0.1, high=40.0, help="Contrast limit; higher is stronger local contrast."),
        Param("tile_grid", int, 8, low=1, high=64, help="Number of tiles along each side of the image."),
    ],
)
def clahe(image: np.ndarray, clip_limit: float = 2.0, tile_grid: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV's CLAHE).

    Runs on an 8-bit version of the image: OpenCV's 16-bit CLAHE spreads each
    tile over 65536 histogram bins and floors the clip count at one pixel per
    bin, so the clip limit stops having any effect on 16-bit data. RGB images
    are equalised on the lightness of CIE L*a*b* only, so hues do not shift.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
    clip_limit : float
        Histogram clip limit, relative to a flat histogram (OpenCV's unit);
        1 is almost no change, 2 to 4 is typical.
    tile_grid : int
        Tiles per image side; the local region is about (H / tile_grid) x
        (W / tile_grid) pixels.

    Returns
    -------
    ndarray of float32 in [0, 1]
        In steps of 1/255.
    """
    u8 = to_uint8(image)
    equalise = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    if u8.ndim == 2:
        out = equalise.apply(u8)
    else:
        lab = cv2.cvtColor(u8, cv2.COLOR_RGB2LAB)
        lab[:, :, 0] = equalise.apply(np.ascontiguousarray(lab[:, :, 0]))
        out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return intensity.as_float01(out)


@register(
    "preprocess",
    "median",
    params=[Param("radius", int, 1, low=1, high=10, help="Half the window size, in pixels (1 = 3x3).")],
)
def median(image: np.ndarray, radius: int = 1) -> np.ndarray:
    """Median filter over a (2 radius + 1)-pixel square: removes salt-and-pepper noise.

    OpenCV filters float images only up to 5x5; larger windows run on an 8-bit
    version of the image (the result then has steps of 1/255).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
    radius : int
        Half the window side, in pixels.

    Returns
    -------
    ndarray of float32 in [0, 1]
    """
    size = 2 * radius + 1
    if radius <= 2:
        return cv2.medianBlur(as_float01(image), size)
    return intensity.as_float01(cv2.medianBlur(to_uint8(image), size))


@register(
    "preprocess",
    "gaussian",
    params=[Param("sigma", float, 1.0, low=0.0, high=50.0, help="Blur radius (standard deviation), in pixels.")],
)
def gaussian(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian blur.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
    sigma : float
        Standard deviation of the Gaussian, in pixels; 0 changes nothing.

    Returns
    -------
    ndarray of float32 in [0, 1]
    """
    x = as_float01(image)
    if sigma == 0:
        return x
    out = cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    # A weighted mean stays in [0, 1] up to rounding; clip that rounding away.
    return np.clip(out, 0.0, 1.0, out=out)


@register(
    "preprocess",
    "bilateral",
    params=[
        Param(
            "sigma_color",
            float,
            0.1,
            low=0.01,
            high=1.0,
            help="Intensity difference that is still smoothed, as a fraction of the range.",
        ),
        Param("sigma_space", float, 3.0, low=0.5, high=20.0, help="Spatial extent of the smoothing, in pixels."),
    ],
)
def bilateral(image: np.ndarray, sigma_color: float = 0.1, sigma_space: float = 3.0) -> np.ndarray:
    """Edge-preserving smoothing: neighbours are averaged only if their intensity is similar.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
    sigma_color : float
        Standard deviation of the intensity weight, as a fraction of the
        [0, 1] range: differences well above it (edges) are kept.
    sigma_space : float
        Standard deviation of the spatial weight, in pixels; the window
        reaches 1.5 sigma_space pixels from the centre.

    Returns
    -------
    ndarray of float32 in [0, 1]
    """
    out = cv2.bilateralFilter(as_float01(image), d=-1, sigmaColor=sigma_color, sigmaSpace=sigma_space)
    return np.clip(out, 0.0, 1.0, out=out)


@register(
    "preprocess",
    "nl_means",
    params=[
        Param("h", float, 10.0, low=1.0, high=100.0, help="Denoising strength, in grey levels of 0-255."),
        Param("patch_radius", int, 3, low=1, high=7, help="Half the size of the compared patches, in pixels."),
        Param("search_radius", int, 10, low=2, high=20, help="Half the size of the search window, in pixels."),
    ],
)
def nl_means(image: np.ndarray, h: float = 10.0, patch_radius: int = 3, search_radius: int = 10) -> np.ndarray:
    """Non-local means denoising (OpenCV ``fastNlMeansDenoising``).

    Runs on an 8-bit version of the image, where ``h`` has OpenCV's usual
    meaning; RGB images use the coloured variant (denoised in L*a*b*).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
    h : float
        Filter strength in grey levels of the 0..255 scale: about the noise
        level to remove; higher removes more noise and more detail.
    patch_radius : int
        Patches of (2 patch_radius + 1) pixels square are compared.
    search_radius : int
        Similar patches are searched within (2 search_radius + 1) pixels square.

    Returns
    -------
    ndarray of float32 in [0, 1]
        In steps of 1/255.
    """
    u8 = to_uint8(image)
    template, search = 2 * patch_radius + 1, 2 * search_radius + 1
    if u8.ndim == 2:
        out = cv2.fastNlMeansDenoising(u8, None, h, template, search)
    else:
        out = cv2.fastNlMeansDenoisingColored(u8, None, h, h, template, search)
    return intensity.as_float01(out)


# -- pipeline -------------------------------------------------------------------------------------
def run_pipeline(image: np.ndarray, pipeline: list[dict[str, Any]], *,
                 registry: Registry | ProjectRegistry = REGISTRY) -> np.ndarray:
    """Apply the project's pre-processing steps in order.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        The raw image (uint8, uint16 or float32); it is not modified.
    pipeline : list of dict
        ``{"step": name, **params}`` per step, e.g.
        ``[{"step": "percentile_normalise"}, {"step": "clahe", "clip_limit": 2.0}]``.
        Parameters not given take their defaults.
    registry : Registry or ProjectRegistry, optional
        Where the step names are looked up: a project's registry
        (:meth:`~labelassist.workflow.registry.Registry.for_project`) to reach its
        plug-ins; default the built-in steps only.

    Returns
    -------
    ndarray of float32 in [0, 1]
        Same shape as ``image``; :func:`as_float01` of it for an empty pipeline.

    Raises
    ------
    PluginError
        For an item without a step name, an unknown step or parameter, a value
        out of range, or a step that returns the wrong shape or dtype. All
        items are checked before any step runs.
    """
    image = _check_layout(image)
    planned = []
    for number, item in enumerate(pipeline, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("step"), str):
            raise PluginError(f"pre-processing item {number} must name its 'step', got {item!r}")
        params = dict(item)
        step = registry.get("preprocess", params.pop("step"))
        planned.append((step, step.resolve(params)))
    if not planned:
        return as_float01(image)
    x = image
    for step, params in planned:
        x = step.func(x, **params)
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.shape != image.shape:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise PluginError(f"preprocess '{step.name}' returned {got}; expected float32 {image.shape}")
    return x
