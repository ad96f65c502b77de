"""Intensity and dtype conversion: the one home for turning pixels into other pixels.

Modelled on ``skimage.util.dtype`` and ``skimage.exposure``: small pure
functions, numpy in and numpy out, the caller's array never modified. No file
I/O and no knowledge of the workflow: callers check the layouts they accept
and raise their own errors.

Windows and rescaling

* :func:`percentile_window` -- the ``low``/``high`` percentile window of an
  image (histogram percentiles for 8/16-bit data, sub-sampled for speed);
* :func:`rescale_to_window` -- float32 in [0, 1] from a given window;
* :func:`percentile_rescale` -- the two together (all channels share one window).

The kiosk's two conversions

* :func:`to_display` -- ``uint8`` for the screen, through the percentile window;
* :func:`as_float01` / :func:`to_uint8` -- float32 in [0, 1] for the
  pre-processing steps, and back to 8 bits.

Grey

* :func:`to_grey` -- one channel in the image's own dtype (OpenCV's BT.601
  luma), what the pre-label steps segment; :func:`fill_non_finite` makes its
  float pixels finite;
* :func:`to_grey_float32` and :func:`percentile_rescale_per_channel` -- the
  model input the shipped networks were trained on. They equal
  ``labelassist.training.core.to_grey`` / ``percentile_normalise``, a
  deliberate copy there: the training job runs without this package (a test
  compares them).

The two percentile conversions differ on purpose and must stay bit-identical
to what they were: :func:`percentile_rescale` uses the display's sub-sampled
histogram percentiles and maps NaN to 0 and +inf to 1;
:func:`percentile_rescale_per_channel` uses ``np.percentile`` per channel (as
the training code does) and maps every non-finite pixel, and a flat image, to 0.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "DEFAULT_WINDOW",
    "as_float01",
    "fill_non_finite",
    "percentile_rescale",
    "percentile_rescale_per_channel",
    "percentile_window",
    "rescale_to_window",
    "to_display",
    "to_grey",
    "to_grey_float32",
    "to_uint8",
]

DEFAULT_WINDOW = (0.5, 99.5)
"""Percentiles mapped to black and white (0 and 1) unless a caller says otherwise."""

_MAX_SAMPLES = 1 << 20  # about a megapixel: the percentiles of a 2048x2048 frame barely move


# -- windows ----------------------------------------------------------------------------------------


def _subsample(image: np.ndarray, max_samples: int) -> np.ndarray:
    """A strided view with at most about ``max_samples`` values (no copy)."""
    n = image.size  # channels count too: they share one window
    step = max(1, int(np.ceil(np.sqrt(n / max(1, max_samples)))))
    return image[::step, ::step]


def _hist_percentiles(values: np.ndarray, qs: tuple[float, float]) -> list[float]:
    """np.percentile (linear method) of 8/16-bit data through a histogram: O(n), no sort."""
    cum = np.cumsum(np.bincount(values.ravel(), minlength=256))
    n = int(cum[-1])
    out = []
    for q in qs:
        pos = q / 100.0 * (n - 1)
        k = int(np.floor(pos))
        v0 = int(np.searchsorted(cum, k, side="right"))
        v1 = int(np.searchsorted(cum, min(k + 1, n - 1), side="right"))
        out.append(v0 + (pos - k) * (v1 - v0))
    return out


def percentile_window(
    image: np.ndarray, low: float = DEFAULT_WINDOW[0], high: float = DEFAULT_WINDOW[1],
    max_samples: int = _MAX_SAMPLES,
) -> tuple[float, float]:
    """Intensity window from percentiles, for mapping an image to 8 bits or to [0, 1].

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(H, W, C)``, any real dtype; all channels share one window.
    low, high : float, optional
        Percentiles (0..100) mapped to black and white.
    max_samples : int, optional
        Pixels are taken on a regular grid of about this many (times the
        channels) for speed; the percentiles of a 2048x2048 image barely move.

    Returns
    -------
    lo, hi : float
        Window in image units, ``hi > lo`` always. Non-finite values are
        ignored. When the percentiles coincide, the finite minimum and maximum
        are used; for a constant image the window is the dtype's full range for
        integers (0 shows black) and ``[min(v, 0), max(v, 1)]`` for floats, so
        a constant image shows black or white rather than failing.
    """
    image = np.asarray(image)
    if image.dtype == np.bool_:
        image = image.view(np.uint8)
    sample = _subsample(image, max_samples)
    if sample.size == 0:
        return 0.0, 1.0
    if sample.dtype in (np.uint8, np.uint16):
        lo, hi = _hist_percentiles(sample, (low, high))
        vmin, vmax = float(sample.min()), float(sample.max())
    else:
        sample = sample.astype(np.float32, copy=False)
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            return 0.0, 1.0
        lo, hi = (float(v) for v in np.percentile(sample, (low, high)))
        vmin, vmax = float(sample.min()), float(sample.max())
    if hi > lo:
        return float(lo), float(hi)
    if vmax > vmin:
        return vmin, vmax
    if image.dtype.kind in "iu":
        info = np.iinfo(image.dtype)
        return float(min(info.min, vmin)), float(max(info.max, vmin + 1))
    return min(vmin, 0.0), max(vmin, 1.0)


def rescale_to_window(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``lo`` to 0 and ``hi`` to 1, linear in between, clipped outside.

    Parameters
    ----------
    image : ndarray
        Any shape, any real dtype.
    lo, hi : float
        The window, ``hi > lo``.

    Returns
    -------
    ndarray of float32
        A new array of the same shape. NaN becomes 0, +inf 1, -inf 0.
    """
    out = np.asarray(image).astype(np.float32)  # a copy in every case
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    # fmax/fmin map NaN to the bound instead of propagating it.
    np.fmax(out, 0.0, out=out)
    np.fmin(out, 1.0, out=out)
    return out


