"""The instant learner: a pixel classifier retrained on every saved label, and its honest record.

:class:`InstantLearner` keeps the sampled training pixels of the newest labels (never whole
feature stacks), retrains the forest of :mod:`~labelassist.learning.pixel_classifier` on them
after each new label, and scores itself on each new label *before* learning from it: the
forest trained on the earlier labels predicts the new image, and the saved label is its truth.
Those held-out scores, and only those, are what ``auto`` compares with the other pre-labels (a
forest scored on its own training labels would always look best). The very first label has no
earlier forest: the learner then trains on the left half of that image and scores the right
half, a spatial hold-out.

Pure numpy and scikit-learn, no files and no threads: the session runs it on its own thread
(:mod:`labelassist.session.learning`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from labelassist.learning import pixel_classifier as pc
from labelassist.workflow.metrics import correction_effort, dice

__all__ = ["LearnedModel", "Score", "InstantLearner", "MAX_LABELS", "image_features", "LabelDoesNotFit"]

#: The newest labels whose pixels the forest trains on (their rows share the pixel cap).
MAX_LABELS = 10


class LabelDoesNotFit(ValueError):
    """A label that cannot be learned from its image (their sizes differ, or the image is too small)."""


@dataclass(frozen=True)
class LearnedModel:
    """A fitted forest and what it learned from; predicts like an ONNX model (``predict``, ``threshold``).

    Attributes
    ----------
    forest : sklearn.ensemble.RandomForestClassifier
    labels : int
        How many labelled samples there were when it was trained (its pixels come from the newest
        :data:`MAX_LABELS` of them).
    round : int
        Which training round of the learner made it (1, 2, ...): newer rounds replace older.
    sigmas : tuple of float
        The feature scales it was trained with.
    threshold : float
        Probability above which a pixel is object.
    """

    forest: Any
    labels: int
    round: int
    sigmas: tuple[float, ...] = pc.DEFAULT_SIGMAS
    threshold: float = 0.5

    def predict(self, image: np.ndarray | None, stack: np.ndarray | None = None) -> np.ndarray:
        """Object probability of every pixel of ``image``, float32 (H, W).

        ``stack``: the image's features at its working scale when known (:func:`image_features`);
        without ``image`` the answer is at that scale.
        """
        if stack is None:
            stack = image_features(image, self.sigmas)
        probability = pc.predict(self.forest, None, self.sigmas, stack=stack)
        return probability if image is None else pc.grow_probability(probability, np.shape(image)[:2])


def image_features(image: np.ndarray, sigmas=pc.DEFAULT_SIGMAS) -> np.ndarray:
    """The features of an image at its working scale (large images scaled down, see
    :data:`~labelassist.learning.pixel_classifier.MAX_WORKING_PIXELS`)."""
    return pc.features(pc.working_image(image), sigmas)


@dataclass(frozen=True)
class Score:
    """The learner measured on a label it had not learned from.

    Attributes
    ----------
    sample : str
        The sample's name.
    dice, effort : float
        DSC and correction effort of the learned pre-label against the saved label.
    labels : int
        How many labels the measured forest had learned from (0: the first label's spatial
        hold-out, trained on the left half of the same image).
    ms : float
        Time of the prediction, milliseconds.
    """

    sample: str
    dice: float
    effort: float
    labels: int
    ms: float

    def to_event(self) -> dict[str, Any]:
        """The details of a ``learned`` event, as the session keeps the record (JSON: an infinite
        effort becomes None)."""
        return {"sample": self.sample, "dice": round(self.dice, 4),
                "effort": round(self.effort, 4) if np.isfinite(self.effort) else None,
                "labels": self.labels, "ms": round(self.ms, 1)}

    @classmethod
    def from_event(cls, details: dict[str, Any]) -> "Score":
        """The score of :meth:`to_event`'s details; KeyError, TypeError or ValueError for others."""
        effort = details["effort"]
        return cls(str(details["sample"]), float(details["dice"]), float("inf") if effort is None else float(effort),
                   int(details["labels"]), float(details.get("ms", 0.0)))


@dataclass
class _Rows:
    x: np.ndarray  # (N, F) float32 feature rows
    y: np.ndarray  # (N,) bool


def _spatial_holdout(stack: np.ndarray, mask: np.ndarray, seed: int, settings: dict) -> tuple[float, float] | None:
    """DSC and effort of a forest trained on the left half of one label, on its right half."""
    width = mask.shape[1]
    half = width // 2
    if half < 8:
        return None
    left, right = mask[:, :half], mask[:, half:]
    if not left.any() or left.all():
        return None  # the left half alone teaches nothing
    rows, cols, y = pc.sample_training_pixels(left, pc.DEFAULT_PIXELS_PER_IMAGE, seed)
    forest = pc.train([stack[:, :half][rows, cols]], [y], **settings)
    probability = pc.predict(forest, None, stack=np.ascontiguousarray(stack[:, half:]))
    return dice(probability > 0.5, right), correction_effort(probability > 0.5, right)


