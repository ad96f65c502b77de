"""The projects on this tablet, found and summarised for the Home screen without opening them.

No Kivy here (a test or the CLI can call it). Reading a project's progress must never change it
nor get in the way of an app instance that has it open, so :func:`summarise`:

* takes no project lock (whether another instance holds it is only *looked at*, see :func:`in_use`);
* opens ``labels.sqlite`` read-only: ``immutable=1`` when no ``-wal`` file is beside it (nobody
  has it open in WAL mode: the main file holds everything committed, and nothing is created
  next to it), else ``mode=ro`` (its owner keeps ``-wal``/``-shm`` alive, so those already exist);
* never migrates, never sets a pragma, never writes an event;
* turns every failure into one plain sentence (:attr:`ProjectSummary.reason`); details go to the log.

Its queries are the ones :meth:`labelassist.store.Store.counts` makes, on a connection opened the
way above (``Store`` itself opens writable folders read-write, migrates and switches to WAL).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from labelassist.errors import LabelAssistError
from labelassist.project import SETTINGS_FILE, STORE_FILE
from labelassist.store import SCHEMA_VERSION, SQLITE_HEADER

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


def read_counts(store_path: Path) -> dict[str, int]:
    """``{"samples", "labelled", "schema"}`` of a label database, read-only (see the module
    docstring); raises sqlite3.Error or OSError."""
    with open(store_path, "rb") as fh:
        if fh.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise sqlite3.DatabaseError("file is not a database")
    wal = Path(str(store_path) + "-wal")
    mode = "mode=ro" if wal.exists() else "immutable=1"
    uri = Path(store_path).absolute().as_uri() + "?" + mode
    conn = sqlite3.connect(uri, uri=True, timeout=2.0)
    try:
        schema = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if schema > SCHEMA_VERSION:
            return {"samples": 0, "labelled": 0, "schema": schema}
        samples = int(conn.execute("SELECT count(*) FROM samples").fetchone()[0])
        labelled = int(conn.execute("SELECT count(DISTINCT sample_id) FROM labels").fetchone()[0])
        return {"samples": samples, "labelled": labelled, "schema": schema}
    finally:
        conn.close()


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


def scan(data_folder: Path, also: list[Path] | tuple[Path, ...] = ()) -> list[ProjectSummary]:
    """:func:`summarise` of every project :func:`find_projects` finds."""
    return [summarise(p) for p in find_projects(data_folder, also)]


__all__ = ["ProjectSummary", "find_projects", "summarise", "scan", "in_use", "same_folder", "read_counts",
           "NEWER", "IN_USE", "DAMAGED"]
