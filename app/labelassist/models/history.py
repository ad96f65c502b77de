"""A project's model history: every model it had, immutable on disk, and the one switch that picks one.

Files in the project folder::

    PROJECT/models/history/<id>/model.onnx   the model, never rewritten once its folder is renamed in place
    PROJECT/models/history/<id>/model.json   its card
    PROJECT/models/history.json              {"entries": [entry, ...], "next_id": n}  (atomic rewrite)
    PROJECT/models/current.json              {"id": <int or null>, "at": iso, "reason": str}  (atomic rewrite)
    PROJECT/models/prompt/...                the same for tap-to-segment's adapted decoders (prompt_model_place)

``current.json`` is *the* switch: installing a model and rolling back are the same atomic rewrite
of that one small file, so the model and its card always change together, and rolling back points
at the very bytes that were installed before (bit for bit). Installing is four steps, each of
which survives a power cut:

1. :func:`add_model` copies the model and its card into ``history/<id>.tmp/``, fsyncs them,
   renames the folder to ``history/<id>/`` and fsyncs ``history/``;
2. it rewrites ``history.json`` atomically (the entry now exists, nothing uses it yet);
3. :func:`activate` rewrites ``current.json`` atomically (the switch);
4. the caller logs the event (``model_import``, ``model_rollback``...).

A cut before step 3 leaves the old model current; a ``history/<id>.tmp`` it left is ignored and
removed by the next :func:`add_model`. Ids are never reused. A project installed before the
history existed has ``models/prelabel.onnx`` (card beside it): it reads as entry 1 (source
``"legacy"``), and becomes entry 1 on disk the first time anything writes the history (reading
writes nothing). A ``history.json`` or ``current.json`` that does not parse raises one
:class:`~labelassist.models.card.ModelError` naming the file; no model file is ever deleted
because of it.

The environment variable ``LABELASSIST_INSTALL_PAUSE_AT`` (``copied``, ``history`` or
``switched``) makes the writer print ``AT <step>`` on stderr and sleep after that step: the
crash tests kill it there.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from labelassist.fileio import fsync_dir, atomic_write_text, file_hash
from labelassist.models.card import ModelCard, ModelError, card_path

__all__ = ["HistoryEntry", "HistoryPlace", "prompt_model_place", "model_history", "current_entry", "add_model", "activate", "prune",
           "current_model_path", "SOURCES", "PAUSE_ENV"]

SOURCES = ("imported", "tablet", "legacy")
KEPT_SOURCES = ("imported", "legacy")  # what prune never removes: models the user brought (legacy ones were imports)
PAUSE_ENV = "LABELASSIST_INSTALL_PAUSE_AT"

MODELS_DIR = "models"
HISTORY_DIR = "history"
PROMPT_DIR = "prompt"  # models/prompt/: the same history for the adapted tap-to-segment decoders
HISTORY_FILE = "history.json"
CURRENT_FILE = "current.json"
MODEL_FILE = "model.onnx"
LEGACY_FILE = "prelabel.onnx"  # the one installed model before the history (card: prelabel.json)
LEGACY_REASON = "installed before the model history was kept"

LOCK_FILE = ".history.lock"

# One writer at a time: this lock for the threads of this process, an OS lock on LOCK_FILE for
# other processes (`labelassist model import` takes no project lock beside a running kiosk).
_WRITE_LOCK = threading.Lock()


@dataclass(frozen=True)
class HistoryEntry:
    """One model the project had: what it is, where it came from, why it was installed."""

    id: int                  # 1, 2, 3 ... never reused
    name: str
    version: str
    source: str              # "imported" | "tablet" | "legacy"
    sha256: str              # of model.onnx
    installed_at: str        # ISO UTC
    reason: str              # plain words: "imported from scratch_unet.onnx", "measured 0.91 against 0.84 ..."
    held_out_dsc: float | None
    trained_on: int          # labels it was trained on (0 for imports)
    onnx: Path               # absolute path of history/<id>/model.onnx

    def to_dict(self) -> dict[str, Any]:
        """The entry as ``history.json`` keeps it (the path is not kept: it follows from the id)."""
        return {"id": self.id, "name": self.name, "version": self.version, "source": self.source,
                "sha256": self.sha256, "installed_at": self.installed_at, "reason": self.reason,
                "held_out_dsc": self.held_out_dsc, "trained_on": self.trained_on}


# --------------------------------------------------------------------------- where things are


@dataclass(frozen=True)
class HistoryPlace:
    """A model history kept apart from the project's pre-label models, in its own folder.

    Every function here takes ``project`` (anything with a ``folder``: the history is in
    ``folder/models``) or a place (the history is in ``models_folder``).
    """

    folder: Path
    models_folder: Path


def prompt_model_place(project) -> HistoryPlace:
    """Where the project's adapted tap-to-segment models are kept: ``PROJECT/models/prompt/``."""
    return HistoryPlace(Path(project.folder), Path(project.folder) / MODELS_DIR / PROMPT_DIR)


