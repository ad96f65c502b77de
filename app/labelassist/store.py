"""The label store: one SQLite file per project, written through sqlite-utils.

What it keeps
-------------
``samples``
    The images (or pages of a stack, frames of a video) of the project: where
    the file is (relative to the project where possible), its content hash,
    size, dtype, channels, sequence id and frame index.
``labels``
    Label versions, append-only: a trigger refuses UPDATE and DELETE, so
    saving a label can never overwrite an earlier one. Each version keeps the
    mask (bit-packed and deflated, lossless), author, source (``manual``,
    ``import``, ``prelabel:otsu``...), parent version, seconds spent, strokes.
``flags``
    The user's cherry-pick flags (relevant / not now) per sample.
``features``
    Cached feature vectors for the selector, per sample and feature kind.
``events``
    Who did what, when, with which assistance.
``journal``
    Finished strokes of the mask being edited, as sparse deltas, written before
    the next stroke starts; replayed after a crash, cleared when the label is saved.
``ui_state``
    Where the user was (sample, zoom, tool), so the next start resumes there.

Durability: WAL journal, ``synchronous=FULL`` (every commit is fsynced before
it returns), foreign keys on, ``PRAGMA integrity_check`` on open, and the
schema version in ``PRAGMA user_version`` with forward-only migrations.

The POSIX lock rule
-------------------
Never open ``labels.sqlite``, its ``-wal`` or its ``-shm`` with plain file I/O (``open``,
``shutil.copy``, hashing...) in a process that may hold an SQLite connection to it. On POSIX,
closing *any* descriptor of a file drops *every* advisory lock the process holds on it, SQLite's
included (SQLite's "How To Corrupt An SQLite Database File", 2.2). Another process then sees no
reader, checkpoints and deletes the ``-wal``, and this process goes on committing into a deleted
file: saves acknowledged and then gone after a crash. SQLite's own connections in one process
share their locks, so reading through SQLite (``mode=ro``, ``immutable=1``, the backup API) is
safe; ``os.stat`` opens nothing and is safe. As a last line, :meth:`Store.writing` compares the
database and ``-wal`` files with the ones it opened, before a write and again after the commit,
and raises instead of reporting a save that went into a file nobody will read.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import shutil
import sqlite3
import stat
import tempfile
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from labelassist.errors import StoreError
from labelassist.maskcodec import CODEC, decode_delta, decode_mask, encode_delta, encode_mask

log = logging.getLogger(__name__)

SQLITE_HEADER = b"SQLite format 3\x00"
STORE_NAME = "labels.sqlite"

# Connections whose files were taken away while open (see Store._check_files): never closed.
_ABANDONED: list[sqlite3.Connection] = []


def _migrate_1(db: sqlite_utils.Database) -> None:
    """Schema 1: samples, labels (append-only), flags, features, events."""
    db.execute(
        """
        CREATE TABLE samples (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,          -- POSIX path, relative to the project folder where possible
            page INTEGER NOT NULL DEFAULT 0,  -- page of a TIFF stack or frame of a video; 0 otherwise
            name TEXT NOT NULL,          -- display and export name, relative to the import root
            hash TEXT NOT NULL,          -- sha256 of the whole file: finds moved files again
            file_size INTEGER NOT NULL,
            height INTEGER NOT NULL,
            width INTEGER NOT NULL,
            dtype TEXT NOT NULL,
            channels INTEGER NOT NULL,
            sequence TEXT NOT NULL,
            frame INTEGER NOT NULL,
            added_at TEXT NOT NULL,
            UNIQUE (hash, page)
        )"""
    )
    db.execute("CREATE INDEX samples_sequence ON samples (sequence, frame)")
    db.execute(
        """
        CREATE TABLE labels (
            id INTEGER PRIMARY KEY,
            sample_id INTEGER NOT NULL REFERENCES samples (id),
            parent_id INTEGER REFERENCES labels (id),
            created_at TEXT NOT NULL,
            author TEXT NOT NULL,
            source TEXT NOT NULL,
            codec TEXT NOT NULL,
            height INTEGER NOT NULL,
            width INTEGER NOT NULL,
            mask BLOB NOT NULL,
            area INTEGER NOT NULL,       -- foreground pixels
            seconds REAL NOT NULL DEFAULT 0,
            strokes INTEGER NOT NULL DEFAULT 0,
            note TEXT
        )"""
    )
    db.execute("CREATE INDEX labels_sample ON labels (sample_id, id)")
    db.execute(
        """CREATE TRIGGER labels_append_only_update BEFORE UPDATE ON labels
           BEGIN SELECT RAISE(ABORT, 'label versions are append-only'); END"""
    )
    db.execute(
        """CREATE TRIGGER labels_append_only_delete BEFORE DELETE ON labels
           BEGIN SELECT RAISE(ABORT, 'label versions are append-only'); END"""
    )
    db.execute(
        """
        CREATE TABLE flags (
            sample_id INTEGER PRIMARY KEY REFERENCES samples (id),
            relevant INTEGER NOT NULL CHECK (relevant IN (0, 1)),
            author TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE features (
            sample_id INTEGER NOT NULL REFERENCES samples (id),
            kind TEXT NOT NULL,
            dim INTEGER NOT NULL,
            data BLOB NOT NULL,          -- float32, little-endian
            computed_at TEXT NOT NULL,
            PRIMARY KEY (sample_id, kind)
        )"""
    )
    db.execute(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            sample_id INTEGER REFERENCES samples (id),
            label_id INTEGER REFERENCES labels (id),
            assistance TEXT,
            details TEXT                 -- JSON
        )"""
    )
    db.execute("CREATE INDEX events_at ON events (at)")


