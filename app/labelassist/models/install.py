"""A model's way into a project: what an import checks, the card proposed, the installed model.

:func:`check_model` is everything an import checks (ONNX Runtime loads it, the card fits
the graph, a probe run gives finite probabilities, fast enough here); :func:`install_model`
makes a checked model the project's pre-label model (through the model history,
:mod:`labelassist.models.history`), :func:`project_model` loads the current one.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from labelassist.models import history
from labelassist.models.card import CARD_FORMAT, ModelCard, ModelError
from labelassist.models.runtime import Model, _check_file, _dim, _session, load_model

__all__ = ["MAX_SECONDS", "CheckReport", "suggest_card", "check_model", "installed_model_path",
           "install_model", "project_model"]

log = logging.getLogger(__name__)

MAX_SECONDS = 10.0
"""Default import limit: seconds for one 512x512 network input on this machine.
Slower models are refused (the measured time is in the message)."""


def _probe_shape(card: ModelCard) -> tuple[int, int]:
    if card.size is not None:
        return card.size
    side = max(card.multiple, 512 // card.multiple * card.multiple)
    return side, side


# --------------------------------------------------------------------------- import checks


@dataclass
class CheckReport:
    """What :func:`check_model` measured."""

    card: ModelCard
    seconds: float            # one run at the probe size (after a warm-up run)
    probe_shape: tuple[int, int]
    threads: int
    notes: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        dsc = self.card.held_out_dsc
        return (f"{self.card.name} {self.card.version}: {self.seconds * 1000:.0f} ms per "
                f"{self.probe_shape[1]}x{self.probe_shape[0]} input on {self.threads} thread(s)"
                + (f"; DSC {dsc:.3f} on images it was not trained on" if dsc is not None else "")
                + ("; " + "; ".join(self.notes) if self.notes else ""))


def suggest_card(onnx_path: str | os.PathLike, **overrides: Any) -> dict[str, Any]:
    """A card proposed from the model's graph, for the user to confirm (never applied silently).

    Reads the input's layout, channels and size; guesses ``probability`` output
    for one channel and ``softmax`` for several; percentile normalisation,
    threshold 0.5. ``overrides`` replace top-level keys.
    """
    path = Path(onnx_path)
    _check_file(path)
    session = _session(path, 1)
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ModelError(f"{path.name} takes {[list(i.shape) for i in inputs]}; a pre-label model takes one "
                         "4-dimensional image input, so no card can be proposed")
    shape = list(inputs[0].shape)
    layout = "NHWC" if _dim(shape[3]) in (1, 3) and _dim(shape[1]) not in (1, 3) else "NCHW"
    c_axis, h_axis, w_axis = (1, 2, 3) if layout == "NCHW" else (3, 1, 2)
    h, w = _dim(shape[h_axis]), _dim(shape[w_axis])
    oshape = list(session.get_outputs()[0].shape)
    oc = _dim(oshape[1] if layout == "NCHW" else oshape[-1]) if len(oshape) == 4 else 1
    card = {
        "format": CARD_FORMAT, "name": path.stem, "version": "unknown", "task": "binary_segmentation",
        "input": {"layout": layout, "channels": _dim(shape[c_axis]) or 1,
                  "size": [h, w] if h and w else "dynamic", "multiple": 16 if not (h and w) else 1},
        "output": {"kind": "softmax" if (oc or 1) > 1 else "probability", "channels": oc or 1},
        "normalisation": {"kind": "percentile", "low": 0.5, "high": 99.5},
        "scale": 1.0, "threshold": 0.5,
        "tiling": {"tile": h if h and w else 512, "overlap": min(64, (min(h, w) // 4) if h and w else 64)},
        "training_data": "unknown (card confirmed by the user at import)", "metrics": {}, "licence": "unknown",
    }
    if (oc or 1) > 1:
        card["output"]["foreground_channel"] = 1
    card.update(overrides)
    return card


def check_model(onnx_path: str | os.PathLike, card: ModelCard | dict | str | os.PathLike | None = None,
                max_seconds: float = MAX_SECONDS, threads: int | None = None) -> CheckReport:
    """Everything an import checks, with one clear :class:`ModelError` for the first thing that fails.

    1. the file is an ONNX model ONNX Runtime can load;
    2. it has a valid card (beside it, or the one given, e.g. confirmed by the user);
    3. its input and output fit the card (count, rank, channels, size, layout);
    4. a probe run on a real-looking input gives a map of the input's size with
       finite values (no NaN) in [0, 1] after the card's output kind;
    5. the probe takes at most ``max_seconds`` (its measured time is reported either way).
    """
    path = Path(onnx_path)
    model = Model(path, card=card, threads=threads, check=True)
    h, w = _probe_shape(model.card)
    rng = np.random.default_rng(0)
    # A smooth random texture: closer to an image than white noise, same for every import.
    small = rng.random((max(2, h // 16), max(2, w // 16)), dtype=np.float32)
    probe = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    probe = np.clip(probe, 0, 1)
    if model.card.channels == 3:
        probe = np.repeat(probe[:, :, None], 3, axis=2)
    start = time.perf_counter()
    model.predict_normalised(probe)  # warm-up (and the NaN/shape checks)
    first = time.perf_counter() - start
    if first > 3 * max_seconds:
        seconds = first
    else:
        start = time.perf_counter()
        prob = model.predict_normalised(probe)
        seconds = time.perf_counter() - start
        if not np.isfinite(prob).all():
            raise ModelError(f"{path.name} returned NaN values on a test image")
    report = CheckReport(model.card, seconds, (h, w), model.threads)
    if seconds > max_seconds:
        raise ModelError(f"{path.name} is far too slow here: {seconds:.1f} s for one {w}x{h} input on "
                         f"{model.threads} thread(s) (the limit is {max_seconds:g} s); use a smaller model")
    if model.card.held_out_dsc is None:
        report.notes.append("its card reports no DSC on held-out images")
    return report


# --------------------------------------------------------------------------- a project's model


def installed_model_path(project) -> Path:
    """The ONNX file of a project's current model (its card beside it), as ``models/current.json`` names it.

    Without ``current.json`` (a project installed before the model history): the legacy
    ``PROJECT/models/prelabel.onnx``. When no model is current the path does not exist, so
    :func:`project_model` gives None. A damaged ``current.json`` raises :class:`ModelError` naming it.
    """
    return history.current_model_path(project)


def install_model(project, onnx_path: str | os.PathLike, card: ModelCard | dict | str | os.PathLike | None = None,
                  *, max_seconds: float = MAX_SECONDS, threads: int | None = None) -> CheckReport:
    """Validate a model (see :func:`check_model`) and make it the project's pre-label model.

    ``card``: None reads the ``.json`` beside ``onnx_path`` (refused, with the
    reason, when there is none); a dict or path is a card the user confirmed
    (e.g. an edited :func:`suggest_card`). The model goes into the project's model
    history (:func:`labelassist.models.history.add_model`, source ``"imported"``) and
    becomes current in one atomic switch (:func:`~labelassist.models.history.activate`);
    the models before it stay in the history, to roll back to. Nothing in the project
    changes when a check fails.

    Returns the :class:`CheckReport` (measured time per input, notes). The
    import is logged as a ``model_import`` event in the project's store.
    """
    src = Path(onnx_path)
    report = check_model(src, card=card, max_seconds=max_seconds, threads=threads)
    raw = report.card.to_dict()
    raw["imported"] = {"from": src.name, "seconds_per_input": round(report.seconds, 4),
                       "probe_size": list(report.probe_shape), "threads": report.threads,
                       "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "card_confirmed_by_user": card is not None}
    reason = f"imported from {src.name}"
    entry = history.add_model(project, src, raw, source="imported", reason=reason)
    history.activate(project, entry.id, reason)
    store = getattr(project, "store", None)
    if store is not None:
        try:
            store.log_event("model_import", name=report.card.name, version=report.card.version, source=src.name,
                            seconds=round(report.seconds, 4), held_out_dsc=report.card.held_out_dsc,
                            model_id=entry.id)
        except Exception:  # noqa: BLE001 - the log is a courtesy; the model is installed
            log.exception("the model import could not be logged")
    log.info("installed %s into %s as model %d (%s)", src.name, entry.onnx.parent, entry.id, report.message)
    return report


def project_model(project, threads: int | None = None) -> Model | None:
    """The project's installed model (cached session), or None when none is installed."""
    path = installed_model_path(project)
    if not path.is_file():
        return None
    return load_model(path, threads=threads)
