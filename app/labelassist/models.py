"""ONNX pre-label models: model cards, validation at import, tiled inference.

The kiosk runs segmentation networks with ONNX Runtime on the tablet's CPU; it
never trains and never imports PyTorch or ``onnx`` (only onnxruntime, numpy and
OpenCV). Every model is an ``.onnx`` file with a JSON *model card* beside it
(same stem, ``.json``) that says how to feed it and how to read its output::

    {
      "format": "labelassist-model-card/1",
      "name": "scratch_assay_unet", "version": "1.0.0", "task": "binary_segmentation",
      "input":  {"layout": "NCHW", "channels": 1, "size": "dynamic", "multiple": 16},
      "output": {"kind": "probability", "channels": 1},
      "normalisation": {"kind": "percentile", "low": 0.5, "high": 99.5},
      "scale": 0.5, "threshold": 0.5, "tiling": {"tile": 512, "overlap": 64},
      "training_data": {...}, "metrics": {...}, "licence": "MIT"
    }

* ``input.size`` is ``[H, W]`` for a network with a fixed input, or
  ``"dynamic"`` (then sides are padded to ``input.multiple``);
* ``output.kind`` is ``"logits"`` (a sigmoid is applied), ``"probability"``
  (used as it is) or ``"softmax"`` (class logits over the channel axis, softmax
  applied, ``output.foreground_channel`` is kept, default 1);
* ``normalisation.kind`` is ``"percentile"`` (the image's own ``low``/``high``
  percentiles map to 0 and 1), ``"unit"`` (:func:`labelassist.intensity.as_float01`)
  or ``"meanstd"`` (unit, then ``(x - mean) / std``);
* ``scale`` resizes the image before the network (0.5 = half size); the
  probability map is resized back, so :meth:`Model.predict` always answers in
  the image's own pixel grid.

Images larger than the network's tile are run as overlapping tiles whose
predictions are blended with weights that fall towards each tile's border (the
least reliable part of a fully convolutional prediction).

Main entry points: :class:`Model` (``predict(image) -> probability``),
:func:`load_model` (cached sessions), :func:`check_model` (what an import
checks), :func:`install_model` / :func:`project_model` (a project's model),
:func:`shipped_models` (``models/index.json``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from labelassist import intensity
from labelassist.errors import LabelAssistError

__all__ = [
    "CARD_FORMAT",
    "ModelCard",
    "ModelError",
    "Model",
    "CheckReport",
    "BoxSegmenter",
    "BoxEmbedding",
    "find_box_segmenter",
    "card_path",
    "read_card",
    "suggest_card",
    "check_model",
    "load_model",
    "physical_cores",
    "percentile_normalise",
    "install_model",
    "project_model",
    "installed_model_path",
    "shipped_models",
    "shipped_model",
    "SHIPPED_DIR",
    "MAX_SECONDS",
]

log = logging.getLogger(__name__)

CARD_FORMAT = "labelassist-model-card/1"
OUTPUT_KINDS = ("logits", "probability", "softmax")
LAYOUTS = ("NCHW", "NHWC")
NORMALISATIONS = ("percentile", "unit", "meanstd")
MAX_SECONDS = 10.0
"""Default import limit: seconds for one 512x512 network input on this machine.
Slower models are refused (the measured time is in the message)."""

SHIPPED_DIR = Path(os.environ.get("LABELASSIST_MODELS", Path(__file__).resolve().parents[2] / "models"))
"""Folder of the shipped models (``models/`` of the repository; ``$LABELASSIST_MODELS`` overrides)."""

PROJECT_MODEL_DIR = "models"
PROJECT_MODEL_STEM = "prelabel"


class ModelError(LabelAssistError):
    """A model file or its card cannot be used (not ONNX, no card, does not fit, NaN, too slow)."""


# --------------------------------------------------------------------------- model cards


@dataclass(frozen=True)
class ModelCard:
    """A validated model card; ``raw`` keeps every field of the JSON (metrics, training data...)."""

    name: str
    version: str
    task: str
    layout: str
    channels: int
    size: tuple[int, int] | None  # None = dynamic
    multiple: int
    output_kind: str
    foreground_channel: int
    normalisation: dict[str, Any]
    scale: float
    threshold: float
    tile: int
    overlap: int
    licence: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.raw.get("metrics", {})

    @property
    def training_data(self) -> Any:
        return self.raw.get("training_data", {})

    @property
    def held_out_dsc(self) -> float | None:
        """Mean DSC on images the model was not trained on, when the card reports it.

        ``metrics.held_out`` (the shipped models) or else ``metrics.validation`` (a training job's
        validation split, which the training code never trains on nor selects with).
        """
        for key in ("held_out", "validation"):
            part = self.metrics.get(key)
            value = part.get("dsc_mean") if isinstance(part, dict) else None
            if _number(value):
                return float(value)
        return None

    @classmethod
    def from_dict(cls, raw: Any, where: str = "the model card") -> "ModelCard":
        """Validate a card; every problem found is named in one :class:`ModelError`."""
        if not isinstance(raw, dict):
            raise ModelError(f"{where} must be a JSON object, got {type(raw).__name__}")
        problems: list[str] = []

        def get(path: str, kinds, default=None, required=True):
            node: Any = raw
            for part in path.split("."):
                if not isinstance(node, dict) or part not in node:
                    if required:
                        problems.append(f"'{path}' is missing")
                    return default
                node = node[part]
            kinds_t = kinds if isinstance(kinds, tuple) else (kinds,)
            if not isinstance(node, kinds_t) or (isinstance(node, bool) and bool not in kinds_t):
                problems.append(f"'{path}' must be {_kind_names(kinds)}, got {node!r}")
                return default
            if isinstance(node, float) and not math.isfinite(node):
                # JSON readers take NaN and Infinity; NaN then passes every range check below
                # (threshold NaN: every pre-label empty; scale NaN: a resize error).
                problems.append(f"'{path}' must be a finite number, got {node!r}")
                return default
            return node

        name = get("name", str, "")
        version = str(get("version", (str, int, float), "", required=False) or "")
        task = get("task", str, "binary_segmentation", required=False)
        if task != "binary_segmentation":
            problems.append(f"'task' must be 'binary_segmentation', got {task!r}")
        layout = get("input.layout", str, "NCHW", required=False)
        if layout not in LAYOUTS:
            problems.append(f"'input.layout' must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        channels = get("input.channels", int, 1)
        if channels not in (1, 3):
            problems.append(f"'input.channels' must be 1 (grey) or 3 (RGB), got {channels!r}")
        size_raw = get("input.size", (str, list), "dynamic")
        size = None
        if isinstance(size_raw, str):
            if size_raw != "dynamic":
                problems.append(f"'input.size' must be [height, width] or \"dynamic\", got {size_raw!r}")
        elif isinstance(size_raw, list):
            if len(size_raw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                            for v in size_raw):
                problems.append(f"'input.size' must be [height, width] in pixels or \"dynamic\", got {size_raw!r}")
            else:
                size = (int(size_raw[0]), int(size_raw[1]))
        multiple = get("input.multiple", int, 1, required=False)
        if not isinstance(multiple, int) or multiple < 1:
            problems.append(f"'input.multiple' must be a positive integer, got {multiple!r}")
            multiple = 1
        kind = get("output.kind", str, "probability")
        if kind not in OUTPUT_KINDS:
            problems.append(f"'output.kind' must be one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")
        fg = get("output.foreground_channel", int, 1 if kind == "softmax" else 0, required=False)
        norm = get("normalisation", dict, {"kind": "percentile"}, required=False)
        nkind = norm.get("kind") if isinstance(norm, dict) else None
        if nkind not in NORMALISATIONS:
            problems.append(f"'normalisation.kind' must be one of {', '.join(NORMALISATIONS)}, got {nkind!r}")
        elif nkind == "percentile":
            lo, hi = norm.get("low", 0.5), norm.get("high", 99.5)
            if not (_number(lo) and _number(hi) and 0 <= lo < hi <= 100):
                problems.append(f"'normalisation' percentiles must satisfy 0 <= low < high <= 100, got {lo!r}, {hi!r}")
        elif nkind == "meanstd":
            for key in ("mean", "std"):
                v = norm.get(key)
                vals = v if isinstance(v, list) else [v]
                if not vals or not all(_number(x) for x in vals) or (key == "std" and any(x <= 0 for x in vals)):
                    problems.append(f"'normalisation.{key}' must be a number (or one per channel)"
                                    f"{' above 0' if key == 'std' else ''}, got {v!r}")
        scale = get("scale", (int, float), 1.0, required=False)
        if _number(scale) and not 0.05 <= scale <= 4:
            problems.append(f"'scale' must lie between 0.05 and 4, got {scale!r}")
        threshold = get("threshold", (int, float), 0.5)
        if _number(threshold) and not 0 < threshold < 1:
            problems.append(f"'threshold' must lie strictly between 0 and 1, got {threshold!r}")
        tile = get("tiling.tile", int, size[0] if size else 512, required=False)
        overlap = get("tiling.overlap", int, 64, required=False)
        if size is None and isinstance(tile, int) and (tile < 32 or tile % multiple):
            problems.append(f"'tiling.tile' must be at least 32 and a multiple of {multiple}, got {tile!r}")
        tile_side = min(size) if size else tile
        if isinstance(overlap, int) and isinstance(tile_side, int) and not 0 <= overlap <= tile_side // 2:
            problems.append(f"'tiling.overlap' must lie between 0 and half the tile ({tile_side // 2}), got {overlap!r}")
        licence = get("licence", str, "", required=False)
        if problems:
            raise ModelError(f"{where} does not fit: " + "; ".join(problems))
        return cls(name=name, version=version, task=task, layout=layout, channels=channels, size=size,
                   multiple=multiple, output_kind=kind, foreground_channel=int(fg),
                   normalisation=dict(norm), scale=float(scale), threshold=float(threshold),
                   tile=int(tile), overlap=int(overlap), licence=licence, raw=dict(raw))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.raw))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _kind_names(kinds) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    names = {str: "text", int: "an integer", float: "a number", list: "a list", dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def card_path(onnx_path: str | os.PathLike) -> Path:
    """Where the card of ``onnx_path`` lives: same folder and stem, ``.json``."""
    return Path(onnx_path).with_suffix(".json")


def read_card(path: str | os.PathLike) -> ModelCard:
    """Read and validate a card file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"the model card {path.name} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"the model card {path.name} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise ModelError(f"the model card {path.name} is not a usable card: it is nested too deeply to "
                         "read") from None
    return ModelCard.from_dict(raw, where=f"the model card {path.name}")