def _migrate_2(db: sqlite_utils.Database) -> None:
    """Schema 2: the stroke journal (unsaved edits survive a crash) and the UI state to resume."""
    db.execute(
        """
        CREATE TABLE journal (
            id INTEGER PRIMARY KEY,
            sample_id INTEGER NOT NULL REFERENCES samples (id),
            base_label_id INTEGER REFERENCES labels (id),  -- the version the edit started from
            at TEXT NOT NULL,
            kind TEXT NOT NULL,          -- stroke, erase, fill, prelabel, undo, redo, clear...
            delta BLOB NOT NULL          -- maskcodec.encode_delta: changed pixels and new values
        )"""
    )
    db.execute("CREATE INDEX journal_sample ON journal (sample_id, id)")
    db.execute("CREATE TABLE ui_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _migrate_3(db: sqlite_utils.Database) -> None:
    """Schema 3: each label version keeps its inspection score and whether it was saved despite a warning."""
    db.execute("ALTER TABLE labels ADD COLUMN score REAL")  # γ(y) at save time; NULL when nothing was checked
    db.execute("ALTER TABLE labels ADD COLUMN warned INTEGER NOT NULL DEFAULT 0")


def _migrate_4(db: sqlite_utils.Database) -> None:
    """Schema 4: each sample keeps its file's modification time, so a file replaced in place is noticed.

    NULL for samples imported before: their hash is checked instead (once per file and process).
    """
    db.execute("ALTER TABLE samples ADD COLUMN mtime_ns INTEGER")


# Forward migrations: MIGRATIONS[k] brings schema k to k + 1. Never edit a shipped one; append.
MIGRATIONS = [_migrate_1, _migrate_2, _migrate_3, _migrate_4]
SCHEMA_VERSION = len(MIGRATIONS)


def utc_now() -> str:
    """Current time as ISO 8601 UTC with milliseconds (sortable as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def current_user() -> str:
    """The operating-system user, the default author of labels and events."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some kiosk environments
        return "unknown"


@dataclass(frozen=True)
class Sample:
    """One image to label: a single image file, a page of a stack or a frame of a video."""

    id: int
    path: str
    page: int
    name: str
    hash: str
    file_size: int
    height: int
    width: int
    dtype: str
    channels: int
    sequence: str
    frame: int
    added_at: str
    mtime_ns: int | None = None  # the file's modification time at import (None: imported before schema 4)


# Columns a new sample may leave out.
_OPTIONAL_SAMPLE_COLUMNS = {"id", "added_at", "mtime_ns"}


class DamagedLabelError(StoreError):
    """A stored label version whose mask blob no longer decodes."""


@dataclass(frozen=True)
class LabelVersion:
    """One saved version of a sample's label. ``mask`` is decoded lazily."""

    id: int
    sample_id: int
    parent_id: int | None
    created_at: str
    author: str
    source: str
    height: int
    width: int
    area: int
    seconds: float
    strokes: int
    note: str | None
    codec: str
    blob: bytes
    score: float | None = None
    warned: bool = False

    @property
    def mask(self) -> np.ndarray:
        """The label as a ``(height, width)`` bool array."""
        if self.codec != CODEC:
            raise StoreError(f"label version {self.id} uses an unknown mask encoding {self.codec!r}")
        try:
            return decode_mask(self.blob, self.height, self.width)
        except (zlib.error, ValueError) as exc:
            # Disk damage inside a blob (integrity_check does not look into blobs): a plain error
            # naming the version, never a zlib message, wherever the mask is read.
            raise DamagedLabelError(
                f"label version {self.id} is damaged (its stored mask no longer decompresses); earlier "
                "versions are kept, and 'labelassist restore' puts a backup back") from exc


_SAMPLE_COLUMNS = [f for f in Sample.__dataclass_fields__]
_LABEL_COLUMNS = [
    "id", "sample_id", "parent_id", "created_at", "author", "source", "height", "width", "area",
    "seconds", "strokes", "note", "codec", "mask", "score", "warned",
]


def _plain_reason(exc: sqlite3.Error) -> str:
    """Translate an SQLite error into words a biologist can act on."""
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text:
        return "the project folder is read-only"
    if "full" in text:
        return "the disk is full"
    if "locked" in text or "busy" in text:
        return "another program is using the project"
    if "disk i/o" in text or "unable to open" in text:
        return "the disk could not be written (was it removed, full or read-only?)"
    if "not a database" in text or "malformed" in text:
        return "the database file is damaged"
    return str(exc)


class Store:
    """The project's label database (``labels.sqlite``).

    Parameters
    ----------
    path : path-like
        The SQLite file.
    create : bool
        Create the file if it does not exist; otherwise a missing file is an error.
    check : bool
        Run ``PRAGMA integrity_check`` on open (default True).
    """

    def __init__(self, path: str | Path, create: bool = False, check: bool = True):
        self.path = Path(path)
        exists = self.path.exists()
        if not exists and not create:
            raise StoreError(f"{self.path} does not exist: this folder has no label database")
        if exists:
            _refuse_empty(self.path)
        # On read-only media (a write-protected USB stick, a read-only mount) SQLite cannot
        # create the WAL index: reading works, writing says why (see _connect_read_only).
        self.read_only = exists and not (os.access(self.path.parent, os.W_OK) and os.access(self.path, os.W_OK))
        self._snapshot: Path | None = None
        try:
            if self.read_only:
                conn = self._connect_read_only()
            else:
                conn = sqlite3.connect(str(self.path), timeout=10.0, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path} could not be opened: {_plain_reason(exc)}") from exc
        self.conn = conn
        self._deferred: list[tuple] = []
        self._deferred_lock = threading.Lock()
        self._identity: tuple | None = None
        self._lost: str | None = None
        self._memory_features: dict[str, dict[int, np.ndarray]] = {}
        try:
            self.db = sqlite_utils.Database(conn, execute_plugins=False)
            if check:
                self._integrity_check()
            self._refuse_newer_schema()  # before any pragma that could write to the file
            self._refuse_foreign()
            if self.read_only:
                if self.schema_version < SCHEMA_VERSION:
                    raise StoreError(f"{self.path} needs an update but the project folder is read-only")
            else:
                self._configure()
                self._migrate()
                identity = self._files_identity()
                # Some network file systems report no inode numbers (0): there the guard cannot
                # tell files apart and stays off rather than refusing every save.
                self._identity = identity if all(i is not None and i[1] != 0 for i in identity) else None
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "not a database" in str(exc).lower():
                raise StoreError(
                    f"{self.path} is not a label database (not an SQLite file); nothing was changed") from exc
            raise StoreError(f"{self.path} could not be opened: {_plain_reason(exc)}") from exc
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"{self.path} could not be opened: {_plain_reason(exc)}") from exc
        except StoreError:
            conn.close()
            raise

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only connection that still sees every commit, also those only in the ``-wal``.

        ``immutable=1`` ignores the ``-wal`` file, so labels committed just before a power cut (not
        yet checkpointed into the main file) would be silently missing: it is used only when there
        is no ``-wal``. With one, ``mode=ro`` reads it through the ``-shm`` index; where SQLite
        cannot do that on this medium (no ``-shm`` and none can be created), the database and its
        ``-wal`` are copied to a private temporary folder and read there. No connection of this
        process is open on them at that point (this store has none yet), so the copy's plain file
        I/O cannot drop anyone's locks (see docs/reliability.md, "the POSIX lock rule").
        """
        wal = Path(str(self.path) + "-wal")
        if not _size(wal):
            uri = self.path.absolute().as_uri() + "?immutable=1"
            return sqlite3.connect(uri, uri=True, timeout=10.0, check_same_thread=False)
        try:
            conn = sqlite3.connect(self.path.absolute().as_uri() + "?mode=ro", uri=True, timeout=10.0,
                                   check_same_thread=False)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error as exc:
            log.info("%s: read-only WAL cannot be read in place (%s); reading a private copy", self.path, exc)
        folder = Path(tempfile.mkdtemp(prefix="labelassist-ro-"))
        self._snapshot = folder
        for suffix in ("", "-wal"):
            shutil.copyfile(str(self.path) + suffix, folder / (STORE_NAME + suffix))
        # Opened read-write in the private folder: SQLite replays the -wal into the copy there.
        conn = sqlite3.connect(str(folder / STORE_NAME), timeout=10.0, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn

    # -- opening ----------------------------------------------------------------------------
    def _integrity_check(self) -> None:
        rows = [r[0] for r in self.conn.execute("PRAGMA integrity_check").fetchall()]
        if rows != ["ok"]:
            log.error("integrity_check of %s: %s", self.path, rows)
            raise StoreError(
                f"{self.path} is damaged (integrity check: {rows[0]}); restore a backup, nothing was changed"
            )

    def _configure(self) -> None:
        self.conn.execute("PRAGMA busy_timeout = 10000")
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            log.warning("journal mode of %s is %s, not WAL", self.path, mode)
        # FULL: each commit is on disk before save() returns (power cuts lose nothing saved).
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA foreign_keys = ON")

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _refuse_newer_schema(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer Label Assistant (database schema {version}; "
                f"this version knows up to {SCHEMA_VERSION}); update the app, nothing was changed"
            )

    def _migrate(self) -> None:
        self._refuse_newer_schema()
        version = self.schema_version
        while version < SCHEMA_VERSION:
            with self.db.atomic():
                MIGRATIONS[version](self.db)
                version += 1
                # user_version is part of the same transaction: a crash leaves the old schema whole.
                self.conn.execute(f"PRAGMA user_version = {version}")
            log.info("migrated %s to schema %d", self.path, version)

    def _refuse_foreign(self) -> None:
        """Refuse an SQLite file of another program (schema 0 with tables that are not ours).

        Migrating it would add our tables to someone else's database, so it is refused untouched.
        A schema-0 file with no tables is ours, created but not yet migrated (the first migration
        and its ``user_version`` are one transaction).
        """
        if self.schema_version != 0:
            return
        tables = [r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        if tables:
            raise StoreError(
                f"{self.path} is an SQLite database of another program (it has tables such as "
                f"{tables[0]!r} but no label-database version); nothing was changed")

    # -- the guard against a lost write-ahead log --------------------------------------------
    def _files_identity(self) -> tuple:
        """(device, inode) of the database file and of its ``-wal``, from ``os.stat`` (no open).

        While this connection is open, SQLite never deletes or replaces either file; if another
        program did (possible only when this process lost its POSIX locks, see the module notes),
        this connection would go on committing into a file no one else will ever read.
        """
        return (_identity(self.path), _identity(Path(str(self.path) + "-wal")))

    def _check_files(self, saved: bool) -> None:
        """Raise a loud StoreError when the files this connection writes to are no longer the
        files at their paths; every later write is refused as well."""
        if self._identity is None or self.read_only:
            return
        if self._lost is None and self._files_identity() != self._identity:
            self._lost = "the label database's files were removed or replaced by another program"
            log.critical("%s: %s while this process had it open (identity %s, now %s)", self.path,
                         self._lost, self._identity, self._files_identity())
            self._rescue()
            _abandon(self.conn)
        if self._lost is not None:
            done = ("this save may not be on disk" if saved else "nothing was changed")
            raise StoreError(
                f"could not save safely: {self._lost} while the project was open, so {done}. "
                "Close the app and open the project again"
                + (f" (a copy of everything saved is in {self._rescued.name})" if self._rescued else ""))

    _rescued: Path | None = None

    def _rescue(self) -> None:
        """Copy what this connection sees (its orphaned log included) beside the database."""
        target = self.path.with_name(f"{self.path.name}.rescued-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}")
        try:
            dest = sqlite3.connect(target)
            try:
                self.conn.backup(dest)
                dest.execute("PRAGMA journal_mode = DELETE")
            finally:
                dest.close()
            self._rescued = target
            log.critical("%s: everything this connection saw was copied to %s", self.path, target)
        except (OSError, sqlite3.Error):
            log.exception("%s: the rescue copy could not be written", self.path)

    def close(self) -> None:
        """Write deferred events and close the connection (SQLite checkpoints the WAL)."""
        if self._lost is not None:
            # Closing would checkpoint the orphaned log into the main file and then delete the
            # -wal at its path, which is now another connection's: it stays open until the
            # process ends (see _abandon).
            return
        try:
            self.flush_events()
        except StoreError:
            log.warning("%d deferred events of %s were lost", len(self._deferred), self.path)
        self.conn.close()
        if self._snapshot is not None:
            shutil.rmtree(self._snapshot, ignore_errors=True)
            self._snapshot = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def writing(self, what: str) -> Iterator[sqlite_utils.Database]:
        """One atomic write; SQLite errors become a StoreError saying what failed and why.

        Events deferred with :meth:`defer_event` are written in the same transaction.
        """
        if self.read_only:
            raise StoreError(f"could not save {what}: the project folder is read-only; nothing was changed")
        self._check_files(saved=False)
        with self._deferred_lock:
            deferred, self._deferred = self._deferred, []
        try:
            with self.db.atomic():
                for event in deferred:
                    self._log(*event)
                yield self.db
            # Committed and fsynced: before the caller reports it saved, make sure it went into
            # the files everyone else reads (the guard of docs/reliability.md).
            self._check_files(saved=True)
        except sqlite3.Error as exc:
            with self._deferred_lock:
                self._deferred[:0] = deferred  # not written: keep them for the next try
            log.exception("writing %s to %s failed", what, self.path)
            raise StoreError(f"could not save {what}: {_plain_reason(exc)}; nothing was changed") from exc

    # -- samples ----------------------------------------------------------------------------
    def add_sample(self, **fields: Any) -> int:
        """Insert one sample and return its id (see :class:`Sample` for the fields)."""
        return self.add_samples([fields])[0]

    def add_samples(self, rows: list[dict[str, Any]], what: str = "the image list") -> list[int]:
        """Insert several samples in one transaction (all or none); returns their ids."""
        with self.writing(what):
            return [self._insert_sample(dict(fields)) for fields in rows]

    def _insert_sample(self, fields: dict[str, Any]) -> int:
        fields.setdefault("added_at", utc_now())
        missing = [c for c in _SAMPLE_COLUMNS if c not in _OPTIONAL_SAMPLE_COLUMNS and c not in fields]
        if missing:
            raise ValueError(f"sample is missing {missing}")
        cur = self.conn.execute(
            f"INSERT INTO samples ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})",
            list(fields.values()),
        )
        return int(cur.lastrowid)

    def sample(self, sample_id: int) -> Sample:
        row = self.conn.execute(
            f"SELECT {', '.join(_SAMPLE_COLUMNS)} FROM samples WHERE id = ?", (sample_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"there is no sample {sample_id} in this project")
        return Sample(*row)

    def samples(self, order: str = "sequence, frame, id") -> list[Sample]:
        """All samples, by default in sequence and frame order."""
        rows = self.conn.execute(f"SELECT {', '.join(_SAMPLE_COLUMNS)} FROM samples ORDER BY {order}")
        return [Sample(*r) for r in rows]

    def sample_ids(self) -> list[int]:
        """The id of every sample (no other column is read)."""
        return [r[0] for r in self.conn.execute("SELECT id FROM samples")]

    def sample_at(self, sequence: str, frame: int) -> int | None:
        """The id of the sample at ``frame`` of ``sequence``, or None when there is none."""
        row = self.conn.execute("SELECT id FROM samples WHERE sequence = ? AND frame = ?",
                                (sequence, frame)).fetchone()
        return None if row is None else int(row[0])

    def shared_file_stamps(self) -> set[tuple[int, int]]:
        """(file size, modification time) pairs recorded for more than one file of the project."""
        rows = self.conn.execute(
            "SELECT file_size, mtime_ns FROM samples WHERE mtime_ns IS NOT NULL"
            " GROUP BY file_size, mtime_ns HAVING count(DISTINCT path) > 1")
        return {(int(size), int(mtime)) for size, mtime in rows}

    def find_sample(self, file_hash: str, page: int = 0) -> Sample | None:
        """The sample with this content hash and page, if the project has it."""
        row = self.conn.execute(
            f"SELECT {', '.join(_SAMPLE_COLUMNS)} FROM samples WHERE hash = ? AND page = ?", (file_hash, page)
        ).fetchone()
        return Sample(*row) if row else None

    def set_sample_path(self, sample_id: int, path: str, actor: str | None = None) -> None:
        """Point a sample at a new file location (after ``relink``); logged."""
        with self.writing("the new image location"):
            old = self.conn.execute("SELECT path FROM samples WHERE id = ?", (sample_id,)).fetchone()
            self.conn.execute("UPDATE samples SET path = ? WHERE id = ?", (path, sample_id))
            self._log(actor, "relink", sample_id=sample_id, details={"from": old[0] if old else None, "to": path})

    def set_sample_paths(self, paths: dict[int, str], what: str = "the image locations") -> None:
        """Point many samples at new file locations in one transaction (not logged: for a
        project's working copy, whose samples point back at the original images)."""
        with self.writing(what):
            self.conn.executemany("UPDATE samples SET path = ? WHERE id = ?",
                                  [(path, sid) for sid, path in paths.items()])

    def renumber_frames(self, sequences: set[str] | None = None, key=None) -> None:
        """Give each sequence frames 0..n-1 in ``key`` order.

        ``key`` receives rows ``(id, sequence, frame, path, page)``; the default keeps
        the current frame order.
        """
        with self.writing("the frame order"):
            rows = self.conn.execute("SELECT id, sequence, frame, path, page FROM samples").fetchall()
            by_seq: dict[str, list] = {}
            for row in rows:
                if sequences is None or row[1] in sequences:
                    by_seq.setdefault(row[1], []).append(row)
            for members in by_seq.values():
                members.sort(key=key or (lambda r: (r[2], r[3], r[4])))
                for frame, row in enumerate(members):
                    if row[2] != frame:
                        self.conn.execute("UPDATE samples SET frame = ? WHERE id = ?", (frame, row[0]))

    # -- labels -----------------------------------------------------------------------------
    def save_label(
        self,
        sample_id: int,
        mask: np.ndarray,
        *,
        source: str,
        author: str | None = None,
        parent_id: int | None = None,
        seconds: float = 0.0,
        strokes: int = 0,
        note: str | None = None,
        assistance: str | None = None,
        score: float | None = None,
        warned: bool = False,
    ) -> int:
        """Append a new label version of a sample and return its id.

        Earlier versions are never touched. The write and its event are one
        transaction, fsynced before this returns.

        Parameters
        ----------
        sample_id : int
        mask : ndarray of bool, (height, width) of the sample
        source : str
            Where the label came from: ``manual``, ``import``, ``prelabel:otsu``...
        author : str, optional
            Defaults to the operating-system user.
        parent_id : int, optional
            The version this one was derived from (None for the first).
        seconds : float
            Time the annotator spent on this version, in seconds.
        strokes : int
            Number of pen/finger strokes that made it.
        assistance : str, optional
            Which assistance was used (pre-label method, post-processing...), for the event log.
        score : float, optional
            Inspection γ(y) of this mask when it was saved.
        warned : bool
            True when the annotator saved it despite an inspection warning.
        """
        mask = np.asarray(mask)
        sample = self.sample(sample_id)
        if mask.shape != (sample.height, sample.width):
            raise StoreError(
                f"the label is {mask.shape[1] if mask.ndim > 1 else '?'}x{mask.shape[0]} pixels but image "
                f"{sample.name} is {sample.width}x{sample.height}; nothing was saved"
            )
        mask = mask.astype(bool, copy=False)
        author = author or current_user()
        blob = encode_mask(mask)
        with self.writing(f"the label of {sample.name}"):
            cur = self.conn.execute(
                "INSERT INTO labels (sample_id, parent_id, created_at, author, source, codec, height, width,"
                " mask, area, seconds, strokes, note, score, warned)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sample_id, parent_id, utc_now(), author, source, CODEC, sample.height, sample.width,
                    blob, int(np.count_nonzero(mask)), float(seconds), int(strokes), note,
                    None if score is None else float(score), int(bool(warned)),
                ),
            )
            label_id = int(cur.lastrowid)
            # The saved version now holds what the journal held: both in one transaction.
            self.conn.execute("DELETE FROM journal WHERE sample_id = ?", (sample_id,))
            self._log(author, "save_label", sample_id=sample_id, label_id=label_id, assistance=assistance,
                      details={"source": source, "seconds": round(float(seconds), 3), "strokes": int(strokes)})
        return label_id

    def _label_query(self, where: str, params: tuple) -> list[LabelVersion]:
        rows = self.conn.execute(f"SELECT {', '.join(_LABEL_COLUMNS)} FROM labels WHERE {where}", params)
        return [LabelVersion(*r[:13], blob=r[13], score=r[14], warned=bool(r[15])) for r in rows]

    def latest_label(self, sample_id: int) -> LabelVersion | None:
        """The newest label version of a sample, or None if it has none."""
        found = self._label_query("sample_id = ? ORDER BY id DESC LIMIT 1", (sample_id,))
        return found[0] if found else None

    def label_history(self, sample_id: int) -> list[LabelVersion]:
        """Every version of a sample's label, oldest first."""
        return self._label_query("sample_id = ? ORDER BY id", (sample_id,))

    def label(self, label_id: int) -> LabelVersion:
        found = self._label_query("id = ?", (label_id,))
        if not found:
            raise StoreError(f"there is no label version {label_id} in this project")
        return found[0]

    def latest_labels(self) -> Iterator[tuple[Sample, LabelVersion]]:
        """(sample, newest label version) for every labelled sample, in sequence/frame order."""
        query = (
            f"SELECT {', '.join('s.' + c for c in _SAMPLE_COLUMNS)}, {', '.join('l.' + c for c in _LABEL_COLUMNS)}"
            " FROM samples s JOIN labels l ON l.id = (SELECT max(id) FROM labels WHERE sample_id = s.id)"
            " ORDER BY s.sequence, s.frame, s.id"
        )
        n = len(_SAMPLE_COLUMNS)
        for row in self.conn.execute(query):
            yield Sample(*row[:n]), LabelVersion(*row[n : n + 13], blob=row[n + 13], score=row[n + 14],
                                                 warned=bool(row[n + 15]))

    def label_states(self) -> dict[int, bool]:
        """sample id -> whether its newest label was saved despite a warning (no mask decoding)."""
        rows = self.conn.execute(
            "SELECT sample_id, warned FROM labels WHERE id IN (SELECT max(id) FROM labels GROUP BY sample_id)"
        )
        return {r[0]: bool(r[1]) for r in rows}

    def labelled_ids(self) -> set[int]:
        """Ids of samples with at least one label version."""
        return {r[0] for r in self.conn.execute("SELECT DISTINCT sample_id FROM labels")}

    # -- stroke journal and UI state ---------------------------------------------------------
    def journal_append(self, sample_id: int, kind: str, indices: np.ndarray, values: np.ndarray,
                       base_label_id: int | None = None) -> int:
        """Record one finished edit of a sample's unsaved mask; on disk when this returns."""
        blob = encode_delta(indices, values)
        with self.writing("the last stroke"):
            cur = self.conn.execute(
                "INSERT INTO journal (sample_id, base_label_id, at, kind, delta) VALUES (?, ?, ?, ?, ?)",
                (sample_id, base_label_id, utc_now(), kind, blob),
            )
            return int(cur.lastrowid)

    def journal(self, sample_id: int) -> list[tuple[str, int | None, np.ndarray, np.ndarray]]:
        """The unsaved edits of a sample, oldest first: ``(kind, base_label_id, indices, values)``."""
        rows = self.conn.execute(
            "SELECT kind, base_label_id, delta FROM journal WHERE sample_id = ? ORDER BY id", (sample_id,)
        )
        return [(kind, base, *decode_delta(blob)) for kind, base, blob in rows]

    def journal_samples(self) -> list[int]:
        """Samples with unsaved edits in the journal."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT sample_id FROM journal ORDER BY sample_id")]

    def journal_clear(self, sample_id: int) -> None:
        """Forget a sample's unsaved edits (after saving, or when the user discards them)."""
        with self.writing("the journal"):
            self.conn.execute("DELETE FROM journal WHERE sample_id = ?", (sample_id,))

    def set_state(self, key: str, value: Any) -> None:
        """Remember a piece of UI state (JSON) so the next start resumes where this one stopped."""
        with self.writing("the screen state"):
            self.conn.execute(
                "INSERT INTO ui_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def get_state(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM ui_state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- cherry-pick flags -------------------------------------------------------------------
    def set_flag(self, sample_id: int, relevant: bool | None, author: str | None = None) -> None:
        """Flag a sample as relevant (True), not now (False), or clear the flag (None)."""
        author = author or current_user()
        with self.writing("the flag"):
            if relevant is None:
                self.conn.execute("DELETE FROM flags WHERE sample_id = ?", (sample_id,))
            else:
                self.conn.execute(
                    "INSERT INTO flags (sample_id, relevant, author, updated_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (sample_id) DO UPDATE SET relevant = excluded.relevant,"
                    " author = excluded.author, updated_at = excluded.updated_at",
                    (sample_id, int(bool(relevant)), author, utc_now()),
                )
            self._log(author, "flag", sample_id=sample_id, details={"relevant": relevant})

    def flags(self) -> dict[int, bool]:
        """sample id -> relevant (True) / not now (False), for flagged samples only."""
        return {r[0]: bool(r[1]) for r in self.conn.execute("SELECT sample_id, relevant FROM flags")}

    # -- cached features ---------------------------------------------------------------------
    def put_features(self, kind: str, vectors: dict[int, np.ndarray]) -> None:
        """Cache feature vectors (float32) of ``kind`` for several samples at once."""
        now = utc_now()
        rows = []
        for sample_id, vec in vectors.items():
            vec = np.ascontiguousarray(vec, dtype="<f4").ravel()
            rows.append((int(sample_id), kind, int(vec.size), vec.tobytes(), now))
        if not self.read_only and self._lost is None:
            try:
                with self.writing("the cached features"):
                    self.conn.executemany(
                        "INSERT OR REPLACE INTO features (sample_id, kind, dim, data, computed_at)"
                        " VALUES (?, ?, ?, ?, ?)", rows)
                return
            except StoreError as exc:
                log.warning("features kept in memory only: %s", exc)
        # A cache, not a label: on read-only media (or a full disk) it lives in memory for this
        # session, so the selector still works there (issue 12, item 14).
        memory = self._memory_features.setdefault(kind, {})
        for sample_id, _, _, data, _ in rows:
            memory[sample_id] = np.frombuffer(data, dtype="<f4")

    def get_features(self, kind: str) -> dict[int, np.ndarray]:
        """sample id -> cached float32 vector of ``kind``."""
        found = {
            r[0]: np.frombuffer(r[1], dtype="<f4")
            for r in self.conn.execute("SELECT sample_id, data FROM features WHERE kind = ?", (kind,))
        }
        found.update(self._memory_features.get(kind, {}))
        return found

    # -- events ------------------------------------------------------------------------------
    def _log(self, actor, action, sample_id=None, label_id=None, assistance=None, details=None, at=None) -> int:
        cur = self.conn.execute(
            "INSERT INTO events (at, actor, action, sample_id, label_id, assistance, details)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at or utc_now(), actor or current_user(), action, sample_id, label_id, assistance,
             json.dumps(details, sort_keys=True) if details is not None else None),
        )
        return int(cur.lastrowid)

    def defer_event(self, action: str, *, actor: str | None = None, sample_id: int | None = None,
                    label_id: int | None = None, assistance: str | None = None, **details: Any) -> None:
        """Queue an event for the next write (any thread), for events not worth an fsync of their own."""
        at = utc_now()
        with self._deferred_lock:
            self._deferred.append((actor, action, sample_id, label_id, assistance, details or None, at))

    def flush_events(self) -> None:
        """Write the deferred events now (the session does this when it closes)."""
        if self._deferred and not self.read_only:
            with self.writing("the event log"):
                pass

    def log_event(self, action: str, *, actor: str | None = None, sample_id: int | None = None,
                  label_id: int | None = None, assistance: str | None = None, **details: Any) -> int:
        """Record that ``actor`` did ``action`` (with which assistance and any details)."""
        with self.writing("the event log"):
            return self._log(actor, action, sample_id, label_id, assistance, details or None)

    def events(self, action: str | None = None) -> list[dict[str, Any]]:
        """The event log, oldest first, optionally only one action."""
        where, params = ("WHERE action = ?", (action,)) if action else ("", ())
        rows = self.conn.execute(
            f"SELECT id, at, actor, action, sample_id, label_id, assistance, details FROM events {where} ORDER BY id",
            params,
        )
        keys = ["id", "at", "actor", "action", "sample_id", "label_id", "assistance", "details"]
        out = []
        for r in rows:
            event = dict(zip(keys, r))
            event["details"] = json.loads(event["details"]) if event["details"] else {}
            out.append(event)
        return out

    # -- summary -----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Numbers for ``labelassist status``."""
        one = lambda q: int(self.conn.execute(q).fetchone()[0])  # noqa: E731
        return {
            "samples": one("SELECT count(*) FROM samples"),
            "labelled": one("SELECT count(DISTINCT sample_id) FROM labels"),
            "sequences": one("SELECT count(DISTINCT sequence) FROM samples"),
            "label_versions": one("SELECT count(*) FROM labels"),
            "flagged": one("SELECT count(*) FROM flags"),
            "events": one("SELECT count(*) FROM events"),
        }