def percentile_rescale(image: np.ndarray, low: float = DEFAULT_WINDOW[0],
                       high: float = DEFAULT_WINDOW[1]) -> np.ndarray:
    """Stretch contrast: the ``low`` percentile becomes 0, the ``high`` percentile 1.

    ``rescale_to_window(image, *percentile_window(image, low, high))``; all
    channels share one window, so colours keep their balance.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(H, W, C)``, any real dtype.
    low, high : float, optional
        Percentiles in percent (0..100), ``low < high``.

    Returns
    -------
    ndarray of float32 in [0, 1]
    """
    lo, hi = percentile_window(image, low, high)
    return rescale_to_window(image, lo, hi)


# -- the kiosk's conversions --------------------------------------------------------------------------


def to_display(image: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Map an image to ``uint8`` for the screen: THE display conversion.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(H, W, C)`` of any real dtype.
    window : (float, float), optional
        Values mapped to 0 and 255 (linear in between, clipped outside).
        Default: :func:`percentile_window` of the image.

    Returns
    -------
    ndarray of uint8
        Same shape. ``uint8`` input without an explicit ``window`` is returned
        as it is (no copy). NaN shows as 0, +inf as 255, -inf as 0.

    Notes
    -----
    ``uint16`` goes through ``cv2.addWeighted`` (one pass, saturating), floats
    through in-place float32 arithmetic, so a 2048x2048 ``uint16`` image takes
    a few milliseconds.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8 and window is None:
        return image
    if image.dtype == np.bool_:
        image = image.view(np.uint8)
    lo, hi = percentile_window(image) if window is None else (float(window[0]), float(window[1]))
    if not hi > lo:
        hi = lo + 1.0
    scale = 255.0 / (hi - lo)
    offset = -lo * scale
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype in (np.uint8, np.uint16, np.int16) and channels <= 4:
        # Integers have no NaN/inf, so OpenCV's saturating x*a + x*0 + b is exact and fast.
        return cv2.addWeighted(image, scale, image, 0.0, offset, dtype=cv2.CV_8U)
    out = image.astype(np.float32)  # a copy: never modify the caller's array
    out *= np.float32(scale)
    out += np.float32(offset + 0.5)  # +0.5 so the truncating cast below rounds
    # fmax/fmin ignore NaN in one operand, so NaN becomes 0 here instead of an undefined cast.
    np.fmax(out, 0.0, out=out)
    np.fmin(out, 255.0, out=out)
    return out.astype(np.uint8)


def _from_uint8(image: np.ndarray) -> np.ndarray:
    # A true division, so that k / 255 is the float32 nearest to it and to_uint8 gives k back.
    out = image.astype(np.float32)
    out /= np.float32(255.0)
    return out


def as_float01(image: np.ndarray) -> np.ndarray:
    """Bring any image to float32 in [0, 1], keeping its shape.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(H, W, C)``. ``bool``: 0/1. ``uint8``: divided by 255
        (absolute grey levels are kept). ``uint16`` and other integers: the
        0.5/99.5 percentile window (16-bit cameras rarely fill their range;
        the window is what the display shows too). Floats already within
        [0, 1] are kept as they are (so steps chain without re-stretching);
        other floats get the percentile window. NaN becomes 0.

    Returns
    -------
    ndarray of float32
        A new array; ``image`` is not modified.
    """
    image = np.asarray(image)
    if image.dtype == np.bool_:
        return image.astype(np.float32)
    if image.dtype == np.uint8:
        return _from_uint8(image)
    if image.dtype.kind == "f":
        vmin, vmax = float(image.min()), float(image.max())
        if np.isnan(vmin) or np.isnan(vmax):
            finite = image[np.isfinite(image)]
            vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if 0.0 <= vmin and vmax <= 1.0:
            out = image.astype(np.float32)
            np.nan_to_num(out, copy=False, nan=0.0)
            return out
    return percentile_rescale(image, *DEFAULT_WINDOW)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An 8-bit copy: ``round(255 * as_float01(image))``.

    Parameters
    ----------
    image : ndarray
        Usually a pre-processing result (float32 in [0, 1]); any dtype that
        :func:`as_float01` accepts.

    Returns
    -------
    ndarray of uint8
        A new array (``uint8`` input is copied).
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.copy()
    out = as_float01(image)
    out *= np.float32(255.0)
    out += np.float32(0.5)  # the cast truncates
    return out.astype(np.uint8)


# -- grey -----------------------------------------------------------------------------------------------


def to_grey(image: np.ndarray) -> np.ndarray:
    """One 2-D channel, keeping 8/16-bit precision.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` grey or ``(H, W, 3|4)`` RGB(A), any real dtype.

    Returns
    -------
    ndarray
        ``(H, W)``, C-contiguous. ``uint8``, ``uint16`` and ``float32`` keep
        their dtype, ``bool`` becomes ``uint8`` 0/1, anything else
        ``float32``. RGB becomes luma with ITU-R BT.601 weights through
        ``cv2.cvtColor`` (alpha ignored), rounded in the image's own dtype.
        Non-finite values are kept (see :func:`fill_non_finite`).
    """
    image = np.asarray(image)
    if image.dtype == np.bool_:
        image = image.view(np.uint8)
    elif image.dtype not in (np.uint8, np.uint16, np.float32):
        image = image.astype(np.float32)
    if image.ndim == 3:
        # cvtColor keeps uint8/uint16/float32, so 16-bit precision survives the conversion.
        image = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image)