def _models_dir(project) -> Path:
    where = getattr(project, "models_folder", None)
    return Path(where) if where is not None else Path(project.folder) / MODELS_DIR


def _entry_dir(project, entry_id: int) -> Path:
    return _models_dir(project) / HISTORY_DIR / str(entry_id)


def _legacy_path(project) -> Path:
    return _models_dir(project) / LEGACY_FILE


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _pause_at(step: str) -> None:
    """The crash tests' hook: stop after ``step`` until killed."""
    if os.environ.get(PAUSE_ENV) == step:
        print(f"AT {step}", file=sys.stderr, flush=True)
        time.sleep(3600)


# --------------------------------------------------------------------------- reading


def _read_json(path: Path) -> Any:
    """The parsed file, None when it does not exist, one ModelError naming it when it does not parse."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} could not be read ({getattr(exc, 'strerror', None) or exc}); "
                         "the model files are kept") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ModelError(f"{path} is damaged and could not be read ({exc}); the model files are kept: "
                         f"restore the file or remove it to start the model history again") from None


def _damaged(path: Path, what: str) -> ModelError:
    return ModelError(f"{path} is damaged ({what}); the model files are kept: restore the file or remove it "
                      "to start the model history again")


def _entry_from_dict(project, raw: Any, path: Path) -> HistoryEntry:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), int) or isinstance(raw.get("id"), bool):
        raise _damaged(path, f"an entry without a model id: {raw!r:.80}")
    try:
        dsc = raw.get("held_out_dsc")
        return HistoryEntry(
            id=raw["id"], name=str(raw.get("name", "")), version=str(raw.get("version", "")),
            source=str(raw.get("source", "imported")), sha256=str(raw.get("sha256", "")),
            installed_at=str(raw.get("installed_at", "")), reason=str(raw.get("reason", "")),
            held_out_dsc=float(dsc) if isinstance(dsc, (int, float)) and not isinstance(dsc, bool) else None,
            trained_on=int(raw.get("trained_on") or 0), onnx=_entry_dir(project, raw["id"]) / MODEL_FILE)
    except (TypeError, ValueError) as exc:
        raise _damaged(path, f"entry {raw['id']}: {exc}") from None


def _read_history(project) -> tuple[list[HistoryEntry], int] | None:
    """(entries oldest first, next id) from ``history.json``, None when there is none."""
    path = _models_dir(project) / HISTORY_FILE
    raw = _read_json(path)
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("entries"), list):
        raise _damaged(path, "it has no list of entries")
    entries = [_entry_from_dict(project, item, path) for item in raw["entries"]]
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise _damaged(path, "a model id is listed twice")
    next_id = raw.get("next_id")
    next_id = next_id if isinstance(next_id, int) and not isinstance(next_id, bool) else 1
    return sorted(entries, key=lambda e: e.id), max([next_id, *(i + 1 for i in ids)])


def _read_current(project) -> tuple[bool, int | None]:
    """(whether ``current.json`` exists, the id it names)."""
    path = _models_dir(project) / CURRENT_FILE
    raw = _read_json(path)
    if raw is None:
        return False, None
    entry_id = raw.get("id", ...) if isinstance(raw, dict) else ...
    if entry_id is not None and (not isinstance(entry_id, int) or isinstance(entry_id, bool)):
        raise _damaged(path, "it names no model id (nor null for no model)")
    return True, entry_id


def _card_facts(card: dict) -> tuple[str, str, float | None, int]:
    """Name, version, held-out DSC and number of labels trained on, as the card says them."""
    name = str(card.get("name", "")) if isinstance(card, dict) else ""
    version = str(card.get("version", "")) if isinstance(card, dict) else ""
    try:
        dsc = ModelCard.from_dict(card).held_out_dsc
    except ModelError:
        dsc = None
    data = card.get("training_data") if isinstance(card, dict) else None
    trained = data.get("trained_on") if isinstance(data, dict) else None
    trained_on = len(trained) if isinstance(trained, list) else trained if isinstance(trained, int) else 0
    return name, version, dsc, int(trained_on)


@functools.lru_cache(maxsize=8)
def _legacy_hash(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a legacy model, once per file version (the entry is read each time a sample opens)."""
    return file_hash(path)


