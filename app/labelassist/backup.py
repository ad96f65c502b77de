"""Rolling online backups of the label database, and restoring one.

Backups use SQLite's online backup API, so they are consistent snapshots taken
while the app keeps writing. They live in ``PROJECT/backups/`` as
``labels-YYYYMMDDTHHMMSSmmmZ-NNNNNN.sqlite``; the newest K are kept. "Newest" is the
running number NNNNNN, not the time in the name: the wall clock may jump (a tablet with a
flat RTC battery starts in 1970, an NTP correction moves it back), and a backup
taken after the clock went back must not be pruned as the oldest.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import sqlite3
import stat
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from labelassist.errors import StoreError
from labelassist.fileio import fsync_dir
from labelassist.store import SCHEMA_VERSION, Store

log = logging.getLogger(__name__)

BACKUP_DIR = "backups"
_NAME = re.compile(r"^labels-(\d{8}T\d{6}(?:\d{3})?Z)(?:-(\d+))?\.sqlite$")


@dataclass(frozen=True)
class Backup:
    path: Path
    taken_at: datetime
    size: int
    labels: int | None  # label versions inside, None when the file cannot be read
    number: int = 0  # running number, the order they were taken in (0: named before numbering)

    @property
    def name(self) -> str:
        return self.path.name


def backup_now(store: Store, folder: Path, keep: int = 10) -> Path:
    """Write a consistent copy of ``store`` into ``folder`` and keep the newest ``keep`` copies.

    The copy is written under a temporary name, fsynced, then renamed, so a
    power cut never leaves a half backup that looks whole.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StoreError(f"the backup could not be written: {folder} is a file, not a folder; "
                         "move that file away") from None
    except OSError as exc:
        raise StoreError(f"the backup could not be written to {folder}: {_reason(exc)}") from exc
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")[:-3] + "Z"
    number = 1 + max((b.number for b in list_backups(folder)), default=0)
    target = folder / f"labels-{stamp}-{number:06d}.sqlite"
    tmp = folder / f".{target.name}.tmp"
    try:
        store.copy_to(tmp)  # a backup is one self-contained file
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(folder)
    except (OSError, sqlite3.Error) as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise StoreError(f"the backup could not be written to {folder}: {_reason(exc)}") from exc
    for old in list_backups(folder)[keep:]:
        old.path.unlink(missing_ok=True)
    return target


def list_backups(folder: Path) -> list[Backup]:
    """Backups in ``folder``, newest first."""
    if not folder.is_dir():
        return []
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        log.warning("the backups in %s cannot be listed: %s", folder, exc)
        return []
    for path in entries:
        match = _NAME.match(path.name)
        if not match:
            continue
        text = match.group(1)
        fmt = "%Y%m%dT%H%M%S%fZ" if len(text) > 16 else "%Y%m%dT%H%M%SZ"
        try:
            # A stray file with a backup-like name and an impossible date (month 13) is not one of
            # ours: it is left alone, never counted, never pruned, and never breaks a save.
            taken = datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
            st = path.stat()
        except (ValueError, OSError):
            log.warning("%s in %s is not a backup of this app (its name does not hold a real date); left alone",
                        path.name, folder)
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        number = int(match.group(2)) if match.group(2) else 0
        found.append(Backup(path, taken, st.st_size, _count_labels(path), number))
    # Taken later = higher number, whatever the clock said; unnumbered (older) names by their time.
    return sorted(found, key=lambda b: (b.number, b.taken_at), reverse=True)


def _reason(exc: BaseException) -> str:
    """Plain words for why a backup could not be written."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return "the project folder is read-only"
        if exc.errno == errno.ENOSPC:
            return "the disk is full"
        return exc.strerror or str(exc)
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text:
        return "the project folder is read-only"
    if "full" in text:
        return "the disk is full"
    return str(exc)


def _check_backup(path: Path) -> None:
    """Refuse a backup that is damaged or from a newer version, before anything is moved."""
    try:
        conn = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("SELECT count(*) FROM labels").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"the backup {path.name} cannot be used: {exc}; nothing was changed") from exc
    if result != "ok":
        raise StoreError(f"the backup {path.name} is damaged ({result}); nothing was changed")
    if version > SCHEMA_VERSION:
        raise StoreError(f"the backup {path.name} is from a newer Label Assistant; nothing was changed")


def _count_labels(path: Path) -> int | None:
    try:
        conn = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM labels").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None


class BackupSchedule:
    """Takes a backup at most every ``minutes`` (call :meth:`maybe` after saves, and at exit)."""

    def __init__(self, store: Store, folder: Path, minutes: float = 10.0, keep: int = 10):
        self.store, self.folder, self.minutes, self.keep = store, folder, minutes, keep
        self._last = time.monotonic()
        self._changes_since = 0

    def changed(self) -> None:
        """Note that something was saved since the last backup."""
        self._changes_since += 1

    def maybe(self, force: bool = False) -> Path | None:
        """Back up now if it is due (or ``force``) and something changed; never raises."""
        due = force or time.monotonic() - self._last >= self.minutes * 60
        if not due or self._changes_since == 0:
            return None
        try:
            path = backup_now(self.store, self.folder, self.keep)
        except StoreError as exc:
            log.warning("%s", exc)  # a failed backup must not interrupt labelling
            return None
        except Exception:  # noqa: BLE001 - the label is already saved: a backup never undoes that
            log.exception("the rolling backup of %s failed", self.folder)
            return None
        self._last = time.monotonic()
        self._changes_since = 0
        return path


def restore(project_folder: Path, backup: Backup) -> Path:
    """Put ``backup`` in place of the project's database; the replaced file is kept beside it.

    The current file (damaged or not) is moved to ``labels.sqlite.replaced-<time>``,
    never deleted. The project must not be open.
    """
    from labelassist.project import STORE_FILE

    db = project_folder / STORE_FILE
    _check_backup(backup.path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    # A rename onto an existing name replaces it: never let a second restore in the same second
    # (or after the clock went back) overwrite the file an earlier restore kept.
    base, n = stamp, 1
    while any(db.with_name(f"{STORE_FILE}{s}.replaced-{stamp}").exists() for s in ("", "-wal", "-shm")):
        n += 1
        stamp = f"{base}-{n}"
    if db.exists():
        db.rename(db.with_name(f"{STORE_FILE}.replaced-{stamp}"))
    for suffix in ("-wal", "-shm"):
        side = db.with_name(STORE_FILE + suffix)
        if side.exists():
            side.rename(side.with_name(f"{side.name}.replaced-{stamp}"))
    tmp = db.with_name(f".{STORE_FILE}.restoring")
    shutil.copy2(backup.path, tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, db)
    fsync_dir(project_folder)
    return db