@dataclass
class InstantLearner:
    """Learns from saved labels, one at a time, and keeps its held-out record.

    Parameters
    ----------
    max_labels : int
        Train on the pixels of the newest this many labels.
    max_pixels : int
        At most this many training pixels in one training.
    n_estimators, max_depth, n_jobs, seed
        The forest's settings (:func:`~labelassist.learning.pixel_classifier.train`).

    Attributes
    ----------
    model : LearnedModel or None
        The newest forest; None until a label held both object and background.
    scores : tuple of Score
        Every held-out measurement, oldest first (replaced, never changed in place, so another
        thread may read it while this one learns).
    """

    max_labels: int = MAX_LABELS
    max_pixels: int = pc.DEFAULT_MAX_TRAINING_PIXELS
    n_estimators: int = 60
    max_depth: int | None = 10
    n_jobs: int = 1
    seed: int = 0
    model: LearnedModel | None = None
    scores: tuple[Score, ...] = ()
    learned: int = 0  # labelled samples in all, as far as known
    _rows: "OrderedDict[Any, _Rows]" = field(default_factory=OrderedDict, repr=False)
    _seen: set = field(default_factory=set, repr=False)

    @property
    def _forest_settings(self) -> dict:
        return {"n_estimators": self.n_estimators, "max_depth": self.max_depth, "n_jobs": self.n_jobs,
                "seed": self.seed}

    def learn(self, key: Any, name: str, image: np.ndarray | None, mask: np.ndarray, *,
              stack: np.ndarray | None = None, score: bool = True, retrain: bool = True,
              labelled: int | None = None) -> Score | None:
        """Score the current forest on this label (when it has not learned that sample), then learn
        from it and retrain.

        Parameters
        ----------
        key : hashable
            The sample it belongs to: a newer label of the same sample replaces the older one's pixels.
        name : str
            The sample's name, for the record.
        image : ndarray or None
            The image (None when ``stack`` is given).
        mask : ndarray of bool, shape (H, W)
            The saved label.
        stack : ndarray, optional
            ``features(image)`` when the caller has it.
        score : bool
            Measure before learning (False when re-learning labels measured in an earlier session).
            A sample the current forest learned from (a label saved again) is never scored: the
            record holds held-out scores only.
        retrain : bool
            Retrain now (False to add several labels and retrain once, :meth:`retrain`).
        labelled : int, optional
            How many labelled samples the project has now (what the next model says it learned
            from); default: the samples this learner has seen.

        Returns
        -------
        Score or None
            The held-out measurement, or None when nothing could be measured.
        """
        mask = np.asarray(mask, dtype=bool)
        if stack is None:
            if image is None or np.shape(image)[:2] != mask.shape:
                raise LabelDoesNotFit(f"the label is {mask.shape[1]}x{mask.shape[0]} but the image is "
                                      f"{np.shape(image)[1]}x{np.shape(image)[0]}")
            try:
                stack = image_features(image)
            except ValueError as exc:  # too small to learn from
                raise LabelDoesNotFit(str(exc)) from exc
        if stack.shape[:2] != pc.working_shape(mask.shape):
            raise LabelDoesNotFit(f"the label is {mask.shape[1]}x{mask.shape[0]}, the image's features are "
                                  f"{stack.shape[1]}x{stack.shape[0]}")
        mask = pc.shrink_mask(mask, stack.shape[:2])  # the label at the scale the forest learns at
        held_out = key not in self._rows  # the current forest learned from the kept rows only
        measured = self._score(name, stack, mask, key) if score and held_out else None
        rows, cols, y = pc.sample_training_pixels(mask, pc.DEFAULT_PIXELS_PER_IMAGE,
                                                  hash(key) % (2 ** 32), one_class=True)
        self._rows.pop(key, None)
        self._rows[key] = _Rows(stack[rows, cols].copy(), y)
        while len(self._rows) > self.max_labels:
            self._rows.popitem(last=False)
        self._seen.add(key)
        self.learned = max(len(self._seen), int(labelled or 0))
        if measured is not None:
            self.scores = self.scores + (measured,)
        if retrain:
            self.retrain()
        return measured

    def _score(self, name: str, stack: np.ndarray, mask: np.ndarray, key: Any) -> Score | None:
        start = time.perf_counter()
        if self.model is not None:
            predicted = self.model.predict(None, stack=stack) > self.model.threshold  # at the working scale
            return Score(name, dice(predicted, mask), correction_effort(predicted, mask), self.model.labels,
                         (time.perf_counter() - start) * 1000.0)
        held_out = _spatial_holdout(stack, mask, hash(key) % (2 ** 32), self._forest_settings)
        if held_out is None:
            return None
        return Score(name, held_out[0], held_out[1], 0, (time.perf_counter() - start) * 1000.0)

    def retrain(self) -> LearnedModel | None:
        """Train a new forest on the kept pixels; the model stays as it was while they hold one class."""
        if not self._rows:
            return self.model
        y = np.concatenate([r.y for r in self._rows.values()])
        if y.all() or not y.any():
            return self.model
        forest = pc.train([r.x for r in self._rows.values()], [r.y for r in self._rows.values()],
                          max_pixels=self.max_pixels, **self._forest_settings)
        self.model = LearnedModel(forest, self.learned, (self.model.round + 1) if self.model else 1)
        return self.model

    def recent_scores(self, limit: int) -> Sequence[Score]:
        """The newest ``limit`` held-out scores, oldest first."""
        return self.scores[-limit:] if limit else ()

    def restore_scores(self, scores: Sequence[Score]) -> None:
        """Put back the record of an earlier session (the session keeps it in the event log)."""
        self.scores = tuple(scores) + self.scores