def _legacy_entry(project, onnx: Path | None = None) -> HistoryEntry | None:
    """The model installed before the history, as entry 1 (at ``onnx``, default where it lies now)."""
    legacy = _legacy_path(project)
    if not legacy.is_file():
        return None
    try:
        card = json.loads(card_path(legacy).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        card = {}
    name, version, dsc, trained_on = _card_facts(card if isinstance(card, dict) else {})
    stat = legacy.stat()
    return HistoryEntry(id=1, name=name or legacy.stem, version=version, source="legacy",
                        sha256=_legacy_hash(str(legacy.resolve()), stat.st_size, stat.st_mtime_ns),
                        installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stat.st_mtime)),
                        reason=LEGACY_REASON, held_out_dsc=dsc, trained_on=trained_on, onnx=onnx or legacy)


def model_history(project) -> list[HistoryEntry]:
    """Every model the project has kept, oldest first (reads only; a legacy model reads as entry 1).

    Raises
    ------
    ModelError
        ``history.json`` is damaged (the message names it).
    """
    history = _read_history(project)
    if history is not None:
        return history[0]
    legacy = _legacy_entry(project)
    return [legacy] if legacy is not None else []


def current_entry(project) -> HistoryEntry | None:
    """The model ``current.json`` names; without ``current.json``, the legacy model if there is one.

    Raises
    ------
    ModelError
        ``history.json`` or ``current.json`` is damaged, or names a model the history does not list.
    """
    exists, entry_id = _read_current(project)
    entries = model_history(project)
    if not exists:
        return next((e for e in entries if e.source == "legacy"), None)
    if entry_id is None:
        return None
    for entry in entries:
        if entry.id == entry_id:
            return entry
    raise ModelError(f"{_models_dir(project) / CURRENT_FILE} names model {entry_id}, which "
                     f"{HISTORY_FILE} does not list; the model files are kept")


def current_model_path(project) -> Path:
    """The ONNX file of the current model (see :func:`labelassist.models.installed_model_path`).

    Without ``current.json``: the legacy ``models/prelabel.onnx``. With ``"id": null``: a path that
    does not exist. Reads ``current.json`` and ``history.json`` (no hashing); an id the history does
    not list raises :class:`ModelError`.
    """
    exists, entry_id = _read_current(project)
    if not exists:
        return _legacy_path(project)
    if entry_id is None:
        return _models_dir(project) / HISTORY_DIR / "none" / MODEL_FILE
    history = _read_history(project)
    if history is None or entry_id not in {e.id for e in history[0]}:
        # A model the history does not list is not used (nothing could say what it trained on).
        raise ModelError(f"{_models_dir(project) / CURRENT_FILE} names model {entry_id}, which "
                         f"{HISTORY_FILE} does not list; the model files are kept")
    return _entry_dir(project, entry_id) / MODEL_FILE


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def _writing(project):
    """Hold the history for one writer (see ``_WRITE_LOCK``); a killed writer's OS lock goes with it."""
    folder = _models_dir(project)
    with _WRITE_LOCK:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fh = open(folder / LOCK_FILE, "a+b")
        except OSError as exc:
            raise ModelError(f"the model history in {folder} cannot be written: {exc.strerror or exc}") from exc
        try:
            try:
                if os.name == "nt":
                    import msvcrt

                    fh.seek(0)
                    msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)  # retries for 10 s, then OSError
                else:
                    import fcntl

                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file closes
            except OSError as exc:
                raise ModelError(f"another program is changing the model history in {folder}; "
                                 "try again in a moment") from exc
            try:
                yield
            finally:
                if os.name == "nt":
                    fh.seek(0)
                    msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        finally:
            fh.close()


def _pruned_ids(project) -> set[int]:
    """Ids ``history.json`` records as pruned (their folders may still be there after a cut)."""
    raw = _read_json(_models_dir(project) / HISTORY_FILE)
    pruned = raw.get("pruned") if isinstance(raw, dict) else None
    return {i for i in pruned if isinstance(i, int)} if isinstance(pruned, list) else set()


