"""What a plug-in file's step returns, checked against its kind's contract.

A wrong result would otherwise fail later, far from the plug-in, as a Python error with no
name attached ("unexpected error: ValueError: masks differ in size"); :func:`check_result`
turns it into one :class:`~labelassist.errors.PluginError` naming the step and its file.

==============  ==============================================================================
kind            a plug-in step of this kind returns
==============  ==============================================================================
``preprocess``  a float32 image of the input's shape, finite
``prelabel``    a ``Prelabel`` whose mask is bool (integers read as non-zero = foreground) of
                the image's height and width, with a probability in [0, 1] or None
``postprocess`` ``(mask, Change)``, the mask bool and of the input's shape
``inspect``     a ``Check`` whose score lies in [0, 1]
``selector``    one finite score per candidate of the pool
==============  ==============================================================================
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from labelassist.errors import PluginError
from labelassist.workflow.results import Change, Check, Prelabel


def _describe_value(value: Any) -> str:
    """What a step returned, in a few words (never its pixels)."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return "None" if value is None else f"a {type(value).__name__}"


def _checked_array(value: Any, shape: tuple, what: str, describe: str, kinds: str = "b") -> Any:
    """``value`` as an array of ``shape`` whose dtype kind is in ``kinds``, else PluginError."""
    if not isinstance(value, np.ndarray) or value.shape != tuple(shape) or value.dtype.kind not in kinds:
        raise PluginError(f"{describe} returned {_describe_value(value)} as its {what}; "
                          f"expected {'a bool' if kinds == 'b' else 'a numeric'} array of shape {tuple(shape)}")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise PluginError(f"{describe} returned NaN or infinite values in its {what}")
    return value


def check_result(kind: str, args: tuple, value: Any, describe: str) -> Any:
    """``value``, what a plug-in step of ``kind`` returned for ``args``, checked (module docstring).

    A pre-label mask of integers is accepted as non-zero = foreground (a common way to write a
    mask) and returned converted; any other dtype is refused.

    Parameters
    ----------
    kind : str
        The step's kind.
    args : tuple
        The positional arguments the step was called with (their shapes set the expected ones).
    value : Any
        What the step returned.
    describe : str
        How messages name the step ("the plug-in step 'x' (plugins/x.py)").

    Returns
    -------
    Any
        ``value``, or a copy of a Prelabel whose integer mask was made bool.

    Raises
    ------
    PluginError
        The result does not fit: wrong type, shape or dtype, NaN, or a score outside [0, 1].
    """
    if kind == "preprocess":
        image = np.asarray(args[0])
        out = _checked_array(value, image.shape, "image", describe, kinds="f")
        if out.dtype != np.float32:
            raise PluginError(f"{describe} returned {_describe_value(value)}; expected float32 {image.shape}")
        return out
    if kind == "prelabel":
        shape = np.asarray(args[0]).shape[:2]
        if not isinstance(value, Prelabel):
            raise PluginError(f"{describe} returned {_describe_value(value)}; a pre-label step returns a Prelabel "
                              f"(mask of shape {shape}, probability or None, method)")
        mask = value.mask
        if isinstance(mask, np.ndarray) and mask.dtype.kind in "iu" and mask.shape == shape:
            mask = mask != 0
        mask = _checked_array(mask, shape, "mask", describe)
        probability = value.probability
        if probability is not None:
            probability = _checked_array(probability, shape, "probability", describe, kinds="f")
            if probability.size and not (probability.min() >= 0.0 and probability.max() <= 1.0):
                raise PluginError(f"{describe} returned a probability outside [0, 1]")
        if mask is value.mask:
            return value
        return dataclasses.replace(value, mask=mask)
    if kind == "postprocess":
        shape = np.asarray(args[0]).shape
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Change)):
            raise PluginError(f"{describe} returned {_describe_value(value)}; a post-processing step returns "
                              "(mask, Change)")
        _checked_array(value[0], shape, "mask", describe)
        return value
    if kind == "inspect":
        if not isinstance(value, Check):
            raise PluginError(f"{describe} returned {_describe_value(value)}; an inspection step returns a Check")
        score = value.score
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise PluginError(f"{describe} returned a score of {score!r}; a Check's score lies between 0 and 1")
        return value
    if kind == "selector":
        n = len(args[0])
        try:
            scores = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise PluginError(f"{describe} returned {_describe_value(value)}; a selector strategy returns "
                              f"{n} scores between 0 and 1") from None
        if scores.shape != (n,) or not np.isfinite(scores).all():
            raise PluginError(f"{describe} returned {_describe_value(scores)}; a selector strategy returns "
                              f"{n} finite scores between 0 and 1")
        return value
    return value
