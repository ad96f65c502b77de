"""The projects on this tablet, found and summarised for the Home screen without opening them.

No Kivy here (a test or the CLI can call it). Reading a project's progress must never change it
nor get in the way of an app instance that has it open, so :func:`summarise`:

* takes no project lock (whether another instance holds it is only *looked at*, see :func:`in_use`);
* opens ``labels.sqlite`` read-only: ``immutable=1`` when no ``-wal`` file is beside it (nobody
  has it open in WAL mode: the main file holds everything committed, and nothing is created
  next to it), else ``mode=ro`` (its owner keeps ``-wal``/``-shm`` alive, so those already exist);
* never migrates, never sets a pragma, never writes an event;
* turns every failure into one plain sentence (:attr:`ProjectSummary.reason`); details go to the log.

The database is read by :func:`labelassist.store.read_counts` (the queries
:meth:`labelassist.store.Store.counts` makes, on a connection opened the way above; ``Store`` itself
opens writable folders read-write, migrates and switches to WAL): the UI never opens SQLite itself.
"""

from __future__ import annotations

import logging
import os
import sqlite3  # only its exception types: the database is read by store.read_counts
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from labelassist.errors import LabelAssistError
from labelassist.project import SETTINGS_FILE, STORE_FILE
from labelassist.store import SCHEMA_VERSION, read_counts

log = logging.getLogger(__name__)

NEWER = "This project was made by a newer version of Label Assistant. Update the app to open it."
IN_USE = "In use by another instance of Label Assistant. Close it there first."
DAMAGED = "The label database is damaged. Ask your admin to restore a backup."
NO_STORE = "The label database (labels.sqlite) is missing."
NO_SETTINGS = "The settings file (project.toml) is missing."
BAD_SETTINGS = "The settings file (project.toml) cannot be read."
UNREADABLE = "This project cannot be read (is its drive still plugged in?)."


@dataclass
class ProjectSummary:
    """What Home shows for one project folder."""

    folder: Path
    name: str
    labelled: int = 0
    total: int = 0
    reason: str = ""          # why it cannot be opened; "" when it can
    in_use: bool = False      # another instance holds its lock
    counted: bool = False     # labelled / total were read

    @property
    def can_open(self) -> bool:
        return not self.reason

    @property
    def fraction(self) -> float:
        return self.labelled / self.total if self.total else 0.0

    def progress_text(self) -> str:
        if not self.counted:
            return ""
        pct = 100 * self.fraction
        return f"{self.labelled} of {self.total} images labelled ({pct:.0f} %)"


def is_candidate(folder: Path) -> bool:
    """A folder that is (or was meant to be) a project: it has project.toml or labels.sqlite."""
    try:
        return folder.is_dir() and ((folder / SETTINGS_FILE).is_file() or (folder / STORE_FILE).is_file())
    except OSError:
        return False


def find_projects(data_folder: Path, also: list[Path] | tuple[Path, ...] = ()) -> list[Path]:
    """Project folders in ``data_folder`` (itself and its direct sub-folders, by name), then
    the folders in ``also`` (the open project, wherever it is) that are not among them."""
    found: list[Path] = []
    data_folder = Path(data_folder)
    if is_candidate(data_folder):
        found.append(data_folder)
    try:
        children = sorted((p for p in data_folder.iterdir() if not p.name.startswith(".")),
                          key=lambda p: p.name.lower())
    except OSError:
        children = []
    found.extend(p for p in children if is_candidate(p))
    seen = {_key(p) for p in found}
    for extra in also:
        if _key(extra) not in seen:
            found.append(Path(extra))
            seen.add(_key(extra))
    return found


def _key(path: Path) -> str:
    try:
        return os.path.normcase(str(Path(path).resolve()))
    except OSError:
        return os.path.normcase(str(Path(path).absolute()))


def same_folder(a: Path, b: Path) -> bool:
    return _key(a) == _key(b)


def in_use(folder: Path) -> bool:
    """Whether another program holds the project's lock (``PROJECT/.lock``), looked at without
    taking it: on Linux in ``/proc/locks``; on Windows a locked byte cannot be read. Elsewhere
    (or when it cannot tell) False: opening it will say so if it is in use."""
    lock = Path(folder) / ".lock"
    try:
        st = lock.stat()
    except OSError:
        return False
    if sys.platform.startswith("linux"):
        try:
            text = Path("/proc/locks").read_text()
        except OSError:
            return False
        wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        for line in text.splitlines():
            parts = line.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" ("->" marks a waiting lock)
            if "->" in parts:
                continue
            if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == wanted:
                return True
        return False
    if os.name == "nt":
        try:
            with open(lock, "rb") as fh:
                fh.read(1)
        except PermissionError:
            return True
        except OSError:
            return False
    return False


