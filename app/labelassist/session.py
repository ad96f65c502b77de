"""One labelling session: the workflow engine the UI (and the CLI) talks to, and nothing else.

The flow of one sample::

    Session.next()      the selector's choice, with its display image h(x) and its
                        pre-label l(x) ready (prepared in the background for the
                        next few samples, so opening is instant)
    Session.submit()    inspection γ(y) of the corrected mask, and post-processing
                        suggestions to show before/after
    Session.save()      a new label version in the store, with time spent and strokes

No Kivy here: every action a user can take on screen is a method a test can call.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from labelassist.backup import BackupSchedule
from labelassist.errors import ImageReadError, LabelAssistError
from labelassist.project import Project
from labelassist.store import DamagedLabelError, LabelVersion, Sample
from labelassist.workflow import features as feature_mod
from labelassist.workflow import inspect as inspect_mod
from labelassist.workflow import postprocess, preprocess, selector
from labelassist.workflow.evaluate import Evaluation, evaluate_box_prompts, evaluate_prelabels
from labelassist.workflow.prelabel import Prelabel, PrelabelContext
from labelassist.workflow.registry import REGISTRY

log = logging.getLogger(__name__)

# Methods that need no prompt: the ones the session can pre-label with on its own.
AUTOMATIC_PRELABELS = ("otsu", "previous", "onnx")
# Labelled samples an automatic choice of pre-label method is measured on (the newest ones).
EVALUATION_SAMPLES = 12
# Re-measure the pre-label methods after this many new labels.
REEVALUATE_EVERY = 10
# Tap-to-segment: the box-prompt model and GrabCut are compared on objects (spread over sizes) of the
# newest labelled samples; GrabCut takes up to seconds per box, so both are bounded.
BOX_EVALUATION_SAMPLES = 4
BOX_EVALUATION_OBJECTS = 8


@dataclass(frozen=True)
class Assisted:
    """A sample ready to label: what the annotator sees when it opens.

    Attributes
    ----------
    sample : Sample
    image : ndarray
        The raw pixels (uint8, uint16 or float32; grey or RGB).
    display : ndarray of uint8
        The pre-processed image h(x) for the screen, same height and width.
    prelabel : Prelabel or None
        The proposed mask to correct, or None when pre-labelling is off (or
        nothing helps on this project).
    label : LabelVersion or None
        The newest saved label, when the sample was labelled before (the canvas
        starts from it instead of the pre-label).
    prepare_ms : float
        How long preparing took (in the background when it was ready in time).
    """

    sample: Sample
    image: np.ndarray
    display: np.ndarray
    prelabel: Prelabel | None
    label: LabelVersion | None
    prepare_ms: float
    recovered: np.ndarray | None = None
    prediction: np.ndarray | None = None  # the project model's mask, for the disagreement check

    @property
    def start_mask(self) -> np.ndarray:
        """The mask the canvas starts from: unsaved edits recovered from the journal, else the
        saved label, else the pre-label, else empty."""
        if self.recovered is not None:
            return self.recovered.copy()
        if self.label is not None:
            return self.label.mask
        if self.prelabel is not None:
            return self.prelabel.mask.copy()
        return np.zeros(self.image.shape[:2], dtype=bool)


@dataclass(frozen=True)
class Submission:
    """What post-assistance says about a finished mask, before it is saved.

    Attributes
    ----------
    report : Report or None
        Inspection γ(y); None when no check applies to this project yet (no
        priors, no model, no pre-label).
    suggestions : list of Suggestion
        Post-processing results that would change the mask, each with its
        before/after summary; the UI shows them for accept or reject.
    note : str
        Why there is no report, when there is none.
    """

    report: inspect_mod.Report | None
    suggestions: list[postprocess.Suggestion]
    note: str = ""

    @property
    def warning(self) -> bool:
        return self.report is not None and self.report.warning


@dataclass(frozen=True)
class Ranked:
    """One entry of the selector's ranking."""

    sample: Sample
    score: float
    scores: dict[str, float]


@dataclass
class BoxChoice:
    """What a box drawn for tap-to-segment runs (``box_model`` or ``grabcut``), and the evidence."""

    method: str
    reason: str
    evaluation: Any = None  # workflow.evaluate.BoxEvaluation when measured
    labelled_at: int = 0


@dataclass
class PrelabelChoice:
    """Which pre-label the session uses, and the evidence."""

    method: str | None
    reason: str
    evaluation: Evaluation | None = None
    labelled_at: int = 0


def _remeasure_due(measured_at: int, labelled: int) -> bool:
    """Whether a choice measured at ``measured_at`` labels is due again now there are ``labelled``.

    Early labels change the picture most: again after each of the first few, then every
    :data:`REEVALUATE_EVERY`.
    """
    since = labelled - measured_at
    return since != 0 and (measured_at < 3 or since >= REEVALUATE_EVERY)


