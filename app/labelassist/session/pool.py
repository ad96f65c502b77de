"""The selector's view of a project: features, model uncertainty, and the ranking of what to label next.

The features and uncertainties are cached in the store; the :class:`~labelassist.workflow.selector.Pool`
built from them is kept in memory between calls and updated in place as labels are saved.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from labelassist.errors import ImageReadError, LabelAssistError
from labelassist.project import Project
from labelassist.session.assistance import load_model
from labelassist.store import Sample
from labelassist.workflow import features as feature_mod
from labelassist.workflow import selector
from labelassist.workflow.registry import ProjectRegistry, Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranked:
    """One entry of the selector's ranking."""

    sample: Sample
    score: float
    scores: dict[str, float]


def uncertainty_kind(model) -> str:
    """The feature kind the uncertainties of ``model`` are cached under."""
    return f"uncertainty/{model.card.name}/{model.card.version}"


class Selection:
    """Features, uncertainties and the selector's pool of one project.

    Parameters
    ----------
    project : Project
    registry : Registry or ProjectRegistry
        Where the selector strategies are looked up: the session's registry, with the project's
        plug-ins.

    Attributes
    ----------
    missing : list of Sample
        Samples whose image could not be read at the last :meth:`update_features`.
    """

    def __init__(self, project: Project, registry: Registry | ProjectRegistry):
        self.project, self.store, self.registry = project, project.store, registry
        self.missing: list[Sample] = []
        self._pool: selector.Pool | None = None
        self._pool_ids: np.ndarray | None = None
        self._uncertainty: dict[int, float] = {}  # computed on the worker, written with the next save
        self._lock = threading.Lock()

    @property
    def settings(self):
        return self.project.settings

    def invalidate(self) -> None:
        """Build the pool again at the next use (features, flags, weights or model changed)."""
        self._pool = None

    def update_features(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Compute and cache the selector features of samples that have none; returns how many.

        Samples whose image cannot be read (moved, unplugged) are left out of the
        pool and listed in :attr:`missing`.
        """
        cached = self.store.get_features(feature_mod.FEATURE_ID)
        todo = [s for s in self.store.samples() if s.id not in cached]
        self.missing = []
        computed: dict[int, np.ndarray] = {}
        for done, sample in enumerate(todo, 1):
            try:
                computed[sample.id] = feature_mod.extract_features(self.project.read_image(sample))
            except ImageReadError as exc:
                log.warning("no features for %s: %s", sample.name, exc)
                self.missing.append(sample)
            if len(computed) >= 256:  # write in batches: one transaction per 256 samples
                self.store.put_features(feature_mod.FEATURE_ID, computed)
                computed = {}
            if progress:
                progress(done, len(todo))
        if computed:
            self.store.put_features(feature_mod.FEATURE_ID, computed)
        if todo:
            self._pool = None
        return len(todo) - len(self.missing)

    def pool(self) -> tuple[selector.Pool, np.ndarray]:
        """The selector's view of the project (kept between calls), and the sample id of each row."""
        if self._pool is None:
            self.update_features()
            cached = self.store.get_features(feature_mod.FEATURE_ID)
            samples = [s for s in self.store.samples() if s.id in cached]
            labelled = self.store.labelled_ids()
            flags = self.store.flags()
            dim = feature_mod.FEATURE_SIZE[0] * feature_mod.FEATURE_SIZE[1]
            feats = np.stack([cached[s.id] for s in samples]) if samples else np.zeros((0, dim), np.float32)
            self._pool = selector.Pool(
                features=feats,
                labelled=np.array([s.id in labelled for s in samples], dtype=bool),
                sequence=np.array([s.sequence for s in samples], dtype=object),
                frame=np.array([s.frame for s in samples], dtype=np.int64),
                flags=np.array([-1 if s.id not in flags else int(flags[s.id]) for s in samples], dtype=np.int8),
                uncertainty=self._cached_uncertainty([s.id for s in samples]),
                seed=int(self.settings["selector"]["seed"]),
            )
            self._pool_ids = np.array([s.id for s in samples], dtype=np.int64)
        return self._pool, self._pool_ids

    def mark_labelled(self, sample_id: int) -> None:
        """A label was saved: update the pool in place (when it is built) instead of rebuilding it."""
        if self._pool is not None:
            where = np.flatnonzero(self._pool_ids == sample_id)
            if where.size:
                self._pool.mark_labelled(int(where[0]))

    # -- the model's uncertainty ------------------------------------------------------------
    def _cached_uncertainty(self, sample_ids: list[int]) -> np.ndarray:
        model = load_model(self.project)
        values = np.full(len(sample_ids), np.nan)
        if model is None:
            return values
        cached = self.store.get_features(uncertainty_kind(model))
        for k, sid in enumerate(sample_ids):
            if sid in cached:
                values[k] = float(cached[sid][0])
        return values

    def update_uncertainty(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Mean pixel entropy of the model's prediction for every unlabelled sample that has none cached.

        For the ``uncertainty`` selector; without a model there is nothing to do (returns 0).
        """
        model = load_model(self.project)
        if model is None:
            return 0
        kind = uncertainty_kind(model)
        cached = self.store.get_features(kind)
        labelled = self.store.labelled_ids()
        todo = [s for s in self.store.samples() if s.id not in cached and s.id not in labelled]
        computed = {}
        for done, sample in enumerate(todo, 1):
            try:
                computed[sample.id] = np.array([selector.mean_entropy(model.predict(self.project.read_image(sample)))])
            except LabelAssistError as exc:
                log.warning("no uncertainty for %s: %s", sample.name, exc)
            if progress:
                progress(done, len(todo))
        if computed:
            self.store.put_features(kind, computed)
            self._pool = None
        return len(computed)

    def note_uncertainty(self, sample_id: int, probability: np.ndarray) -> None:
        """Keep the uncertainty of a prediction made while preparing (any thread); written by :meth:`flush`."""
        value = selector.mean_entropy(probability)
        with self._lock:
            self._uncertainty[sample_id] = value

    def flush(self) -> None:
        """Write the uncertainties the worker computed (database writes stay on this thread)."""
        if not self._uncertainty:
            return
        model = load_model(self.project)
        with self._lock:
            pending, self._uncertainty = self._uncertainty, {}
        if model is not None:
            self.store.put_features(uncertainty_kind(model), {k: np.array([v]) for k, v in pending.items()})
            if self._pool is not None:  # keep the selector's view current without rebuilding it
                for sample_id, value in pending.items():
                    where = np.flatnonzero(self._pool_ids == sample_id)
                    if where.size:
                        self._pool.uncertainty[int(where[0])] = value

    # -- ranking ----------------------------------------------------------------------------
    def ranking(self, top: int | None = None) -> list[Ranked]:
        """Unlabelled samples best first, with the combined and per-strategy scores."""
        pool, ids = self.pool()
        weights = self.settings["selector"]["weights"]
        params = self.settings["selector"]["params"]
        order = selector.rank(pool, weights, params, registry=self.registry)
        if top is not None:
            order = order[:top]
        combined = selector.combined_scores(pool, weights, params, registry=self.registry)
        per = {
            name: np.asarray(self.registry.get("selector", name)(pool, **params.get(name, {})), dtype=float)
            for name, w in weights.items() if w > 0
        }
        return [
            Ranked(self.store.sample(int(ids[i])), float(combined[i]), {k: float(v[i]) for k, v in per.items()})
            for i in order
        ]

    def next_ids(self, count: int, skip: set[int] = frozenset()) -> list[int]:
        """The selector's next ``count`` picks (ids in ``skip`` passed over), each ranked as if the
        ones before it were labelled.

        That is the order the annotator meets them in (the sample opened now is labelled before
        the next is asked for), so the samples prepared ahead are the ones opened next: a plain
        top-``count`` would miss whenever a strategy re-ranks after a label (sequence_aware does).
        """
        pool, ids = self.pool()
        weights, params = self.settings["selector"]["weights"], self.settings["selector"]["params"]
        chosen: list[int] = []
        labelled = pool.labelled.copy()
        try:
            for _ in range(count):
                ranked = selector.rank(pool, weights, params, registry=self.registry)
                pick = next((int(i) for i in ranked if int(ids[i]) not in skip), None)
                if pick is None:
                    break
                chosen.append(int(ids[pick]))
                pool.labelled[pick] = True  # as if labelled, for the picks after it
        finally:
            pool.labelled[:] = labelled
        return chosen
