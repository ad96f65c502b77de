"""Tap-to-segment with a box or point prompt: LiteMedSAM as an image encoder and a prompt decoder (two ONNX graphs)."""

from __future__ import annotations

import copy
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
    """Tap-to-segment with LiteMedSAM as two ONNX graphs (see ``models/build_litemedsam.py``).

    ``embed(image)`` runs the image encoder once per image (about 0.7 s on two
    cores; the session should call it for the next samples in the background,
    or use :meth:`embed_cached`); :meth:`segment` runs the prompt decoder for
    one prompt (tens of ms) and returns a mask of the image's size. A prompt is
    a box, positive points (taps on the object), negative points (taps off it),
    or a box with points; all in image pixels.

    The decoder follows SAM's ONNX prompt convention: ``embedding (1,256,64,64)``,
    ``coords (1,N,2)`` and ``labels (1,N)`` (1 positive, 0 negative, 2 and 3 the
    box's corners, -1 padding) -> ``logits (1,1,256,256)``. :meth:`with_decoder`
    answers with another decoder (e.g. one adapted to a project) on the same encoder.
    """

    side = 256

    def __init__(self, encoder_path: str | os.PathLike, decoder_path: str | os.PathLike,
                 threads: int | None = None, cache_size: int = 4):
        self.threads = int(threads) if threads else physical_cores()
        paths = [Path(encoder_path), Path(decoder_path)]
        for p in paths:
            _check_file(p)
        self.encoder = _session(paths[0], self.threads)
        enc_in = self.encoder.get_inputs()
        if len(enc_in) != 1 or list(enc_in[0].shape) != [1, 3, self.side, self.side]:
            raise ModelError("the box-prompt segmenter does not fit: the encoder takes "
                             f"{[list(i.shape) for i in enc_in]}, expected [1, 3, 256, 256]")
        self.encoder_path, self.decoder_path = paths
        self.decoder = _decoder_session(paths[1], self.threads)
        self._cache: dict[Any, BoxEmbedding] = {}
        self._order: list[Any] = []
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def with_decoder(self, decoder_path: str | os.PathLike) -> "BoxSegmenter":
        """The same encoder (and embedding cache) with the prompt decoder of ``decoder_path``."""
        _check_file(Path(decoder_path))
        other = copy.copy(self)  # shares the encoder session, the cache and its lock
        other.decoder_path = Path(decoder_path)
        other.decoder = _decoder_session(Path(decoder_path), self.threads)
        return other

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

    def logits(self, embedding: BoxEmbedding, box=None, points=(), negative=()) -> np.ndarray:
        """The decoder's logits (256, 256) for a prompt, in the 256x256 frame the image was stretched to.

        Parameters
        ----------
        embedding : BoxEmbedding
        box : (x0, y0, x1, y1), optional
            Image pixels, any corner order.
        points, negative : sequence of (x, y)
            Taps on the object and off it, image pixels.
        """
        h, w = embedding.shape
        sx, sy = self.side / w, self.side / h
        coords, labels = [], []
        for pts, label in ((points, 1.0), (negative, 0.0)):
            for x, y in pts:
                coords.append((float(x) * sx, float(y) * sy))
                labels.append(label)
        if box is not None:
            x0, x1 = sorted((float(box[0]), float(box[2])))
            y0, y1 = sorted((float(box[1]), float(box[3])))
            if x1 - x0 < 1 or y1 - y0 < 1:
                raise ModelError("the box is empty: drag a box around the object")
            coords += [(x0 * sx, y0 * sy), (x1 * sx, y1 * sy)]
            labels += [2.0, 3.0]
        elif coords:
            coords.append((0.0, 0.0))  # SAM's padding point: a prompt without a box ends with one
            labels.append(-1.0)
        else:
            raise ModelError("no prompt: tap on the object or drag a box around it")
        feed = {"embedding": embedding.embedding, "coords": np.asarray([coords], np.float32),
                "labels": np.asarray([labels], np.float32)}
        return self.decoder.run(None, feed)[0][0, 0]

    def probability(self, embedding: BoxEmbedding, box=None, points=(), negative=()) -> np.ndarray:
        """Foreground probability (H, W) for a prompt (see :meth:`logits`), e.g. a box (x0, y0, x1, y1)."""
        h, w = embedding.shape
        logits = cv2.resize(self.logits(embedding, box, points, negative).astype(np.float32), (w, h),
                            interpolation=cv2.INTER_LINEAR)
        return (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)

    def segment(self, embedding: BoxEmbedding, box=None, threshold: float = 0.5, points=(),
                negative=()) -> np.ndarray:
        """The mask (H, W) of a prompt (see :meth:`logits`): probability above ``threshold``.

        The logits are cut at the threshold's logit (no sigmoid over the image). A prompt
        of taps alone keeps only the parts of the mask that hold a positive tap (a tap asks
        for that object, not for look-alikes elsewhere); empty when none does.
        """
        h, w = embedding.shape
        if not 0.0 < threshold < 1.0:
            raise ModelError(f"the threshold must lie between 0 and 1, not {threshold}")
        cut = float(np.log(threshold / (1.0 - threshold)))
        logits = cv2.resize(self.logits(embedding, box, points, negative).astype(np.float32), (w, h),
                            interpolation=cv2.INTER_LINEAR)
        mask = logits > cut
        if box is None and len(points):
            mask = _parts_holding(mask, points)
        return mask


def _decoder_session(path: Path, threads: int):
    """An ONNX session of the prompt decoder; refuses the old box-only graph in one line."""
    session = _session(path, threads)
    names = {i.name for i in session.get_inputs()}
    if names == {"embedding", "box"}:
        raise ModelError(f"{path.name} is the old box-only decoder (no point prompts): rebuild it with "
                         "make litemedsam")
    if names != {"embedding", "coords", "labels"}:
        raise ModelError(f"the box-prompt segmenter does not fit: the decoder takes {sorted(names)}, "
                         "expected 'coords', 'embedding' and 'labels'")
    return session


def _parts_holding(mask: np.ndarray, points) -> np.ndarray:
    """The 8-connected parts of ``mask`` that hold one of ``points`` (x, y)."""
    h, w = mask.shape
    inside = [(int(y), int(x)) for x, y in points if 0 <= int(x) < w and 0 <= int(y) < h]
    if not any(mask[y, x] for y, x in inside):
        return np.zeros_like(mask)
    _, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    keep = np.unique([labels[y, x] for y, x in inside if mask[y, x]])
    return np.isin(labels, keep) if len(keep) > 1 else labels == keep[0]


def find_box_segmenter(threads: int | None = None, folders=None) -> BoxSegmenter | None:
    """The LiteMedSAM export if one is present (``models/`` or ``models/build/litemedsam/``), else None.

    The files are produced by ``models/build_litemedsam.py export``; at 28 + 16 MB they are not
    shipped in the repository, so a kiosk without them falls back to GrabCut for tap-to-segment.
    """
    for folder in folders or (SHIPPED_DIR, SHIPPED_DIR / "litemedsam", SHIPPED_DIR / "build" / "litemedsam"):
        enc, dec = Path(folder) / "litemedsam_encoder.onnx", Path(folder) / "litemedsam_decoder.onnx"
        if enc.is_file() and dec.is_file():
            return BoxSegmenter(enc, dec, threads=threads)
    return None