def fill_non_finite(image: np.ndarray) -> np.ndarray:
    """Replace NaN and -inf by the finite minimum, +inf by the finite maximum.

    So that they do not poison a histogram or a gradient.

    Parameters
    ----------
    image : ndarray
        Any shape and dtype; only floating-point images can hold non-finite values.

    Returns
    -------
    ndarray
        ``image`` itself when every value is finite (or it is not a float
        image), otherwise a new array.

    Raises
    ------
    ValueError
        No value is finite, so there is nothing to fill with.
    """
    image = np.asarray(image)
    if image.dtype.kind != "f":
        return image
    finite = np.isfinite(image)
    if finite.all():
        return image
    if not finite.any():
        raise ValueError("no pixel has a finite value")
    values = image[finite]
    return np.nan_to_num(image, nan=float(values.min()), posinf=float(values.max()), neginf=float(values.min()))


def to_grey_float32(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32, BT.601 luma for colour computed in float32: the models' grey.

    Equal to ``labelassist.training.core.to_grey`` (what the shipped models
    were trained on).

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` grey or ``(H, W, 3|4)`` RGB(A), any real dtype (alpha ignored).

    Returns
    -------
    ndarray of float32
        ``image`` itself when it already is 2-D float32.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[:, :, :3].astype(np.float32)
        image = image[:, :, 0] * 0.299 + image[:, :, 1] * 0.587 + image[:, :, 2] * 0.114
    return image.astype(np.float32, copy=False)


def percentile_rescale_per_channel(x: np.ndarray, low: float = DEFAULT_WINDOW[0],
                                   high: float = DEFAULT_WINDOW[1]) -> np.ndarray:
    """Each channel's own ``low``/``high`` percentiles mapped to 0 and 1: the models' input.

    Equal to ``labelassist.training.core.percentile_normalise`` on one
    channel: ``np.percentile`` (of every pixel up to about a megapixel, then a
    strided sample), non-finite pixels and flat channels become 0.

    Parameters
    ----------
    x : ndarray of float32
        ``(H, W)`` or ``(H, W, C)``.
    low, high : float, optional
        Percentiles in percent (0..100).

    Returns
    -------
    ndarray of float32 in [0, 1]
        Same shape.
    """
    if x.ndim == 3:
        return np.stack([percentile_rescale_per_channel(x[:, :, c], low, high) for c in range(x.shape[2])], axis=2)
    finite = np.isfinite(x)
    if not finite.all():
        x = np.where(finite, x, np.float32(np.nan))
        if not finite.any():
            return np.zeros(x.shape, np.float32)
        lo, hi = np.nanpercentile(x, [low, high])
    else:
        sample = x if x.size <= _MAX_SAMPLES else x.ravel()[:: x.size // _MAX_SAMPLES + 1]
        lo, hi = np.percentile(sample, [low, high])
    if not hi > lo:
        return np.zeros(x.shape, np.float32)
    out = (x - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    out = np.nan_to_num(out, nan=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)
