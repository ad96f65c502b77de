"""The instant learner's classifier: a pixel classifier on multi-scale filter features (the ilastik approach).

Pure numpy functions, no file I/O (the session keeps what it needs). The pipeline::

    stack = features(image)                                    # (H, W, F) float32
    rows, cols, y = sample_training_pixels(mask, 10_000, rng)  # balanced object/background
    model = train([stack[rows, cols]], [y])                    # a fitted RandomForestClassifier
    probability = predict(model, next_image)                   # (H, W) float32 in [0, 1]

``mask`` is a saved label (``(H, W)`` bool) or, in the "teach" mode, a pair of
scribbles ``(object_strokes, background_strokes)``; several labelled images are
several rows of ``features_list``/``labels_list``. The session only needs to keep
the sampled rows of each label (``10_000 x 24`` float32 is under 1 MB), never the
full feature stacks.

Defaults, chosen once and not tuned to a data set
-------------------------------------------------
* features: ``skimage.feature.multiscale_basic_features`` with its own default
  scales (sigma 0.5 to 16, one per octave: 6 scales) and all three groups
  (smoothed intensity, Sobel edges, Hessian eigenvalues as texture), 24 features
  per pixel, on the models' grey input (:func:`labelassist.intensity.percentile_rescale_per_channel`
  of the grey image: each image's own 0.5/99.5 percentile window, so exposure
  differences between images do not move the features);
* 10 000 balanced pixels per labelled image and at most 10 000 in one
  training (the newest labels share them): training time grows linearly with
  the pixels (about 0.2 ms a pixel on one core of the 2-core machine), and the
  forest costs about 3 us a pixel of the predicted image, so this cap keeps a
  save -> learned pre-label of the next image near 2.5 s up to 512 x 512 and
  near 5 s at 1024 x 1024 on one thread (``docs/learning.md``);
* 60 trees (the issue's anchor), ``max_depth`` 10 (at most 1 024 leaves a
  tree: bounds the model's size and the prediction time; depth 16 instead
  gained 0.003-0.007 DSC on each of the three data sets for 20-30 % more
  prediction time), ``max_features='sqrt'`` (scikit-learn's default);
* one thread (``n_jobs=1``): the learner runs beside the UI on a 2-core tablet.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from skimage.feature import multiscale_basic_features

from labelassist.intensity import fill_non_finite, percentile_rescale_per_channel, to_grey_float32

__all__ = [
    "DEFAULT_SIGMAS",
    "DEFAULT_PIXELS_PER_IMAGE",
    "DEFAULT_MAX_TRAINING_PIXELS",
    "features",
    "sample_training_pixels",
    "train",
    "predict",
    "propose_from_scribbles",
    "MAX_WORKING_PIXELS",
    "working_shape",
    "working_image",
    "shrink_mask",
    "grow_probability",
]

#: Gaussian scales of :func:`features`: scikit-image's default range (0.5 to 16 pixels, one per octave).
DEFAULT_SIGMAS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
#: Training pixels sampled per labelled image.
DEFAULT_PIXELS_PER_IMAGE = 10_000
#: At most this many training pixels in one :func:`train` (a random subset beyond it).
DEFAULT_MAX_TRAINING_PIXELS = 10_000
#: Larger images are learned from and predicted at a smaller scale, this many pixels: the features
#: of a 1024 x 1024 image take 100 MB and its forest pass 3 s on one thread; those of a
#: 4096 x 3072 image would take 1.2 GB and 40 s.
MAX_WORKING_PIXELS = 1 << 20
#: Pixels classified at a time by :func:`predict` (bounds the temporary memory).
_PREDICT_CHUNK = 1 << 18


def _grey01(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    grey = to_grey_float32(image)
    try:
        grey = fill_non_finite(grey)
    except ValueError:  # not one finite pixel: a blank image
        grey = np.zeros(grey.shape, np.float32)
    return percentile_rescale_per_channel(np.ascontiguousarray(grey, dtype=np.float32))


def features(image: np.ndarray, sigmas: Sequence[float] = DEFAULT_SIGMAS) -> np.ndarray:
    """Multi-scale intensity, edge and texture features of every pixel.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` grey or ``(H, W, 3|4)`` RGB(A), any real dtype. It is
        turned into grey float32 in [0, 1] through the image's own 0.5/99.5
        percentile window (the shipped models' input).
    sigmas : sequence of float, optional
        Gaussian scales in pixels, see :data:`DEFAULT_SIGMAS`.

    Returns
    -------
    ndarray of float32, shape (H, W, 4 * len(sigmas))
        For each sigma, in order: the smoothed intensity, the Sobel edge
        magnitude and the two Hessian eigenvalues
        (``skimage.feature.multiscale_basic_features`` at that single scale).

    Notes
    -----
    About 0.3 s for a 512 x 512 image and 1 s for 1024 x 1024 on one core
    (``bench/bench_learner.py``).
    """
    sigmas = [float(s) for s in sigmas]
    if not sigmas or min(sigmas) <= 0:
        raise ValueError(f"sigmas must be positive, got {sigmas!r}")
    if np.ndim(image) < 2 or min(np.shape(image)[:2]) < 3:
        raise ValueError(f"an image of {np.shape(image)[:2]} pixels is too small to learn from")
    grey = _grey01(image)
    parts = [multiscale_basic_features(grey, sigma_min=s, sigma_max=s, num_sigma=1, workers=1) for s in sigmas]
    return np.concatenate(parts, axis=-1).astype(np.float32, copy=False)


def _pick(where: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if where.size <= n:
        return where
    return np.sort(rng.choice(where, size=n, replace=False))


def sample_training_pixels(mask_or_scribbles, n: int = DEFAULT_PIXELS_PER_IMAGE,
                           rng: np.random.Generator | int | None = None, *, one_class: bool = False
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced object/background training pixels of one labelled image.

    Parameters
    ----------
    mask_or_scribbles : ndarray of bool, shape (H, W), or (ndarray, ndarray)
        A saved label (True = object, every pixel is labelled), or the
        "teach" mode's two scribbles ``(object_strokes, background_strokes)``,
        boolean ``(H, W)`` each (only painted pixels are labelled; a pixel
        painted as both is left out).
    n : int, optional
        At most this many pixels in all: half object, half background; when
        one class has fewer pixels than its half, all of them are taken and
        the other class fills up to ``n``.
    rng : numpy Generator, int or None
        The random source (or its seed).
    one_class : bool, optional
        Accept a label with one class only (an image with no object is a
        label too: all background); its pixels then all come from that class.
        The training that uses them needs the other class from other labels.

    Returns
    -------
    rows, cols : ndarray of intp
        Pixel positions, for ``stack[rows, cols]``.
    labels : ndarray of bool
        True for object.

    Raises
    ------
    ValueError
        Shapes disagree, ``n < 2``, or one class has no pixel at all (a
        classifier needs both) and ``one_class`` is False, or nothing is labelled.
    """
    rng = np.random.default_rng(rng)
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    if isinstance(mask_or_scribbles, (tuple, list)):
        obj, bg = (np.asarray(m, dtype=bool) for m in mask_or_scribbles)
        if obj.shape != bg.shape or obj.ndim != 2:
            raise ValueError(f"scribbles must be two (H, W) masks of one shape, got {obj.shape} and {bg.shape}")
        both = obj & bg
        obj, bg = obj & ~both, bg & ~both
    else:
        obj = np.asarray(mask_or_scribbles, dtype=bool)
        if obj.ndim != 2:
            raise ValueError(f"a label must be an (H, W) mask, got shape {obj.shape}")
        bg = ~obj
    width = obj.shape[1]
    pos, neg = np.flatnonzero(obj), np.flatnonzero(bg)
    if (pos.size == 0 or neg.size == 0) and not (one_class and pos.size + neg.size):
        raise ValueError("both object and background need at least one labelled pixel")
    half = n // 2
    n_pos = min(pos.size, max(half, n - neg.size))
    n_neg = min(neg.size, n - n_pos)
    flat = np.concatenate([_pick(pos, n_pos, rng), _pick(neg, n_neg, rng)])
    labels = np.zeros(flat.size, dtype=bool)
    labels[:n_pos] = True
    return flat // width, flat % width, labels


def train(features_list: Sequence[np.ndarray], labels_list: Sequence[np.ndarray], *,
          max_pixels: int | None = DEFAULT_MAX_TRAINING_PIXELS, n_estimators: int = 60,
          max_depth: int | None = 10, n_jobs: int = 1, seed: int = 0) -> RandomForestClassifier:
    """Fit a random forest on sampled pixels of one or more labelled images.

    Parameters
    ----------
    features_list : sequence of ndarray, shape (N_i, F)
        Feature rows of the sampled pixels of each image (``stack[rows, cols]``
        from :func:`features` and :func:`sample_training_pixels`); one F for all.
    labels_list : sequence of ndarray of bool, shape (N_i,)
        True for object.
    max_pixels : int or None, optional
        Train on a random subset of this many rows when there are more (None:
        all); training time grows linearly with it.
    n_estimators, max_depth, n_jobs : int, optional
        Passed to :class:`sklearn.ensemble.RandomForestClassifier`.
    seed : int, optional
        ``random_state`` and the subset's seed: the same inputs give the same forest.

    Returns
    -------
    RandomForestClassifier
        Fitted; classes ``[False, True]``.

    Raises
    ------
    ValueError
        Nothing to train on, mismatched lengths, or only one class.
    """
    if len(features_list) == 0 or len(features_list) != len(labels_list):
        raise ValueError("need one label array per feature array, and at least one")
    x = np.concatenate([np.asarray(f, dtype=np.float32) for f in features_list], axis=0)
    y = np.concatenate([np.asarray(v, dtype=bool).ravel() for v in labels_list])
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ValueError(f"features must be (N, F) rows matching the labels, got {x.shape} and {y.shape}")
    if y.all() or not y.any():
        raise ValueError("the training pixels hold only one class: label some object and some background")
    if max_pixels is not None and y.size > max_pixels:
        # A subset per class: a rare class keeps all its rows up to half the cap, so a subset can
        # never lose a class (a forest of one class would answer nothing).
        rng = np.random.default_rng(seed)
        pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
        n_pos = min(pos.size, max(int(max_pixels) // 2, int(max_pixels) - neg.size))
        n_neg = min(neg.size, int(max_pixels) - n_pos)
        keep = np.sort(np.concatenate([_pick(pos, n_pos, rng), _pick(neg, n_neg, rng)]))
        x, y = x[keep], y[keep]
    model = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, n_jobs=n_jobs,
                                   random_state=seed)
    model.fit(x, y)
    return model


def predict(model: RandomForestClassifier, image: np.ndarray | None,
            sigmas: Sequence[float] = DEFAULT_SIGMAS, *, stack: np.ndarray | None = None) -> np.ndarray:
    """The learned object probability of every pixel of ``image``.

    Parameters
    ----------
    model : RandomForestClassifier
        From :func:`train`, on features made with the same ``sigmas``.
    image : ndarray or None
        As :func:`features` accepts; may be None when ``stack`` is given.
    sigmas : sequence of float, optional
        The scales the model was trained with.
    stack : ndarray, shape (H, W, F), optional
        ``features(image, sigmas)`` when the caller already has it (the
        "teach" mode computes it once, for the strokes and for the proposal).

    Returns
    -------
    ndarray of float32, shape (H, W)
        In [0, 1]; ``> 0.5`` is the learned pre-label.

    Raises
    ------
    ValueError
        The model was trained on a different number of features.
    """
    if stack is None:
        stack = features(image, sigmas)
    h, w, f = stack.shape
    if getattr(model, "n_features_in_", f) != f:
        raise ValueError(f"the model expects {model.n_features_in_} features, these sigmas give {f}")
    rows = stack.reshape(-1, f)
    classes = list(model.classes_)
    if True not in classes or False not in classes:  # fitted on one class only: it knows one answer
        return np.full((h, w), 1.0 if True in classes else 0.0, np.float32)
    out = np.empty(rows.shape[0], np.float32)
    column = classes.index(True)
    for start in range(0, rows.shape[0], _PREDICT_CHUNK):
        out[start:start + _PREDICT_CHUNK] = model.predict_proba(rows[start:start + _PREDICT_CHUNK])[:, column]
    return out.reshape(h, w)


def propose_from_scribbles(stack: np.ndarray, object_strokes: np.ndarray, background_strokes: np.ndarray,
                           *, n_estimators: int = 60, max_depth: int | None = 10, n_jobs: int = 1,
                           seed: int = 0) -> np.ndarray:
    """The object probability of a whole image learned from a few strokes painted on it (teach mode).

    Parameters
    ----------
    stack : ndarray, shape (H, W, F)
        :func:`features` of the image (computed once per image: the costly part).
    object_strokes, background_strokes : ndarray of bool, shape (H, W)
        The painted pixels of each class; a pixel painted as both is left out.
    n_estimators, max_depth, n_jobs, seed
        As :func:`train`.

    Returns
    -------
    ndarray of float32, shape (H, W)
        In [0, 1]; ``> 0.5`` is the proposal.

    Raises
    ------
    ValueError
        One class has no stroke, or the strokes do not match the stack's size.
    """
    if tuple(np.shape(object_strokes)) != stack.shape[:2]:
        raise ValueError(f"the strokes are {np.shape(object_strokes)} but the image is {stack.shape[:2]}")
    rows, cols, labels = sample_training_pixels((object_strokes, background_strokes),
                                                DEFAULT_MAX_TRAINING_PIXELS, seed)
    model = train([stack[rows, cols]], [labels], n_estimators=n_estimators, max_depth=max_depth,
                  n_jobs=n_jobs, seed=seed)
    return predict(model, None, stack=stack)


def working_shape(shape: tuple[int, ...], max_pixels: int = MAX_WORKING_PIXELS) -> tuple[int, int]:
    """(H, W) an image of ``shape`` is learned and predicted at: itself up to ``max_pixels``, else
    scaled down to about that many pixels, keeping its aspect ratio."""
    h, w = int(shape[0]), int(shape[1])
    if h * w <= max_pixels:
        return h, w
    scale = (max_pixels / float(h * w)) ** 0.5
    # Rounded down; a side clamped to one pixel leaves the other the whole budget (a line scan).
    small_h, small_w = max(1, int(h * scale)), max(1, int(w * scale))
    small_w = max(1, min(small_w, max_pixels // small_h))
    return min(small_h, max_pixels // small_w), small_w


def working_image(image: np.ndarray, max_pixels: int = MAX_WORKING_PIXELS) -> np.ndarray:
    """The image as :func:`features` should see it: grey float32 in [0, 1], at :func:`working_shape`."""
    grey = _grey01(image)
    h, w = working_shape(grey.shape, max_pixels)
    if (h, w) == grey.shape:
        return grey
    return cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA)


def shrink_mask(mask: np.ndarray, shape: tuple[int, int], *, any_pixel: bool = False) -> np.ndarray:
    """A boolean mask at ``shape`` (H, W): a pixel is True where most of its area was (a label),
    or where any of it was with ``any_pixel`` (thin strokes must not vanish)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(shape):
        return mask
    area = cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return area > 0 if any_pixel else area >= 0.5


def grow_probability(probability: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A probability map at the image's own ``shape`` (H, W), linearly interpolated."""
    if probability.shape == tuple(shape):
        return probability
    return cv2.resize(probability, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
