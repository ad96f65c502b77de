"""Tap-to-segment with a box prompt: LiteMedSAM as an image encoder and a box decoder (two ONNX graphs)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from labelassist.models.card import ModelError
from labelassist.models.inputs import _check_image, percentile_normalise
from labelassist.models.runtime import _check_file, _session, physical_cores
from labelassist.models.shipped import SHIPPED_DIR

__all__ = ["BoxEmbedding", "BoxSegmenter", "find_box_segmenter"]


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