def _write_history(project, entries: list[HistoryEntry], next_id: int, pruned: set[int] | None = None) -> None:
    pruned = (_pruned_ids(project) if pruned is None else pruned) - {e.id for e in entries}
    data = {"entries": [e.to_dict() for e in sorted(entries, key=lambda e: e.id)], "next_id": next_id,
            "pruned": sorted(pruned)}
    atomic_write_text(_models_dir(project) / HISTORY_FILE, json.dumps(data, indent=2) + "\n")


def _write_current(project, entry_id: int | None, reason: str, previous: int | None) -> None:
    data = {"id": entry_id, "at": _now(), "reason": reason, "previous": previous}
    atomic_write_text(_models_dir(project) / CURRENT_FILE, json.dumps(data, indent=2) + "\n")


def _copy_synced(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst`` and fsync it; the SHA-256 of the bytes written."""
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(1 << 20):
            digest.update(block)
            fout.write(block)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _place(project, entry_id: int, onnx_path: Path, card_bytes: bytes | None,
           extra: dict[str, Path] | None = None) -> str:
    """Step 1: the model, its card (and ``extra`` files by name) into ``history/<id>.tmp/``, fsynced,
    renamed to ``history/<id>/``."""
    history_dir = _models_dir(project) / HISTORY_DIR
    history_dir.mkdir(parents=True, exist_ok=True)
    tmp = history_dir / f"{entry_id}.tmp"
    final = _entry_dir(project, entry_id)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        sha = _copy_synced(onnx_path, tmp / MODEL_FILE)
        if card_bytes is not None:
            _write_synced(card_path(tmp / MODEL_FILE), card_bytes)
        for name, path in (extra or {}).items():
            _copy_synced(Path(path), tmp / name)
        fsync_dir(tmp)
        os.replace(tmp, final)
        fsync_dir(history_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"the model could not be copied into {history_dir}: {exc.strerror or exc}") from exc
    return sha


def _dir_ids(project) -> list[int]:
    history_dir = _models_dir(project) / HISTORY_DIR
    if not history_dir.is_dir():
        return []
    return [int(child.name) for child in history_dir.iterdir() if child.name.isdigit()]


def _clean_leftovers(project, next_id: int) -> None:
    """Remove what a power cut left: ``history/<id>.tmp`` folders, ``history/<id>`` folders at or
    past ``next_id`` (renamed in place, cut before ``history.json`` listed them: nothing points at
    them) and those of ids ``history.json`` records as pruned. No other folder is touched."""
    history_dir = _models_dir(project) / HISTORY_DIR
    if not history_dir.is_dir():
        return
    pruned = _pruned_ids(project)
    _, current = _read_current(project)
    for child in history_dir.iterdir():
        unlisted = child.name.isdigit() and (int(child.name) >= next_id or int(child.name) in pruned) \
            and int(child.name) != current  # the folder current.json names is never removed
        if child.is_dir() and (child.name.endswith(".tmp") or unlisted):
            shutil.rmtree(child, ignore_errors=True)


def _materialise(project) -> tuple[list[HistoryEntry], int]:
    """The history as written on disk, writing it first when there is none (a legacy model
    becomes entry 1 and current). Call under ``_writing``."""
    history = _read_history(project)
    if history is not None:
        return history
    _read_current(project)  # a damaged current.json stops here, before anything is written
    # Without history.json no folder is known to be a leftover: none is removed, and no id is reused.
    first = max([0, *_dir_ids(project)]) + 1
    legacy = _legacy_path(project)
    if not legacy.is_file():
        return [], first
    card = card_path(legacy)
    sha = _place(project, first, legacy, card.read_bytes() if card.is_file() else None)
    entry = _legacy_entry(project, onnx=_entry_dir(project, first) / MODEL_FILE)
    entry = replace(entry, id=first, sha256=sha)
    _write_history(project, [entry], first + 1)
    exists, _ = _read_current(project)
    if not exists:
        _write_current(project, first, LEGACY_REASON, None)
    return [entry], first + 1


def add_model(project, onnx_path: str | os.PathLike, card: dict, source: str, reason: str, *,
              extra: dict[str, str | os.PathLike] | None = None, expected_sha256: str | None = None) -> HistoryEntry:
    """Copy a model and its card into the history (steps 1 and 2); it does not become current.

    Parameters
    ----------
    project : Project
        Anything with a ``folder``.
    onnx_path : path-like
        The model, already checked (:func:`labelassist.models.check_model`).
    card : dict
        Its card, written as ``model.json`` beside the copy.
    source : str
        ``"imported"``, ``"tablet"`` or ``"legacy"``.
    reason : str
        Why it was added, in plain words.
    extra : dict, optional
        More files kept with it, by file name in its folder (e.g. ``{"model.fp32.onnx": path}``:
        the full-precision weights of an int8 model, to warm-start the next round from).
    expected_sha256 : str, optional
        The SHA-256 the model was checked with: bytes that differ when copied (the file was
        replaced meanwhile) are refused and nothing is added.

    Returns
    -------
    HistoryEntry
        The new entry, with a new id (ids are never reused).

    Raises
    ------
    ModelError
        The history is damaged, or the files could not be written (disk full...): nothing changed.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    src = Path(onnx_path)
    extra = {name: Path(path) for name, path in (extra or {}).items()}
    for name in extra:
        if name in (MODEL_FILE, card_path(MODEL_FILE).name) or Path(name).name != name or name.startswith("."):
            raise ValueError(f"an extra file of a history entry needs a plain file name of its own, got {name!r}")
    card_bytes = (json.dumps(card, indent=2) + "\n").encode("utf-8")
    name, version, dsc, trained_on = _card_facts(card)
    with _writing(project):
        _read_current(project)  # a damaged current.json stops every write, before any file is copied
        entries, next_id = _materialise(project)
        if (_models_dir(project) / HISTORY_FILE).is_file():
            _clean_leftovers(project, next_id)
        else:  # no history.json: only the .tmp folders are known leftovers
            shutil.rmtree(_models_dir(project) / HISTORY_DIR / f"{next_id}.tmp", ignore_errors=True)
        sha = _place(project, next_id, src, card_bytes, extra)
        if expected_sha256 is not None and sha != expected_sha256:
            shutil.rmtree(_entry_dir(project, next_id), ignore_errors=True)
            raise ModelError(f"{src.name} changed after it was checked (its SHA-256 differs): not installed")
        _pause_at("copied")
        entry = HistoryEntry(id=next_id, name=name or src.stem, version=version, source=source, sha256=sha,
                             installed_at=_now(), reason=reason, held_out_dsc=dsc, trained_on=trained_on,
                             onnx=_entry_dir(project, next_id) / MODEL_FILE)
        try:
            _write_history(project, [*entries, entry], next_id + 1)
        except OSError as exc:
            shutil.rmtree(_entry_dir(project, next_id), ignore_errors=True)
            raise ModelError(f"the model history in {_models_dir(project)} could not be written: "
                             f"{exc.strerror or exc}") from exc
        _pause_at("history")
    return entry


def activate(project, entry_id: int | None, reason: str) -> None:
    """Make entry ``entry_id`` the project's model, or no model for None: the one atomic switch.

    Raises
    ------
    ModelError
        The history does not list ``entry_id``, its files are gone, the history is damaged, or
        ``current.json`` could not be written (the current model is then unchanged).
    """
    with _writing(project):
        entries, _ = _materialise(project)
        if entry_id is not None:
            entry = next((e for e in entries if e.id == entry_id), None)
            if entry is None:
                raise ModelError(f"there is no model {entry_id} in the project's model history")
            if not entry.onnx.is_file():
                raise ModelError(f"model {entry_id} ({entry.name}) is no longer in {entry.onnx.parent}")
        exists, previous = _read_current(project)
        try:
            _write_current(project, entry_id, reason, previous if exists else None)
        except OSError as exc:
            raise ModelError(f"the model could not be switched in {_models_dir(project)}: "
                             f"{exc.strerror or exc}") from exc
        _pause_at("switched")


def prune(project, keep: int = 5) -> list[int]:
    """Remove old models from the history; returns the ids removed, oldest first.

    Kept: the current model, the ``keep`` newest, and every import (the user brought those and
    may not have them anywhere else; a legacy model was an import too). The entries leave
    ``history.json`` first (recorded as pruned), then their folders go, so a cut in between leaves
    only folders that nothing points at, removed by the next :func:`add_model`.
    """
    with _writing(project):
        entries, next_id = _materialise(project)
        exists, current = _read_current(project)
        if not exists:
            current = next((e.id for e in entries if e.source == "legacy"), None)
        newest = {e.id for e in sorted(entries, key=lambda e: e.id)[-keep:]} if keep > 0 else set()
        gone = [e for e in entries if e.id != current and e.id not in newest and e.source not in KEPT_SOURCES]
        if not gone:
            return []
        _write_history(project, [e for e in entries if e not in gone], next_id,
                       _pruned_ids(project) | {e.id for e in gone})
        for entry in gone:
            shutil.rmtree(entry.onnx.parent, ignore_errors=True)
        return [e.id for e in gone]
