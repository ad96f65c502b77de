"""The models shipped with the kiosk: ``models/index.json`` and the files it names."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from labelassist.models.card import ModelError
from labelassist.models.runtime import Model, load_model

__all__ = ["SHIPPED_DIR", "shipped_models", "shipped_model"]

SHIPPED_DIR = Path(os.environ.get("LABELASSIST_MODELS", Path(__file__).resolve().parents[3] / "models"))
"""Folder of the shipped models (``models/`` of the repository; ``$LABELASSIST_MODELS`` overrides)."""


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