def _abandon(conn: sqlite3.Connection) -> None:
    """Make sure ``conn`` never checkpoints, not even when the interpreter shuts down.

    A connection whose ``-wal`` was deleted under it must never reach a checkpoint: closing it
    would copy its orphaned log into the *current* main file (overwriting pages other processes
    committed since) and delete the ``-wal`` at its path. So checkpoint-on-close is switched off
    (``SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE``), automatic checkpoints too, and the object is kept
    alive by a reference count that is never given back (a list entry alone is dropped at
    interpreter shutdown): the operating system closes its files when the process ends.
    """
    import ctypes

    try:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    except sqlite3.Error:
        pass
    if hasattr(conn, "setconfig"):  # Python 3.12+
        conn.setconfig(sqlite3.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, True)
    else:
        _no_checkpoint_on_close(conn)
    _ABANDONED.append(conn)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))


def _no_checkpoint_on_close(conn: sqlite3.Connection) -> None:
    """``sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL)`` for Python < 3.12.

    The ``sqlite3 *`` handle is the first field after the object header of CPython's connection
    object; the function comes from the SQLite library this process already uses.
    """
    import ctypes
    import ctypes.util
    import _sqlite3

    try:
        handle = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__).value
        lib = ctypes.CDLL(_sqlite3.__file__)
        if not hasattr(lib, "sqlite3_db_config"):
            lib = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
        lib.sqlite3_db_config.restype = ctypes.c_int
        done = lib.sqlite3_db_config(ctypes.c_void_p(handle), ctypes.c_int(1006), ctypes.c_int(1),
                                     ctypes.c_void_p(None))
        if done != 0:
            log.error("checkpoint-on-close could not be switched off (SQLite said %d)", done)
    except (OSError, AttributeError, TypeError, ValueError):
        log.exception("checkpoint-on-close could not be switched off")


