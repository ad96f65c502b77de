"""Running an ONNX pre-label model on the CPU: :class:`Model`, its sessions and threads, the shared cache.

The ONNX Runtime session of a file is made once (:func:`load_model`) and is safe to call
from several threads; :meth:`Model.predict` normalises the image as the card says, scales it,
runs it whole or in tiles (:mod:`~labelassist.models.tiling`) and answers a probability map
in the image's own pixel grid.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from labelassist.models.card import ModelCard, ModelError, _as_card, card_path
from labelassist.models.inputs import _check_image, normalise
from labelassist.models.tiling import _blend_window, _starts, _tile_length

__all__ = ["Model", "load_model", "physical_cores"]


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
