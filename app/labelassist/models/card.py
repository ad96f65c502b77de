"""The model card: the JSON beside every ``.onnx`` file that says how to feed the network and read it.

:meth:`ModelCard.from_dict` validates a card and names every problem it finds in one
:class:`ModelError`; :func:`read_card` reads the card of a file, :func:`card_path` says where
it lives. The card's fields are described in :mod:`labelassist.models`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelassist.errors import LabelAssistError

__all__ = ["CARD_FORMAT", "ModelCard", "ModelError", "card_path", "read_card"]

CARD_FORMAT = "labelassist-model-card/1"
OUTPUT_KINDS = ("logits", "probability", "softmax")
LAYOUTS = ("NCHW", "NHWC")
NORMALISATIONS = ("percentile", "unit", "meanstd")


class ModelError(LabelAssistError):
    """A model file or its card cannot be used (not ONNX, no card, does not fit, NaN, too slow)."""


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