def _size(path: Path) -> int:
    """Size of a file by ``os.stat`` (0 when missing): never opens it."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _refuse_empty(path: Path) -> None:
    """Refuse a 0-byte file (SQLite would take it for a new database) using ``os.stat`` only.

    The header of a non-empty file is checked by SQLite itself ("file is not a database"):
    opening the database file with plain file I/O is never safe while this process may hold a
    connection to it, because closing that descriptor drops every POSIX lock the process holds
    on the file, SQLite's included (docs/reliability.md, "the POSIX lock rule").
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise StoreError(f"{path} could not be read: {exc.strerror}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{path} is a folder, not a label database; nothing was changed")
    if st.st_size == 0:
        raise StoreError(f"{path} is empty (0 bytes), not a label database; nothing was changed")


def read_counts(store_path: Path) -> dict[str, int]:
    """``{"samples", "labelled", "schema"}`` of a label database, read without changing it.

    For a project that is *not* opened (Home lists every project on the tablet): no
    :class:`Store`, no lock, no migration, no pragma that writes, no event. The file is opened
    read-only through SQLite, never with plain file I/O (this process may have the same project
    open; see :func:`_refuse_empty`): ``immutable=1`` when no ``-wal`` file is beside it (nobody
    has it open in WAL mode: the main file holds everything committed, and nothing is created
    next to it), else ``mode=ro`` (its owner keeps ``-wal``/``-shm`` alive, so those already
    exist). A database of a newer schema gives its schema and zero counts. Raises sqlite3.Error
    or OSError.
    """
    if os.stat(store_path).st_size == 0:
        raise sqlite3.DatabaseError("file is not a database")
    wal = Path(str(store_path) + "-wal")
    mode = "mode=ro" if _identity(wal) is not None else "immutable=1"
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
