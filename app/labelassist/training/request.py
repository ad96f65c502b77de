"""The files a training round is made of: what the UI asks for, and what the trainer answers.

A round lives in its own folder (:func:`round_folder`), outside the project. The UI process
writes the request there and starts the trainer child (:func:`trainer_command`); the child
reads the request, writes its candidate models beside it and, last, ``result.json``:

* ``masks.npz``: the pinned label masks, by label id, bit-packed (``np.packbits``) with
  their shapes; written first;
* ``request.json`` (:class:`RoundRequest`): written last, atomically, so a request that
  parses is complete;
* ``candidate.onnx`` / ``candidate.int8.onnx`` and their cards, from the child;
* ``result.json`` (:class:`RoundResult`): written last and atomically by the child. A round
  counts only when it parses and the SHA-256 of the proposed model matches.

Both processes import this module, so it imports neither torch nor onnx:
:func:`trainer_available` asks whether torch is installed without importing it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelassist.errors import ImageReadError
from labelassist.fileio import atomic_write_bytes, atomic_write_text, file_hash
from labelassist.paths import data_home

__all__ = ["RoundItem", "RoundRequest", "RoundResult", "round_folder", "trainer_command", "trainer_available",
           "progress_line",
           "REQUEST_FILE", "MASKS_FILE", "RESULT_FILE", "LOG_FILE"]

REQUEST_FILE = "request.json"
MASKS_FILE = "masks.npz"
RESULT_FILE = "result.json"
LOG_FILE = "trainer.log"
REQUEST_FORMAT = "labelassist-round-request/1"
RESULT_FORMAT = "labelassist-round-result/1"


@dataclass
class RoundItem:
    """One labelled sample of a round, and its image file as the request saw it (``os.stat``)."""

    sample_id: int
    label_id: int
    name: str
    path: str               # absolute image path
    page: int
    size: int
    mtime_ns: int
    shape: tuple[int, int]  # (h, w)

    def read_image(self) -> np.ndarray | None:
        """Its pixels when the file is still the one the request saw (size, mtime, shape), else None
        (why on stderr, the trainer's log): a changed image is left out, as ``Project.read_image``
        would refuse it."""
        import os

        from labelassist.errors import LabelAssistError
        from labelassist.images import read_image

        try:
            st = os.stat(self.path)
            if st.st_size != self.size or st.st_mtime_ns != self.mtime_ns:
                return None
            image = read_image(self.path, page=self.page)
        except (OSError, LabelAssistError) as exc:
            print(f"{self.name}: {exc}", file=sys.stderr)
            return None
        return image if image.shape[:2] == tuple(self.shape) else None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RoundItem":
        return cls(sample_id=int(d["sample_id"]), label_id=int(d["label_id"]), name=str(d["name"]),
                   path=str(d["path"]), page=int(d["page"]), size=int(d["size"]), mtime_ns=int(d["mtime_ns"]),
                   shape=(int(d["shape"][0]), int(d["shape"][1])))


@dataclass
class RoundRequest:
    """What one training round trains on, from what, and for how long.

    ``base`` is ``{"path", "name", "version", "sha256"}`` of the ONNX model to warm-start
    from, or None; ``recipe`` is ``"fine-tune"`` or ``"from-scratch"``.
    """

    round: int
    project: str
    train: list[RoundItem]
    held_out: list[RoundItem]
    base: dict | None
    recipe: str
    budget_s: float = 90.0
    threads: int = 1
    seed: int = 0
    # tap-to-segment's decoder to adapt too (session/prompt_model.PromptModels.round_config), or None
    prompt: dict | None = None

    def write(self, folder: Path, masks: dict[int, np.ndarray]) -> None:
        """Write ``masks.npz`` (bit-packed, by label id) and then ``request.json``, both atomically.

        ``masks`` must hold the mask of every train and held-out label id.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        wanted = [it.label_id for it in self.train + self.held_out]
        missing = [i for i in wanted if i not in masks]
        if missing:
            raise ValueError(f"no mask for label id(s) {missing}")
        arrays: dict[str, np.ndarray] = {}
        for label_id in wanted:
            mask = np.asarray(masks[label_id], bool)
            arrays[f"bits_{label_id}"] = np.packbits(mask.ravel())
            arrays[f"shape_{label_id}"] = np.asarray(mask.shape, np.int64)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(folder / MASKS_FILE, buffer.getvalue())
        data = {"format": REQUEST_FORMAT, **asdict(self)}
        atomic_write_text(folder / REQUEST_FILE, json.dumps(data, indent=1) + "\n")

    @classmethod
    def read(cls, folder: Path) -> tuple["RoundRequest", dict[int, np.ndarray]]:
        """The request and its masks by label id (bool, the stored shape).

        Raises OSError, ValueError or KeyError when a file is missing or damaged.
        """
        folder = Path(folder)
        data = json.loads((folder / REQUEST_FILE).read_text(encoding="utf-8"))
        if data.get("format") != REQUEST_FORMAT:
            raise ValueError(f"{REQUEST_FILE} is not a round request ({data.get('format')!r})")
        request = cls(round=int(data["round"]), project=str(data["project"]),
                      train=[RoundItem.from_dict(d) for d in data["train"]],
                      held_out=[RoundItem.from_dict(d) for d in data["held_out"]],
                      base=data.get("base"), recipe=str(data["recipe"]), budget_s=float(data["budget_s"]),
                      threads=int(data["threads"]), seed=int(data["seed"]),
                      prompt=data.get("prompt") if isinstance(data.get("prompt"), dict) else None)
        masks = {}
        with np.load(folder / MASKS_FILE, allow_pickle=False) as npz:
            for item in request.train + request.held_out:
                shape = tuple(int(v) for v in npz[f"shape_{item.label_id}"])
                bits = np.unpackbits(npz[f"bits_{item.label_id}"], count=int(np.prod(shape)))
                masks[item.label_id] = bits.reshape(shape).astype(bool)
        return request, masks


def _dsc_table(d: dict) -> dict[int, float]:
    return {int(k): float(v) for k, v in (d or {}).items()}


@dataclass
class RoundResult:
    """The trainer's answer: the proposed model (``variant``, file, SHA-256, card) and its scores.

    ``held_out`` is the DSC per held-out label id of the proposed variant; ``seconds`` holds
    the seconds per stage (read, train, export, int8, score).
    """

    status: str                          # "ok" | "failed"
    reason: str                          # plain words, also for failures
    variant: str | None = None           # "fp32" | "int8"
    onnx: str | None = None              # file name inside the round folder
    sha256: str | None = None
    card: str | None = None              # file name of its card
    held_out: dict[int, float] = field(default_factory=dict)
    held_out_fp32: dict[int, float] = field(default_factory=dict)
    held_out_int8: dict[int, float] = field(default_factory=dict)
    recipe: str = ""
    steps: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    trained_on: list[int] = field(default_factory=list)
    prompt: dict | None = None           # the prompt stage's outcome (training/prompt_round.py), or None

    def write(self, folder: Path) -> None:
        """Write ``result.json`` atomically: the last file of a round."""
        data = {"format": RESULT_FORMAT, **asdict(self)}
        for key in ("held_out", "held_out_fp32", "held_out_int8"):
            data[key] = {str(k): v for k, v in data[key].items()}
        atomic_write_text(Path(folder) / RESULT_FILE, json.dumps(data, indent=1) + "\n")

    @classmethod
    def read(cls, folder: Path) -> "RoundResult | None":
        """The round's result, or None when it is missing, does not parse, or its model does not match.

        An ``"ok"`` result counts only when its model file lies in ``folder``, its SHA-256 is the
        recorded one, and its card is there.
        """
        folder = Path(folder)
        try:
            data = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
            if data.get("format") != RESULT_FORMAT or data.get("status") not in ("ok", "failed"):
                return None
            result = cls(status=data["status"], reason=str(data["reason"]), variant=data.get("variant"),
                         onnx=data.get("onnx"), sha256=data.get("sha256"), card=data.get("card"),
                         held_out=_dsc_table(data.get("held_out")),
                         held_out_fp32=_dsc_table(data.get("held_out_fp32")),
                         held_out_int8=_dsc_table(data.get("held_out_int8")),
                         recipe=str(data.get("recipe", "")), steps=int(data.get("steps", 0)),
                         seconds={str(k): float(v) for k, v in (data.get("seconds") or {}).items()},
                         trained_on=[int(v) for v in data.get("trained_on") or []],
                         prompt=_prompt_outcome(folder, data.get("prompt")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if result.status == "failed":
            return result
        if result.variant not in ("fp32", "int8") or not all(math.isfinite(v) for v in result.held_out.values()):
            return None
        for name in (result.onnx, result.card):
            if not isinstance(name, str) or not name or Path(name).name != name or not (folder / name).is_file():
                return None
        try:
            if file_hash(folder / result.onnx) != result.sha256:
                return None
        except (OSError, ImageReadError):
            return None
        return result


def _prompt_outcome(folder: Path, raw: Any) -> dict | None:
    """The prompt stage's outcome as the kiosk may use it: an ``ok`` one only when its decoder lies in
    ``folder`` with the recorded SHA-256 (else it reads as failed, with the reason)."""
    if not isinstance(raw, dict):
        return None
    status = raw.get("status")
    if status != "ok":
        return {"status": "failed", "reason": str(raw.get("reason", "tap-to-segment did not learn"))}
    name = raw.get("onnx")
    try:
        ok = (isinstance(name, str) and bool(name) and Path(name).name == name and (folder / name).is_file()
              and file_hash(folder / name) == raw.get("sha256"))
    except (OSError, ImageReadError):
        ok = False
    if not ok:
        return {"status": "failed", "reason": "the adapted tap-to-segment model is not the one the trainer scored"}
    return raw


def round_folder(project_folder: Path, round_: int) -> Path:
    """``data_home()/training/<project key>/round-NNNN``: where round ``round_`` of a project lives.

    The key is 12 hex digits of the SHA-1 of the resolved project folder. Nothing is created.
    """
    key = hashlib.sha1(str(Path(project_folder).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return data_home() / "training" / key / f"round-{int(round_):04d}"


def trainer_command(folder: Path) -> list[str]:
    """The command line of the trainer child for a round folder (the bundle's own executable when frozen)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "_train-round", str(folder)]
    return [sys.executable, "-m", "labelassist", "_train-round", str(folder)]


def trainer_available() -> bool:
    """Whether this installation can train: torch and onnx are installed (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "onnx"))


_STAGES = ("read", "train", "export", "int8", "score", "prompt", "done", "paused")


def progress_line(raw: bytes | str) -> dict | None:
    """One progress line of the trainer as the kiosk reads it, checked: the known stages, whole step
    counts (None for anything else: a garbled line is never shown)."""
    try:
        line = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(line, dict) or line.get("stage") not in _STAGES:
        return None
    out = {"stage": line["stage"]}
    for key in ("step", "steps"):
        value = line.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**7:
            out[key] = value
    if isinstance(line.get("at"), str) and line["at"] in _STAGES + ("result",):
        out["at"] = line["at"]
    return out