class _LabelledImages:
    """(sample, image, saved mask, previous frame's mask) of evaluation inputs, read one at a time.

    Sized, so an evaluation streams it (one image in memory at a time) and can report progress;
    an image that cannot be read any more is left out (and logged).
    """

    def __init__(self, project: Project, inputs: list):
        self.project, self.inputs = project, inputs

    def __len__(self) -> int:
        return len(self.inputs)

    def __iter__(self):
        for sample, mask, previous in self.inputs:
            try:
                image = self.project.read_image(sample)
            except ImageReadError as exc:
                log.warning("left out of the evaluation: %s", exc)
                continue
            yield sample, image, mask, previous


def _wait_all(futures: list[Future], timeout: float) -> None:
    for f in futures:
        try:
            f.result(timeout=timeout)
        except Exception:  # noqa: BLE001 - errors surface again when the sample is opened
            pass


class Session:
    """A labelling session on one project.

    Parameters
    ----------
    project : Project
    author : str, optional
        Recorded with every label version and event (default: the system user).
    lookahead : int
        How many of the next samples to prepare in the background.
    background : bool
        Prepare in a worker thread (the kiosk); False prepares on demand (tests, CLI).
    own : bool
        Take the project's lock (only one labelling app may change a project) and
        keep rolling backups. Read-only tools (``labelassist select``...) pass False.
    """

    def __init__(self, project: Project, author: str | None = None, lookahead: int = 3,
                 background: bool = True, own: bool = True):
        if own:
            project.lock("the labelling app")
        self.project = project
        backup = project.settings["backup"]
        self.backups = BackupSchedule(project.store, project.backup_dir, backup["minutes"], int(backup["keep"])) \
            if own else None
        self.store = project.store
        self.author = author
        self.lookahead = lookahead
        self.plugin_errors = REGISTRY.load_plugins(project.plugins_dir)
        for name, reason in self.plugin_errors.items():
            log.warning("plug-in %s was skipped: %s", name, reason)
        self._pool: selector.Pool | None = None
        self._pool_ids: np.ndarray | None = None
        self._cache: dict[int, Assisted] = {}
        self._futures: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="prepare") if background else None
        self._choice: PrelabelChoice | None = None
        self._measuring = -1  # labelled count a background measurement was started for
        self._box_choice: BoxChoice | None = None
        self._side_jobs: list[Future] = []  # background work no sample waits for (box embeddings)
        self._box_measuring = -1
        self._uncertainty: dict[int, float] = {}  # computed on the worker, written with the next save
        self._box_segmenter: Any = False  # False: not looked for yet; None: none installed
        self.current: Assisted | None = None
        self._opened_at = 0.0
        self.missing: list[Sample] = []
        self.unavailable: set[int] = set()  # samples whose image vanished during this session

    def close(self) -> None:
        """Stop the background worker (pending preparations are dropped) and back up if anything changed."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self.backups is not None:
            self.backups.maybe(force=True)
            self.backups = None
        self._flush_uncertainty()
        self.store.flush_events()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def settings(self) -> dict[str, Any]:
        return self.project.settings

    # -- selection --------------------------------------------------------------------------
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

    # -- the project's model ----------------------------------------------------------------
    def model(self):
        """The project's installed pre-label model (``labelassist model import``), or None.

        A model that no longer loads is logged and treated as absent: labelling goes on.
        """
        from labelassist import models

        try:
            return models.project_model(self.project)
        except LabelAssistError as exc:
            log.warning("the project's model is not used: %s", exc)
            return None

    def import_model(self, path, card=None, max_seconds: float = 10.0):
        """Check an ONNX model against its card and install it as the project's pre-label model.

        Returns the check report (time per input, notes); a model that does not fit is refused
        with the reason and nothing changes. The next pre-labels are measured again with it.
        """
        from labelassist import models

        report = models.install_model(self.project, path, card=card, max_seconds=max_seconds)
        self._choice = None  # measure the pre-label methods again, the model included
        self._pool = None  # uncertainties belong to the model that made them
        with self._lock:
            self._cache.clear()
        return report

    def _uncertainty_kind(self, model) -> str:
        return f"uncertainty/{model.card.name}/{model.card.version}"

    def _cached_uncertainty(self, sample_ids: list[int]) -> np.ndarray:
        model = self.model()
        values = np.full(len(sample_ids), np.nan)
        if model is None:
            return values
        cached = self.store.get_features(self._uncertainty_kind(model))
        for k, sid in enumerate(sample_ids):
            if sid in cached:
                values[k] = float(cached[sid][0])
        return values

    def update_uncertainty(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Mean pixel entropy of the model's prediction for every unlabelled sample that has none cached.

        For the ``uncertainty`` selector; without a model there is nothing to do (returns 0).
        """
        from labelassist.workflow.selector import mean_entropy

        model = self.model()
        if model is None:
            return 0
        kind = self._uncertainty_kind(model)
        cached = self.store.get_features(kind)
        labelled = self.store.labelled_ids()
        todo = [s for s in self.store.samples() if s.id not in cached and s.id not in labelled]
        computed = {}
        for done, sample in enumerate(todo, 1):
            try:
                computed[sample.id] = np.array([mean_entropy(model.predict(self.project.read_image(sample)))])
            except LabelAssistError as exc:
                log.warning("no uncertainty for %s: %s", sample.name, exc)
            if progress:
                progress(done, len(todo))
        if computed:
            self.store.put_features(kind, computed)
            self._pool = None
        return len(computed)

    def _flush_uncertainty(self) -> None:
        """Write the uncertainties the worker computed (database writes stay on this thread)."""
        if not self._uncertainty:
            return
        model = self.model()
        with self._lock:
            pending, self._uncertainty = self._uncertainty, {}
        if model is not None:
            self.store.put_features(self._uncertainty_kind(model), {k: np.array([v]) for k, v in pending.items()})
            if self._pool is not None:  # keep the selector's view current without rebuilding it
                for sample_id, value in pending.items():
                    where = np.flatnonzero(self._pool_ids == sample_id)
                    if where.size:
                        self._pool.uncertainty[int(where[0])] = value

    def ranking(self, top: int | None = None) -> list[Ranked]:
        """Unlabelled samples best first, with the combined and per-strategy scores."""
        pool, ids = self.pool()
        weights = self.settings["selector"]["weights"]
        params = self.settings["selector"]["params"]
        order = selector.rank(pool, weights, params)
        if top is not None:
            order = order[:top]
        combined = selector.combined_scores(pool, weights, params)
        per = {
            name: np.asarray(REGISTRY.get("selector", name)(pool, **params.get(name, {})), dtype=float)
            for name, w in weights.items() if w > 0
        }
        return [
            Ranked(self.store.sample(int(ids[i])), float(combined[i]), {k: float(v[i]) for k, v in per.items()})
            for i in order
        ]

    def _next_ids(self, count: int) -> list[int]:
        """The selector's next ``count`` picks, each ranked as if the ones before it were labelled.

        That is the order the annotator meets them in (the sample opened now is labelled before
        the next is asked for), so the samples prepared ahead are the ones opened next: a plain
        top-``count`` would miss whenever a strategy re-ranks after a label (sequence_aware does).
        """
        pool, ids = self.pool()
        if self.unavailable:
            # A file came back (the USB drive is plugged in again): offer it again.
            self.unavailable = {sid for sid in self.unavailable
                                if not self.project.resolve(self.store.sample(sid).path).is_file()}
        weights, params = self.settings["selector"]["weights"], self.settings["selector"]["params"]
        chosen: list[int] = []
        labelled = pool.labelled.copy()
        try:
            for _ in range(count):
                pick = next((int(i) for i in selector.rank(pool, weights, params)
                             if int(ids[i]) not in self.unavailable), None)
                if pick is None:
                    break
                chosen.append(int(ids[pick]))
                pool.labelled[pick] = True  # as if labelled, for the picks after it
        finally:
            pool.labelled[:] = labelled
        return chosen

    def next(self) -> Assisted | None:
        """Open the selector's choice, prepared; None when every sample is labelled.

        A sample whose image has gone (a removed USB drive, a moved folder) is
        skipped and listed in :attr:`unavailable` until its file is back; when
        every remaining image is gone, the error says so.
        """
        while True:
            upcoming = self._next_ids(1 + self.lookahead)
            if not upcoming:
                if self.unavailable:
                    raise ImageReadError(
                        f"the {len(self.unavailable)} images still to label cannot be found: reconnect the drive "
                        "they are on, or run 'labelassist relink'")
                return None
            try:
                assisted = self.open(upcoming[0])
            except ImageReadError as exc:
                if self.project.resolve(self.store.sample(upcoming[0]).path).is_file():
                    raise  # the file is there but unreadable: say so, do not skip silently
                log.warning("skipped for now: %s", exc)
                self.unavailable.add(upcoming[0])
                continue
            self._prepare_ahead(upcoming[1:])
            return assisted

    def open(self, sample_id: int) -> Assisted:
        """Open one sample (the selector's choice or one the user tapped in the queue)."""
        with self._lock:
            assisted = self._cache.pop(sample_id, None)
            future = self._futures.pop(sample_id, None)
        if assisted is None and future is not None:
            try:
                assisted = future.result()
            except LabelAssistError:
                assisted = None  # prepare again below, so the error reaches the caller
        if assisted is None:
            assisted = self.prepare(sample_id)
        recovered = self.recover(sample_id)
        if recovered is not None:
            assisted = replace(assisted, recovered=recovered)
        self.current = assisted
        self._opened_at = time.monotonic()
        # Not worth an fsync of its own: written with the next save.
        self.store.defer_event("open", actor=self.author, sample_id=sample_id,
                               assistance=assisted.prelabel.method if assisted.prelabel else None)
        return assisted

    def _prepare_ahead(self, sample_ids: list[int]) -> None:
        if self._executor is None:
            return
        with self._lock:
            wanted = set(sample_ids)
            for stale in [k for k in self._cache if k not in wanted]:
                del self._cache[stale]
            for sample_id in sample_ids:
                if sample_id in self._cache or sample_id in self._futures:
                    continue
                inputs = self._prepare_inputs(sample_id)  # store reads stay on this thread
                future = self._executor.submit(self._prepare_from, *inputs)
                self._futures[sample_id] = future
                future.add_done_callback(lambda f, sid=sample_id: self._store_prepared(sid, f))

    def _store_prepared(self, sample_id: int, future: Future) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        with self._lock:
            if self._futures.pop(sample_id, None) is future:
                self._cache[sample_id] = future.result()

    def prepared(self, sample_id: int) -> bool:
        """True when the sample's assistance is ready in the cache."""
        with self._lock:
            return sample_id in self._cache

    def wait_prepared(self, timeout: float = 30.0) -> None:
        """Block until the background worker has finished what it was given (tests, benchmarks)."""
        with self._lock:
            prepares = list(self._futures.values())
        _wait_all(prepares, timeout)
        _wait_all(list(self._side_jobs), timeout)  # complete now: a prepare queues its side jobs before it ends

    def prepare(self, sample_id: int) -> Assisted:
        """Prepare one sample now, on this thread."""
        return self._prepare_from(*self._prepare_inputs(sample_id))

    def _prepare_inputs(self, sample_id: int):
        sample = self.store.sample(sample_id)
        label = self.store.latest_label(sample_id)
        method = self.prelabel_choice(wait=self._executor is None).method
        previous = self.previous_mask(sample)
        return sample, label, method, previous

    def _prepare_from(self, sample: Sample, label: LabelVersion | None, method: str | None,
                      previous: np.ndarray | None) -> Assisted:
        # Runs on the worker thread: pixels and numpy only, no database access. A
        # re-measurement of the pre-labels queued before this job has finished by now.
        start = time.perf_counter()
        if self._choice is not None and self.settings["prelabel"]["method"] == "auto":
            method = self._choice.method
        image = self.project.read_image(sample)
        display = self.display_image(image)
        model = self.model()
        prelabel = prediction = None
        if method is not None and label is None:
            try:
                prelabel = self._run_prelabel(method, image, PrelabelContext(previous_mask=previous, model=model))
            except LabelAssistError as exc:
                log.info("no pre-label for %s: %s", sample.name, exc)
        if model is not None:
            try:
                if prelabel is not None and prelabel.method == "onnx":
                    probability = prelabel.probability
                else:
                    probability = model.predict(image)
                prediction = probability > model.threshold
                from labelassist.workflow.selector import mean_entropy

                with self._lock:
                    self._uncertainty[sample.id] = mean_entropy(probability)
            except LabelAssistError as exc:
                log.info("no model prediction for %s: %s", sample.name, exc)
        segmenter = self.box_segmenter()
        if segmenter is not None and self._executor is not None and self._boxes_use_model():
            # A box drawn later gives a mask in milliseconds. A job of its own, queued behind this
            # one: the encoder takes most of a second on a tablet, and the sample must not wait.
            self._side_jobs = [f for f in self._side_jobs if not f.done()]
            self._side_jobs.append(self._executor.submit(segmenter.embed_cached, sample.id, image))
        return Assisted(sample, image, display, prelabel, label, (time.perf_counter() - start) * 1000,
                        prediction=prediction)

    # -- pre-assistance ---------------------------------------------------------------------
    def display_image(self, image: np.ndarray) -> np.ndarray:
        """h(x): the project's pre-processing pipeline, as uint8 for the screen."""
        return preprocess.to_uint8(preprocess.run_pipeline(image, self.settings["preprocess"]["pipeline"]))

    def set_pipeline(self, pipeline: list[dict[str, Any]], confirm: bool = False) -> None:
        """Change the pre-processing pipeline.

        Once labelling has begun, a different display gives inconsistent labels,
        so the change needs ``confirm=True``; it is logged either way.
        """
        preprocess.run_pipeline(np.zeros((8, 8), np.uint8), pipeline)  # validates names and parameters
        if self.store.counts()["label_versions"] and not confirm:
            raise LabelAssistError(
                "labels already exist: changing the pre-processing now makes the display differ from "
                "what earlier labels were drawn on; confirm to change it anyway"
            )
        old = self.settings["preprocess"]["pipeline"]
        self.settings["preprocess"]["pipeline"] = pipeline
        self.project.save_settings(actor=self.author)
        self.store.log_event("pipeline", actor=self.author, old=old, new=pipeline, confirmed=confirm)
        with self._lock:
            self._cache.clear()

    def previous_mask(self, sample: Sample) -> np.ndarray | None:
        """The newest label of the frame just before this one in its sequence (None at a start)."""
        row = self.store.conn.execute(
            "SELECT id FROM samples WHERE sequence = ? AND frame = ?", (sample.sequence, sample.frame - 1)
        ).fetchone()
        if row is None:
            return None
        label = self.store.latest_label(row[0])
        if label is None or (label.height, label.width) != (sample.height, sample.width):
            return None
        try:
            return label.mask
        except DamagedLabelError as exc:  # a damaged neighbour is no pre-label, not a failed sample
            log.warning("no previous-frame pre-label for %s: %s", sample.name, exc)
            return None

    def _run_prelabel(self, method: str, image: np.ndarray, context: PrelabelContext) -> Prelabel:
        params = dict(self.settings["prelabel"]["params"].get(method, {}))
        if method == "onnx" and context.model is not None and "threshold" not in params:
            params["threshold"] = context.model.threshold  # the card's threshold, unless the project sets one
        return REGISTRY.get("prelabel", method)(image, context, **params)

    def box_segmenter(self):
        """The box-prompt model for tap-to-segment (LiteMedSAM) when installed, else None."""
        if self._box_segmenter is False:
            from labelassist import models

            try:
                self._box_segmenter = models.find_box_segmenter()
            except LabelAssistError as exc:
                log.warning("the box-prompt model is not used: %s", exc)
                self._box_segmenter = None
        return self._box_segmenter

    def box_choice(self, wait: bool = True) -> BoxChoice:
        """What a drawn box runs: the box-prompt model or GrabCut, and why.

        ``prelabel.box_method = "auto"`` compares the two on the objects of this
        project's newest labels (boxes = the objects' bounding boxes) and takes
        the better; before there are labels the box-prompt model is used (it is
        the better of the two over the bundled evaluation, ``models/README.md``).
        Without a box-prompt model installed it is always GrabCut. With
        ``wait=False`` (the kiosk) a due measurement runs on the worker thread.
        """
        setting = self.settings["prelabel"]["box_method"]
        segmenter = self.box_segmenter()
        if segmenter is None:
            why = "no box-prompt model is installed" if setting != "grabcut" else "chosen in the project settings"
            return BoxChoice("grabcut", why)
        if setting != "auto":
            return BoxChoice(setting, "chosen in the project settings")
        labelled = len(self.store.labelled_ids())
        if labelled == 0:
            return BoxChoice("box_model", "no labels yet to compare the box-prompt model with GrabCut")
        current = self._box_choice
        if current is not None and not _remeasure_due(current.labelled_at, labelled):
            return current
        inputs = self._evaluation_inputs(BOX_EVALUATION_SAMPLES)
        if wait or self._executor is None:
            return self._measure_box_choice(inputs, labelled)
        if self._box_measuring != labelled:
            self._box_measuring = labelled
            self._executor.submit(self._measure_box_choice, inputs, labelled)
        return current or BoxChoice("box_model", "measuring the box-prompt model against GrabCut")

    def _boxes_use_model(self) -> bool:
        """Whether boxes run the box-prompt model as far as known now (no measurement started)."""
        setting = self.settings["prelabel"]["box_method"]
        if setting != "auto":
            return setting == "box_model"
        return self._box_choice is None or self._box_choice.method == "box_model"

    def evaluate_box_prompts(self, limit: int | None = BOX_EVALUATION_SAMPLES,
                             progress: Callable[[int, int], None] | None = None):
        """Box-prompt model (when installed) and GrabCut on the objects of the newest labels.

        Returns a :class:`~labelassist.workflow.evaluate.BoxEvaluation`.
        """
        inputs = self._evaluation_inputs(limit)
        if not inputs:
            raise LabelAssistError("the project has no labels yet to measure tap-to-segment against")
        return self._evaluate_boxes(inputs, progress)

    def _evaluate_boxes(self, inputs, progress=None):
        segmenter = self.box_segmenter()

        def grabcut(image, boxes):  # with the project's grabcut parameters, as a drawn box runs it
            return [self._run_prelabel("grabcut", image, PrelabelContext(box=b)).mask for b in boxes]

        segmenters = {"grabcut": grabcut}
        if segmenter is not None:
            def box_model(image, boxes):
                embedding = segmenter.embed(image)
                return [segmenter.segment(embedding, b) for b in boxes]

            segmenters = {"box_model": box_model, **segmenters}

        class Samples(_LabelledImages):
            def __iter__(self):
                return ((sample.name, image, mask) for sample, image, mask, _ in super().__iter__())

        return evaluate_box_prompts(Samples(self.project, inputs), segmenters,
                                    boxes_per_image=BOX_EVALUATION_OBJECTS, progress=progress)

    def _measure_box_choice(self, inputs, labelled: int) -> BoxChoice:
        # May run on the worker thread: reads images, no database writes (the event is deferred).
        evaluation = self._evaluate_boxes(inputs)
        best = evaluation.best()
        if best is None:
            choice = BoxChoice("box_model", "the labels so far have no objects to draw boxes around",
                               evaluation, labelled)
        else:
            other = [m for m in evaluation.methods if m != best][0]
            choice = BoxChoice(best, f"{best}: DSC {evaluation.mean_dice(best):.2f} against {other} "
                                     f"{evaluation.mean_dice(other):.2f} on {evaluation.objects(best)} objects "
                                     f"of {len(inputs)} labelled samples", evaluation, labelled)
        self._box_choice = choice
        self.store.defer_event("box_choice", actor=self.author, method=choice.method, reason=choice.reason)
        return choice

    def segment_box(self, sample_id: int, box: tuple[float, float, float, float]) -> Prelabel:
        """Tap-to-segment with a drawn box: the box-prompt model or GrabCut, as :meth:`box_choice` says."""
        segmenter = self.box_segmenter()
        if segmenter is None or self.box_choice(wait=self._executor is None).method == "grabcut":
            return self.prelabel(sample_id, "grabcut", box=box)
        sample = self.store.sample(sample_id)
        image = self.current.image if self.current is not None and self.current.sample.id == sample_id \
            else self.project.read_image(sample)
        embedding = segmenter.embed_cached(sample_id, image)
        mask = segmenter.segment(embedding, box)
        self.store.defer_event("prelabel", actor=self.author, sample_id=sample_id, assistance="prelabel:box_model")
        return Prelabel(mask=mask, probability=None, method="box_model")

    def prelabel(self, sample_id: int, method: str, **prompt: Any) -> Prelabel:
        """Run one pre-label method on a sample, e.g. a tap (``points=[(x, y)]``) or a ``box``.

        Interactive methods run on the raw pixels; the prompt is in image pixels.
        """
        sample = self.store.sample(sample_id)
        if self.current is not None and self.current.sample.id == sample_id:
            image = self.current.image
        else:
            image = self.project.read_image(sample)
        context = PrelabelContext(previous_mask=self.previous_mask(sample), model=self.model(), **prompt)
        result = self._run_prelabel(method, image, context)
        self.store.log_event("prelabel", actor=self.author, sample_id=sample_id, assistance=f"prelabel:{method}")
        return result

    def prelabel_method(self) -> str | None:
        """The pre-label the session uses: the project's choice, or the best measured one.

        ``prelabel.method = "auto"`` measures the automatic methods on the newest
        labelled samples and takes the best; when even the best mean DSC is below
        ``prelabel.min_dsc`` pre-labelling is switched off (a bad pre-label slows
        the annotator down). ``"none"`` switches it off by hand.
        """
        return self.prelabel_choice().method

    def prelabel_choice(self, wait: bool = True) -> PrelabelChoice:
        """The pre-label method in use and why (see :meth:`prelabel_method`).

        With ``wait=False`` (the kiosk) a due re-measurement runs on the worker
        thread and the current choice is returned meanwhile, so saving and
        opening never wait for it.
        """
        setting = self.settings["prelabel"]["method"]
        if setting == "none":
            return PrelabelChoice(None, "pre-labelling is switched off in the project settings")
        if setting != "auto":
            REGISTRY.get("prelabel", setting)  # an unknown name is an error, not a silent 'off'
            return PrelabelChoice(setting, "chosen in the project settings")
        labelled = len(self.store.labelled_ids())
        if labelled == 0:
            return PrelabelChoice("otsu", "no labels yet to measure the methods on", labelled_at=0)
        if self._choice is not None and not _remeasure_due(self._choice.labelled_at, labelled):
            return self._choice
        inputs = self._evaluation_inputs(EVALUATION_SAMPLES)
        if wait or self._executor is None:
            self._choice = self._measure_choice(inputs, labelled)
            return self._choice
        if self._measuring != labelled:
            self._measuring = labelled
            self._executor.submit(self._measure_choice, inputs, labelled)
        return self._choice or PrelabelChoice("otsu", "measuring the pre-label methods", labelled_at=0)

    def _measure_choice(self, inputs: list, labelled: int) -> PrelabelChoice:
        # May run on the worker thread: reads images, no database access (the event is deferred).
        evaluation = self._evaluate(inputs, self._automatic_methods())
        min_dsc = float(self.settings["prelabel"]["min_dsc"])
        best = evaluation.best(min_dsc)
        top = evaluation.ranking()[0]
        if best is None:
            reason = (f"off: the best method ({top.method}) reaches a DSC of {top.dice_mean:.2f} on "
                      f"{top.n} labelled samples, below {min_dsc:.2f}")
        else:
            reason = f"{best}: DSC {top.dice_mean:.2f} on {top.n} labelled samples (best of {len(evaluation.summaries)})"
        self._choice = PrelabelChoice(best, reason, evaluation, labelled)
        self.store.defer_event("prelabel_choice", actor=self.author, method=best, reason=reason)
        return self._choice

    def _automatic_methods(self) -> list[str]:
        has_model = self.model() is not None
        return [m for m in AUTOMATIC_PRELABELS if m in REGISTRY.names("prelabel") and (m != "onnx" or has_model)]

    def _evaluation_inputs(self, limit: int | None = None) -> list[tuple[Sample, np.ndarray, np.ndarray | None]]:
        """(sample, saved mask, previous frame's mask) of the newest labelled samples; database reads only."""
        pairs = sorted(self.store.latest_labels(), key=lambda p: -p[1].id)
        if limit is not None:
            pairs = pairs[:limit]
        return [(sample, label.mask, self.previous_mask(sample)) for sample, label in pairs]

    def _evaluate(self, inputs, methods, progress=None) -> Evaluation:
        class Samples(_LabelledImages):
            def __iter__(self):
                return ((sample.name, image, mask, previous) for sample, image, mask, previous in super().__iter__())

        params = {m: dict(p) for m, p in self.settings["prelabel"]["params"].items() if m in methods}
        model = self.model() if "onnx" in methods else None
        if model is not None:
            params.setdefault("onnx", {}).setdefault("threshold", model.threshold)
        return evaluate_prelabels(Samples(self.project, inputs), methods, params=params, progress=progress,
                                  model=model)

    def evaluate_prelabels(self, methods: list[str] | None = None, limit: int | None = None,
                           progress: Callable[[int, int], None] | None = None) -> Evaluation:
        """DSC of pre-label methods against the labels already in the project (newest first)."""
        inputs = self._evaluation_inputs(limit)
        if not inputs:
            raise LabelAssistError("the project has no labels yet to measure pre-labels against")
        return self._evaluate(inputs, methods or self._automatic_methods(), progress)

    # -- post-assistance --------------------------------------------------------------------
    def inspection_metrics(self) -> dict[str, dict[str, Any]]:
        """``{metric: {"weight": w, **params}}`` from the project settings."""
        inspection = self.settings["inspection"]
        return {name: {"weight": w, **inspection["params"].get(name, {})}
                for name, w in inspection["weights"].items()}

    def inspect(self, mask: np.ndarray, prelabel: np.ndarray | None = None,
                prediction: np.ndarray | None = None) -> inspect_mod.Report | None:
        """γ(y) of a mask against the project's priors; None when no check applies."""
        context = inspect_mod.InspectionContext(priors=self.settings["priors"], prelabel=prelabel,
                                                prediction=prediction)
        try:
            return inspect_mod.inspect_label(mask, context, self.inspection_metrics(),
                                             float(self.settings["inspection"]["gamma0"]))
        except inspect_mod.NothingToInspect:
            return None

    def submit(self, sample_id: int, mask: np.ndarray, prelabel: np.ndarray | None = None) -> Submission:
        """Inspect a finished mask and list post-processing suggestions; nothing is saved yet."""
        sample = self.store.sample(sample_id)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (sample.height, sample.width):
            raise LabelAssistError(f"the mask is {mask.shape[1]}x{mask.shape[0]} but {sample.name} is "
                                   f"{sample.width}x{sample.height}")
        if prelabel is None and self.current is not None and self.current.sample.id == sample_id \
                and self.current.prelabel is not None and not self.current.prelabel.is_placeholder:
            prelabel = self.current.prelabel.mask
        prediction = self.current.prediction if self.current is not None and self.current.sample.id == sample_id \
            else None
        report = self.inspect(mask, prelabel=prelabel, prediction=prediction)
        suggestions = postprocess.suggest(mask, self.settings["postprocess"]["suggest"])
        note = "" if report is not None else "no check applies yet: set the expected segments or holes"
        return Submission(report, suggestions, note)

    def save(self, sample_id: int, mask: np.ndarray, *, seconds: float | None = None, strokes: int = 0,
             source: str = "manual", assistance: str | None = None, note: str | None = None,
             report: inspect_mod.Report | None = None) -> int:
        """Append a label version; ``seconds`` defaults to the time since the sample was opened.

        ``report`` is the inspection the annotator saw (from :meth:`submit`): its γ is
        kept with the version, and saving despite its warning is recorded as such.
        """
        if seconds is None:
            opened = self.current is not None and self.current.sample.id == sample_id
            seconds = time.monotonic() - self._opened_at if opened else 0.0
        latest = self.store.latest_label(sample_id)
        if assistance is None and self.current is not None and self.current.sample.id == sample_id \
                and self.current.prelabel is not None:
            assistance = f"prelabel:{self.current.prelabel.method}"
        warned = report is not None and report.warning
        label_id = self.store.save_label(sample_id, mask, source=source, author=self.author,
                                         parent_id=latest.id if latest else None, seconds=seconds,
                                         strokes=strokes, note=note, assistance=assistance,
                                         score=None if report is None else report.score, warned=warned)
        if warned:
            self.store.log_event("save_anyway", actor=self.author, sample_id=sample_id, label_id=label_id,
                                 score=round(report.score, 4), failed=[c.message for c in report.failed])
        if self.current is not None and self.current.sample.id == sample_id:
            # Edits after this save start from the new version (the journal's base).
            self.current = replace(self.current, label=self.store.label(label_id), recovered=None)
        self._flush_uncertainty()
        if self.backups is not None:
            self.backups.changed()
            self.backups.maybe()
        if self._pool is not None:
            where = np.flatnonzero(self._pool_ids == sample_id)
            if where.size:
                self._pool.mark_labelled(int(where[0]))
        with self._lock:
            self._cache.pop(sample_id, None)
        return label_id

    # -- nothing is lost: the stroke journal and the screen state ----------------------------
    def record_edit(self, sample_id: int, kind: str, indices: np.ndarray, values: np.ndarray) -> None:
        """Journal one finished edit of the open mask (a stroke, a fill, an undo...), durably.

        ``indices`` are flat pixel indices (row-major) and ``values`` their new
        values. Replaying every edit of a sample in order over the label version
        the edit started from gives the mask on screen; the UI calls this when a
        stroke ends, before the next one starts. Starting from a pre-label is
        itself an edit (kind ``prelabel``).
        """
        base = self.current.label.id if (self.current is not None and self.current.sample.id == sample_id
                                         and self.current.label is not None) else None
        self.store.journal_append(sample_id, kind, indices, values, base_label_id=base)

    def recover(self, sample_id: int) -> np.ndarray | None:
        """The unsaved mask of a sample rebuilt from the journal, or None when it has no edits."""
        entries = self.store.journal(sample_id)
        if not entries:
            return None
        sample = self.store.sample(sample_id)
        base_id = entries[0][1]
        base = self.store.label(base_id).mask if base_id is not None else np.zeros(
            (sample.height, sample.width), dtype=bool)
        flat = base.ravel()
        for _kind, _base, indices, values in entries:
            flat[indices] = values
        return flat.reshape(sample.height, sample.width)

    def unsaved_samples(self) -> list[int]:
        """Samples with journalled edits that were never saved (after a crash)."""
        return self.store.journal_samples()

    def discard_edits(self, sample_id: int) -> None:
        """Drop the unsaved edits of a sample (the user chose to start over); logged."""
        self.store.journal_clear(sample_id)
        self.store.log_event("discard_edits", actor=self.author, sample_id=sample_id)

    def remember(self, **state: Any) -> None:
        """Keep where the user is (sample, zoom, pan, tool...) for the next start."""
        current = self.store.get_state("screen", {})
        current.update(state)
        self.store.set_state("screen", current)

    def resume_state(self) -> dict[str, Any]:
        """What :meth:`remember` kept, e.g. ``{"sample_id": 12, "zoom": 2.0, ...}``."""
        return self.store.get_state("screen", {})

    def sample_states(self) -> dict[int, str]:
        """sample id -> ``unlabelled``, ``labelled``, ``warning`` (saved despite a warning),
        ``relevant`` or ``not_now`` (cherry-pick flags of unlabelled samples); for queue badges."""
        labels = self.store.label_states()
        flags = self.store.flags()
        states = {}
        for row in self.store.conn.execute("SELECT id FROM samples"):
            sid = row[0]
            if sid in labels:
                states[sid] = "warning" if labels[sid] else "labelled"
            elif sid in flags:
                states[sid] = "relevant" if flags[sid] else "not_now"
            else:
                states[sid] = "unlabelled"
        return states

    def update_settings(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to a copy of the settings, validate, write ``project.toml`` and log it.

        Invalid settings raise ProjectError and leave the current ones as they were.
        The pre-processing pipeline is changed with :meth:`set_pipeline` instead.
        """
        new = copy.deepcopy(self.settings)
        change(new)
        if new["preprocess"] != self.settings["preprocess"]:
            raise LabelAssistError("change the pre-processing with set_pipeline (it needs a confirmation)")
        self.project.save_settings(new, actor=self.author)  # validates first, then writes
        self._pool = None  # weights or seed may have changed
        self._choice = None  # the pre-label method or its threshold may have changed

    def set_flag(self, sample_id: int, relevant: bool | None) -> None:
        """Cherry-pick: relevant (True), not now (False), or no flag (None)."""
        self.store.set_flag(sample_id, relevant, author=self.author)
        self._pool = None  # flags are part of the pool


__all__ = ["Assisted", "Submission", "Ranked", "PrelabelChoice", "Session"]