def _name(folder: Path) -> tuple[str, str]:
    """(name, reason) from project.toml; the folder's name when it cannot be read."""
    settings = folder / SETTINGS_FILE
    if not settings.is_file():
        return folder.name, NO_SETTINGS
    try:
        raw = tomllib.loads(settings.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        log.warning("project settings %s cannot be read", settings, exc_info=True)
        return folder.name, BAD_SETTINGS
    project = raw.get("project") if isinstance(raw, dict) else None
    name = project.get("name") if isinstance(project, dict) else None
    return (name if isinstance(name, str) and name.strip() else folder.name), ""


def summarise(folder: Path) -> ProjectSummary:
    """Name, labelled / total and, when it cannot be opened, why (never raises)."""
    folder = Path(folder)
    try:
        name, reason = _name(folder)
    except OSError:
        log.warning("project %s cannot be read", folder, exc_info=True)
        return ProjectSummary(folder, folder.name, reason=UNREADABLE)
    summary = ProjectSummary(folder, name, reason=reason)
    store = folder / STORE_FILE
    try:
        if not store.is_file():
            summary.reason = summary.reason or NO_STORE
            return summary
        counts = read_counts(store)
    except sqlite3.Error as exc:
        text = str(exc).lower()
        log.warning("progress of %s cannot be read: %s", folder, exc)
        if "locked" in text or "busy" in text:
            summary.in_use, summary.reason = True, summary.reason or IN_USE
        else:
            summary.reason = summary.reason or DAMAGED
        return summary
    except (OSError, LabelAssistError) as exc:
        log.warning("progress of %s cannot be read: %s", folder, exc)
        summary.reason = summary.reason or UNREADABLE
        return summary
    if counts["schema"] > SCHEMA_VERSION:
        summary.reason = NEWER
        return summary
    summary.labelled, summary.total, summary.counted = counts["labelled"], counts["samples"], True
    if in_use(folder):
        summary.in_use = True
        summary.reason = summary.reason or IN_USE
    return summary


# -- the project chosen last on Home -----------------------------------------------------------
# kiosk.toml is IT's file and is never written by the app: the choice is kept in the data folder.
CHOICE_FILE = Path(".labelassist") / "last_project"


def _stored(path: Path, data_folder: Path) -> str:
    """A folder as kept in the choice file: relative to the data folder when inside it (a data
    folder on a drive that is mounted elsewhere next time keeps working), else absolute."""
    path = Path(path).absolute()
    try:
        return Path(os.path.relpath(path, Path(data_folder).absolute())).as_posix() \
            if _key(path).startswith(_key(data_folder) + os.sep) else str(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def remember_choice(data_folder: Path, started_on: Path, chosen: Path) -> Path:
    """Keep that the app started on ``started_on`` switched to ``chosen`` (atomic write of
    ``DATA/.labelassist/last_project``); returns the file. Raises OSError (read-only data folder)."""
    import json

    from labelassist.fileio import atomic_write_text

    target = Path(data_folder) / CHOICE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps({"started_on": _stored(started_on, data_folder),
                                          "chosen": _stored(chosen, data_folder)}, indent=1) + "\n")
    return target


def remembered_choice(data_folder: Path, started_on: Path) -> Path | None:
    """The project chosen last on Home when the app was started on the same folder as now
    (the tablet's boot project), else None; never raises (an unreadable file counts as none).

    Started on another folder (IT named another project in kiosk.toml or the kiosk shell, or
    someone opened one by hand) the app opens what it was asked to."""
    import json

    target = Path(data_folder) / CHOICE_FILE
    try:
        raw = json.loads(target.read_text(encoding="utf-8"))
        base = Path(data_folder)
        was, chosen = base / raw["started_on"], base / raw["chosen"]  # an absolute one stays itself
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("the project chosen last (%s) cannot be read; ignored", target, exc_info=True)
        return None
    return chosen if same_folder(was, started_on) else None


def scan(data_folder: Path, also: list[Path] | tuple[Path, ...] = ()) -> list[ProjectSummary]:
    """:func:`summarise` of every project :func:`find_projects` finds."""
    return [summarise(p) for p in find_projects(data_folder, also)]


__all__ = ["ProjectSummary", "find_projects", "summarise", "scan", "in_use", "same_folder", "read_counts",
           "remember_choice", "remembered_choice", "CHOICE_FILE",
           "NEWER", "IN_USE", "DAMAGED"]