def _as_card(card: ModelCard | dict | str | os.PathLike | None, onnx_path: Path) -> ModelCard:
    if isinstance(card, ModelCard):
        return card
    if isinstance(card, dict):
        return ModelCard.from_dict(card)
    if card is not None:
        return read_card(card)
    path = card_path(onnx_path)
    if not path.is_file():
        raise ModelError(
            f"{onnx_path.name} has no model card ({path.name} beside it): without one the kiosk cannot know "
            "how to normalise the image or read the output; confirm a card (labelassist.models.suggest_card "
            "proposes one from the model's inputs and outputs) or add the file"
        )
    return read_card(path)


# --------------------------------------------------------------------------- pixels


def percentile_normalise(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Grey float32 in [0, 1]; the image's own ``low``/``high`` percentiles map to 0 and 1.

    Identical to ``labelassist.training.core.percentile_normalise`` (what the
    shipped models were trained with). Non-finite pixels become 0; a flat
    image becomes all 0.
    """
    return intensity.percentile_rescale_per_channel(intensity.to_grey_float32(image), low, high)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.size == 0 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ModelError(f"a model needs a grey (H, W) or RGB (H, W, 3) image, got shape {image.shape}")
    if image.dtype.kind not in "biuf":
        raise ModelError(f"a model cannot use {image.dtype} pixels")
    if image.dtype == np.bool_:
        image = image.astype(np.uint8)
    return image


def normalise(image: np.ndarray, card: ModelCard) -> np.ndarray:
    """The network's input pixels at image resolution: (H, W) for 1 channel, (H, W, 3) for 3."""
    image = _check_image(image)
    if card.channels == 1:
        x = intensity.to_grey_float32(image)
    else:
        x = image[:, :, :3] if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    kind = card.normalisation.get("kind", "percentile")
    if kind == "percentile":
        low, high = card.normalisation.get("low", 0.5), card.normalisation.get("high", 99.5)
        return intensity.percentile_rescale_per_channel(x.astype(np.float32, copy=False), low, high)
    if x.dtype not in (np.uint8, np.uint16, np.float32):
        x = x.astype(np.float32)
    out = intensity.as_float01(np.ascontiguousarray(x))
    if kind == "meanstd":
        mean = np.asarray(card.normalisation["mean"], np.float32)
        std = np.asarray(card.normalisation["std"], np.float32)
        out = (out - mean) / std
    return out.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- threads


def physical_cores() -> int:
    """Physical CPU cores (not hyper-threads) of this machine; at least 1."""
    try:  # Linux: unique (package, core) pairs
        cores = set()
        base = Path("/sys/devices/system/cpu")
        for cpu in base.glob("cpu[0-9]*"):
            topo = cpu / "topology"
            if (topo / "core_id").is_file():
                cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        if cores:
            usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            return max(1, min(len(cores), usable))
    except OSError:
        pass
    if os.name == "nt":
        try:
            import subprocess

            out = subprocess.run(["wmic", "cpu", "get", "NumberOfCores"], capture_output=True, text=True, timeout=5)
            n = sum(int(t) for t in out.stdout.split() if t.isdigit())
            if n:
                return n
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    return max(1, (os.cpu_count() or 2) // 2)


# --------------------------------------------------------------------------- sessions


def _session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types for bad files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path.name} is not a usable ONNX model (ONNX Runtime could not load it: {reason[:300]})") \
            from exc


def _dim(value) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _io_problems(session: ort.InferenceSession, card: ModelCard) -> list[str]:
    """What does not fit between the graph's inputs/outputs and the card."""
    problems = []
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        problems.append(f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                        "a pre-label model takes exactly one image")
        return problems
    inp = inputs[0]
    if inp.type != "tensor(float)":
        problems.append(f"its input '{inp.name}' is {inp.type}; the kiosk feeds tensor(float)")
    shape = list(inp.shape)
    if len(shape) != 4:
        problems.append(f"its input '{inp.name}' has shape {shape}; expected 4 dimensions ({card.layout})")
        return problems
    c_axis, h_axis, w_axis = (1, 2, 3) if card.layout == "NCHW" else (3, 1, 2)
    c = _dim(shape[c_axis])
    if c is not None and c != card.channels:
        problems.append(f"its input has {c} channel{'s' if c != 1 else ''} ({card.layout} shape {shape}) "
                        f"but the card says {card.channels}")
    h, w = _dim(shape[h_axis]), _dim(shape[w_axis])
    if card.size is None:
        if h is not None or w is not None:
            problems.append(f"its input size is fixed at {shape[h_axis]}x{shape[w_axis]} (height x width) "
                            "but the card says \"dynamic\"")
    else:
        for got, want, what in ((h, card.size[0], "height"), (w, card.size[1], "width")):
            if got is not None and got != want:
                problems.append(f"its input {what} is {got} but the card says {want}")
    if _dim(shape[0]) not in (None, 1):
        problems.append(f"its batch size is fixed at {shape[0]}; the kiosk runs one image at a time (batch 1)")
    if not outputs:
        problems.append("the model has no output")
        return problems
    out = outputs[0]
    oshape = list(out.shape)
    if len(oshape) not in (3, 4):
        problems.append(f"its output '{out.name}' has shape {oshape}; expected (N, C, H, W) or (N, H, W)")
    elif len(oshape) == 4:
        oc = _dim(oshape[1] if card.layout == "NCHW" else oshape[3])
        if oc is not None:
            if card.output_kind == "softmax" and oc < 2:
                problems.append(f"its output has {oc} channel but the card says softmax (2 or more class channels)")
            elif card.foreground_channel >= oc:
                problems.append(f"its output has {oc} channel{'s' if oc != 1 else ''} but the card's "
                                f"foreground channel is {card.foreground_channel}")
    return problems


def _probe_shape(card: ModelCard) -> tuple[int, int]:
    if card.size is not None:
        return card.size
    side = max(card.multiple, 512 // card.multiple * card.multiple)
    return side, side


# --------------------------------------------------------------------------- the model


class Model:
    """An ONNX pre-label model with its card; ``predict(image)`` gives a probability map.

    The ONNX Runtime session is created once (use :func:`load_model` to share
    it between callers) and is safe to call from several threads.

    Parameters
    ----------
    path : path of the ``.onnx`` file
    card : ModelCard, dict, path of a card, or None (the ``.json`` beside the model)
    threads : int, optional
        ONNX Runtime intra-op threads; default :func:`physical_cores`.
    check : bool
        Check the graph's inputs and outputs against the card (default True).
    """

    def __init__(self, path: str | os.PathLike, card: ModelCard | dict | str | os.PathLike | None = None,
                 threads: int | None = None, check: bool = True):
        self.path = Path(path)
        _check_file(self.path)
        self.card = _as_card(card, self.path)
        self.threads = int(threads) if threads else physical_cores()
        self.session = _session(self.path, self.threads)
        if check:
            problems = _io_problems(self.session, self.card)
            if problems:
                raise ModelError(f"{self.path.name} does not fit its card: " + "; ".join(problems))
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.last_seconds = float("nan")

    def __repr__(self) -> str:
        return f"Model({self.path.name!r}, {self.card.name!r} {self.card.version}, threads={self.threads})"

    def __reduce__(self):
        # Pickled (to the plug-in helper process) as its file, card and thread count: the ONNX
        # Runtime session cannot travel, and it is made once per process on arrival.
        return _arrived_model, (str(self.path), self.card.to_dict(), self.threads)

    @property
    def threshold(self) -> float:
        return self.card.threshold

    # -- public ------------------------------------------------------------------------------
    def predict(self, image: np.ndarray) -> np.ndarray:
        """Foreground probability, float32 in [0, 1], shape ``image.shape[:2]``.

        ``image`` is what :func:`labelassist.images.read_image` returns (grey or
        RGB; uint8, uint16 or float32), raw: the card's normalisation is applied
        here. Images larger than the network's tile are tiled.

        Raises
        ------
        ModelError
            The image cannot be used, or the model's output is NaN/infinite or of
            the wrong shape.
        """
        start = time.perf_counter()
        image = _check_image(image)
        height, width = image.shape[:2]
        x = normalise(image, self.card)
        if self.card.scale != 1.0:
            size = (max(1, round(width * self.card.scale)), max(1, round(height * self.card.scale)))
            x = cv2.resize(x, size, interpolation=cv2.INTER_AREA if self.card.scale < 1 else cv2.INTER_LINEAR)
            if x.ndim == 2 and self.card.channels == 3:
                x = x[:, :, None]
        prob = self.predict_normalised(x)
        if prob.shape != (height, width):
            prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
        np.clip(prob, 0.0, 1.0, out=prob)
        self.last_seconds = time.perf_counter() - start
        return prob

    def predict_normalised(self, x: np.ndarray, tile: int | None = None, overlap: int | None = None) -> np.ndarray:
        """Probability map of a network-ready array ((h, w) or (h, w, C) float32, already scaled).

        The whole array goes through the network when it fits one tile
        (dynamic models: up to ``tiling.tile`` on both sides); otherwise
        overlapping tiles are blended.
        """
        x = np.asarray(x, np.float32)
        if x.ndim == 2:
            x = x[:, :, None]
        h, w = x.shape[:2]
        ov = self.card.overlap if overlap is None else int(overlap)
        if self.card.size is not None:
            th, tw = self.card.size
        else:
            t = int(tile or self.card.tile)
            if h <= t and w <= t:
                return self._run_padded(x)
            # As few tiles as the tile size allows, each as small as covering the image with
            # that many tiles and the overlap needs (less wasted work than fixed tiles whose
            # last one is pushed back flush with the border).
            th, tw = (_tile_length(n, t, ov, self.card.multiple) for n in (h, w))
        if self.card.size is not None and (h, w) == (th, tw):
            return self._run(x)
        return self._run_tiled(x, th, tw, ov)

    # -- internals ---------------------------------------------------------------------------
    def _run_padded(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[:2]
        m = self.card.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
        return self._run(x)[:h, :w]

    def _run(self, x: np.ndarray) -> np.ndarray:
        """One network run on an (h, w, C) array; returns (h, w) probability."""
        if self.card.layout == "NCHW":
            feed = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        else:
            feed = np.ascontiguousarray(x[None])
        try:
            out = self.session.run([self.output_name], {self.input_name: feed})[0]
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{self.path.name} failed on a {x.shape[1]}x{x.shape[0]} input: "
                             f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__}"
                             ) from exc
        return self._read_output(np.asarray(out), x.shape[:2])

    def _read_output(self, out: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        card = self.card
        if out.ndim == 4:
            out = out[0] if card.layout == "NCHW" else out[0].transpose(2, 0, 1)
        elif out.ndim == 3:
            out = out[:1]
        else:
            raise ModelError(f"{self.path.name} returned an output of shape {out.shape}; expected (N, C, H, W)")
        if out.shape[1:] != tuple(shape):
            raise ModelError(f"{self.path.name} returned a {out.shape[2]}x{out.shape[1]} map for a "
                             f"{shape[1]}x{shape[0]} input: its output must have the input's size")
        out = out.astype(np.float32, copy=False)
        if not np.isfinite(out).all():
            bad = int((~np.isfinite(out)).sum())
            raise ModelError(f"{self.path.name} returned NaN or infinite values ({bad} of {out.size}); "
                             "the model is broken or does not fit the input's normalisation")
        if card.output_kind == "softmax":
            if out.shape[0] < 2 or card.foreground_channel >= out.shape[0]:
                raise ModelError(f"{self.path.name} returned {out.shape[0]} channels; softmax needs 2 or more "
                                 f"and the foreground channel {card.foreground_channel}")
            e = np.exp(out - out.max(axis=0, keepdims=True))
            return (e[card.foreground_channel] / e.sum(axis=0)).astype(np.float32)
        if card.foreground_channel >= out.shape[0]:
            raise ModelError(f"{self.path.name} returned {out.shape[0]} channel(s); the card's foreground channel "
                             f"is {card.foreground_channel}")
        p = out[card.foreground_channel]
        if card.output_kind == "logits":
            return (1.0 / (1.0 + np.exp(-np.clip(p, -60, 60)))).astype(np.float32)
        lo, hi = float(p.min()), float(p.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ModelError(f"{self.path.name} returned values in [{lo:.3g}, {hi:.3g}] but its card says "
                             "'probability' (0..1); are they logits? set output.kind to 'logits'")
        return p

    def _run_tiled(self, x: np.ndarray, th: int, tw: int, overlap: int) -> np.ndarray:
        h, w = x.shape[:2]
        # Images smaller than a tile are mirrored up to one tile (fixed-size models).
        ph, pw = max(0, th - h), max(0, tw - w)
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
        H, W = x.shape[:2]
        ys, xs = _starts(H, th, overlap), _starts(W, tw, overlap)
        weight = _blend_window(th, tw, overlap)
        acc = np.zeros((H, W), np.float32)
        norm = np.zeros((H, W), np.float32)
        for y0 in ys:
            for x0 in xs:
                p = self._run(x[y0:y0 + th, x0:x0 + tw])
                acc[y0:y0 + th, x0:x0 + tw] += p * weight
                norm[y0:y0 + th, x0:x0 + tw] += weight
        return (acc / norm)[:h, :w]


def _tile_length(length: int, tile: int, overlap: int, multiple: int) -> int:
    """Side of the tiles that cover ``length`` with the fewest tiles of at most ``tile``."""
    if length <= tile:
        return -(-length // multiple) * multiple
    n = math.ceil((length - overlap) / (tile - overlap))
    side = math.ceil((length + (n - 1) * overlap) / n)
    return min(tile, -(-side // multiple) * multiple)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: stride ``tile - overlap``, the last tile flush with the end."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    n = math.ceil((length - tile) / stride) + 1
    starts = [min(i * stride, length - tile) for i in range(n)]
    return sorted(set(starts))


def _blend_window(th: int, tw: int, overlap: int) -> np.ndarray:
    """Weights rising linearly over ``overlap`` pixels from each tile border (never exactly 0)."""

    def ramp(n):
        if overlap <= 0:
            return np.ones(n, np.float32)
        d = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(np.float32)
        return np.clip((d + 0.5) / overlap, 1e-3, 1.0)

    return np.outer(ramp(th), ramp(tw)).astype(np.float32)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelError(f"the model file {path} does not exist")
    if not path.is_file():
        raise ModelError(f"{path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{path.name} is empty (0 bytes): it is not an ONNX model")
    with open(path, "rb") as fh:
        head = fh.read(16)
    for magic, what in ((b"\x89PNG", "a PNG image"), (b"PK\x03\x04", "a zip archive (a PyTorch checkpoint?)"),
                        (b"\xff\xd8\xff", "a JPEG image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
                        (b"\x80\x02", "a Python pickle (a PyTorch checkpoint?)"), (b"{", "a JSON file")):
        if head.startswith(magic):
            raise ModelError(f"{path.name} is {what}, not an ONNX model")


# --------------------------------------------------------------------------- cache


_CACHE: dict[tuple, Model] = {}
_CACHE_LOCK = threading.Lock()


def load_model(path: str | os.PathLike, threads: int | None = None) -> Model:
    """A :class:`Model` for ``path`` with its card beside it, created once and reused.

    The cache key is the file's resolved path, size and modification time (a
    replaced file gets a new session) and the thread count.
    """
    path = Path(path).resolve()
    _check_file(path)
    st = path.stat()
    cst = card_path(path).stat() if card_path(path).exists() else None
    key = (str(path), st.st_size, st.st_mtime_ns, cst.st_mtime_ns if cst else None,
           int(threads) if threads else physical_cores())
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            for old in [k for k in _CACHE if k[0] == key[0]]:
                del _CACHE[old]
            model = _CACHE[key] = Model(path, threads=key[-1])
        return model


_ARRIVED: dict[tuple, Model] = {}
_ARRIVED_LOCK = threading.Lock()


def _arrived_model(path: str, card: dict, threads: int) -> Model:
    """The :class:`Model` a pickle describes, made once per process (see ``Model.__reduce__``)."""
    key = (path, json.dumps(card, sort_keys=True, default=str), threads)
    with _ARRIVED_LOCK:
        if key not in _ARRIVED:
            _ARRIVED[key] = Model(path, card=card, threads=threads)
        return _ARRIVED[key]


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
    """Where a project's installed model lives: ``PROJECT/models/prelabel.onnx`` (card beside it)."""
    return Path(project.folder) / PROJECT_MODEL_DIR / f"{PROJECT_MODEL_STEM}.onnx"


def install_model(project, onnx_path: str | os.PathLike, card: ModelCard | dict | str | os.PathLike | None = None,
                  *, max_seconds: float = MAX_SECONDS, threads: int | None = None) -> CheckReport:
    """Validate a model (see :func:`check_model`) and make it the project's pre-label model.

    ``card``: None reads the ``.json`` beside ``onnx_path`` (refused, with the
    reason, when there is none); a dict or path is a card the user confirmed
    (e.g. an edited :func:`suggest_card`). The previous model is kept as
    ``prelabel.previous.onnx``. Nothing in the project changes when a check fails.

    Returns the :class:`CheckReport` (measured time per input, notes). The
    import is logged as a ``model_import`` event in the project's store.
    """
    src = Path(onnx_path)
    report = check_model(src, card=card, max_seconds=max_seconds, threads=threads)
    dst = installed_model_path(project)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp_model = dst.with_name(f".{PROJECT_MODEL_STEM}.onnx.tmp")
    tmp_card = dst.with_name(f".{PROJECT_MODEL_STEM}.json.tmp")
    raw = report.card.to_dict()
    raw.setdefault("imported", {})
    raw["imported"] = {"from": src.name, "seconds_per_input": round(report.seconds, 4),
                       "probe_size": list(report.probe_shape), "threads": report.threads,
                       "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "card_confirmed_by_user": card is not None}
    try:
        shutil.copyfile(src, tmp_model)
        tmp_card.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        if dst.exists():
            os.replace(dst, dst.with_name(f"{PROJECT_MODEL_STEM}.previous.onnx"))
            if card_path(dst).exists():
                os.replace(card_path(dst), dst.with_name(f"{PROJECT_MODEL_STEM}.previous.json"))
        os.replace(tmp_card, card_path(dst))
        os.replace(tmp_model, dst)
    except OSError as exc:
        tmp_model.unlink(missing_ok=True)
        tmp_card.unlink(missing_ok=True)
        raise ModelError(f"the model could not be installed into {dst.parent}: {exc.strerror or exc}") from exc
    store = getattr(project, "store", None)
    if store is not None:
        try:
            store.log_event("model_import", name=report.card.name, version=report.card.version, source=src.name,
                            seconds=round(report.seconds, 4), held_out_dsc=report.card.held_out_dsc)
        except Exception:  # noqa: BLE001 - the log is a courtesy; the model is installed
            log.exception("the model import could not be logged")
    log.info("installed %s into %s (%s)", src.name, dst, report.message)
    return report


def project_model(project, threads: int | None = None) -> Model | None:
    """The project's installed model (cached session), or None when none is installed."""
    path = installed_model_path(project)
    if not path.is_file():
        return None
    return load_model(path, threads=threads)


# --------------------------------------------------------------------------- shipped models


def shipped_models(folder: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """``models/index.json``: dataset -> {fp32, int8, default, held_out_dsc}; {} when absent."""
    index = Path(folder or SHIPPED_DIR) / "index.json"
    if not index.is_file():
        return {}
    return json.loads(index.read_text(encoding="utf-8")).get("models", {})


def shipped_model(name: str, variant: str | None = None, threads: int | None = None,
                  folder: str | os.PathLike | None = None) -> Model:
    """A shipped model by dataset name (``scratch_assay``, ``usiigaci_phase``); ``variant`` fp32/int8,
    default the index's choice."""
    entries = shipped_models(folder)
    if name not in entries:
        raise ModelError(f"no shipped model '{name}' (shipped: {', '.join(entries) or 'none'})")
    entry = entries[name]
    variant = variant or entry["default"]
    if variant not in ("fp32", "int8"):
        raise ModelError(f"variant must be 'fp32' or 'int8', got {variant!r}")
    return load_model(Path(folder or SHIPPED_DIR) / entry[variant], threads=threads)


# --------------------------------------------------------------------------- box-prompt segmenter


@dataclass(frozen=True)
class BoxEmbedding:
    """The encoder's output for one image, with the image size it was computed for."""

    embedding: np.ndarray  # (1, 256, 64, 64) float32
    shape: tuple[int, int]  # (H, W) of the image
    seconds: float


class BoxSegmenter:
    """Tap-to-segment with a box prompt: LiteMedSAM as two ONNX graphs (see ``models/build_litemedsam.py``).

    ``embed(image)`` runs the image encoder once per image (about 0.7 s on two
    cores; the session should call it for the next samples in the background,
    or use :meth:`embed_cached`); ``segment(embedding, box)`` runs the prompt
    decoder for one box (tens of ms) and returns a mask of the image's size.
    """

    side = 256

    def __init__(self, encoder_path: str | os.PathLike, decoder_path: str | os.PathLike,
                 threads: int | None = None, cache_size: int = 4):
        self.threads = int(threads) if threads else physical_cores()
        paths = [Path(encoder_path), Path(decoder_path)]
        for p in paths:
            _check_file(p)
        self.encoder = _session(paths[0], self.threads)
        self.decoder = _session(paths[1], self.threads)
        enc_in = self.encoder.get_inputs()
        dec_in = {i.name: list(i.shape) for i in self.decoder.get_inputs()}
        problems = []
        if len(enc_in) != 1 or list(enc_in[0].shape) != [1, 3, self.side, self.side]:
            problems.append(f"the encoder takes {[list(i.shape) for i in enc_in]}, expected [1, 3, 256, 256]")
        if set(dec_in) != {"embedding", "box"}:
            problems.append(f"the decoder takes {sorted(dec_in)}, expected 'embedding' and 'box'")
        if problems:
            raise ModelError("the box-prompt segmenter does not fit: " + "; ".join(problems))
        self._cache: dict[Any, BoxEmbedding] = {}
        self._order: list[Any] = []
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def embed(self, image: np.ndarray) -> BoxEmbedding:
        start = time.perf_counter()
        image = _check_image(image)
        x = percentile_normalise(image)
        x = cv2.resize(x, (self.side, self.side), interpolation=cv2.INTER_AREA)
        feed = np.ascontiguousarray(np.repeat(x[None, None], 3, axis=1))
        emb = self.encoder.run(None, {self.encoder.get_inputs()[0].name: feed})[0]
        if not np.isfinite(emb).all():
            raise ModelError("the box-prompt encoder returned NaN values")
        return BoxEmbedding(emb, image.shape[:2], time.perf_counter() - start)

    def embed_cached(self, key: Any, image: np.ndarray) -> BoxEmbedding:
        """:meth:`embed` remembered under ``key`` (e.g. the sample id) for the last ``cache_size`` images."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        result = self.embed(image)
        with self._lock:
            self._cache[key] = result
            self._order.append(key)
            while len(self._order) > self._cache_size:
                self._cache.pop(self._order.pop(0), None)
        return result

    def probability(self, embedding: BoxEmbedding, box: tuple[float, float, float, float]) -> np.ndarray:
        """Foreground probability (H, W) for a box (x0, y0, x1, y1) in image pixels, any corner order."""
        h, w = embedding.shape
        x0, x1 = sorted((float(box[0]), float(box[2])))
        y0, y1 = sorted((float(box[1]), float(box[3])))
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise ModelError("the box is empty: drag a box around the object")
        sx, sy = self.side / w, self.side / h
        b = np.array([[x0 * sx, y0 * sy, x1 * sx, y1 * sy]], np.float32)
        logits = self.decoder.run(None, {"embedding": embedding.embedding, "box": b})[0][0, 0]
        logits = cv2.resize(logits.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)

    def segment(self, embedding: BoxEmbedding, box, threshold: float = 0.5) -> np.ndarray:
        return self.probability(embedding, box) > threshold


def find_box_segmenter(threads: int | None = None, folders=None) -> BoxSegmenter | None:
    """The LiteMedSAM export if one is present (``models/`` or ``models/build/litemedsam/``), else None.

    The files are produced by ``models/build_litemedsam.py export``; at 28 + 20 MB they are not
    shipped in the repository, so a kiosk without them falls back to GrabCut for tap-to-segment.
    """
    for folder in folders or (SHIPPED_DIR, SHIPPED_DIR / "litemedsam", SHIPPED_DIR / "build" / "litemedsam"):
        enc, dec = Path(folder) / "litemedsam_encoder.onnx", Path(folder) / "litemedsam_decoder.onnx"
        if enc.is_file() and dec.is_file():
            return BoxSegmenter(enc, dec, threads=threads)
    return None
