"""One guarded connection to a label database, the base of :class:`~labelassist.store.Store`.

Opening (read-only media, integrity check, a newer or a foreign schema refused, migrations),
the guard against a lost write-ahead log (the POSIX lock rule, see :mod:`labelassist.store`),
one atomic write at a time (with the events deferred to it), the event log, and closing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from labelassist.errors import StoreError
from labelassist.store.files import STORE_NAME, _abandon, _identity, _refuse_empty, _size
from labelassist.store.records import current_user, utc_now
from labelassist.store.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)


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


class StoreConnection:
    """The SQLite connection of a :class:`~labelassist.store.Store`, opened, guarded and closed.

    Parameters are those of :class:`~labelassist.store.Store`.
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
        program did (possible only when this process lost its POSIX locks, see the package notes
        of :mod:`labelassist.store`), this connection would go on committing into a file no one
        else will ever read.
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

    def copy_to(self, target: str | os.PathLike) -> None:
        """Write a consistent copy of what this connection sees to ``target``, one self-contained file.

        Through SQLite's online backup API (journal_mode DELETE in the copy), never as a file copy:
        a plain copy of a database open elsewhere is torn (database and -wal at different moments),
        and file I/O on it would drop this process's POSIX locks (the POSIX lock rule, in
        :mod:`labelassist.store`). The caller owns ``target`` (its fsync, rename and clean-up); errors are ``OSError`` or
        ``sqlite3.Error``.
        """
        dest = sqlite3.connect(target)
        try:
            self.conn.backup(dest)
            dest.execute("PRAGMA journal_mode = DELETE")
        finally:
            dest.close()

    _rescued: Path | None = None

    def _rescue(self) -> None:
        """Copy what this connection sees (its orphaned log included) beside the database."""
        target = self.path.with_name(f"{self.path.name}.rescued-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}")
        try:
            self.copy_to(target)
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

    def has_event(self, action: str, assistance: tuple[str, ...]) -> bool:
        """Whether the event log holds an ``action`` event with one of these ``assistance`` values."""
        marks = ",".join("?" * len(assistance))
        row = self.conn.execute(f"SELECT 1 FROM events WHERE action = ? AND assistance IN ({marks}) LIMIT 1",
                                (action, *assistance)).fetchone()
        return row is not None

    def events(self, action: str | None = None, newest: int | None = None) -> list[dict[str, Any]]:
        """The event log, oldest first, optionally only one action, and only the ``newest`` n."""
        where, params = ("WHERE action = ?", (action,)) if action else ("", ())
        query = f"SELECT id, at, actor, action, sample_id, label_id, assistance, details FROM events {where}"
        if newest is not None:
            query = f"SELECT * FROM ({query} ORDER BY id DESC LIMIT ?) ORDER BY id"
            params = params + (int(newest),)
        else:
            query += " ORDER BY id"
        rows = self.conn.execute(query, params)
        keys = ["id", "at", "actor", "action", "sample_id", "label_id", "assistance", "details"]
        out = []
        for r in rows:
            event = dict(zip(keys, r))
            event["details"] = json.loads(event["details"]) if event["details"] else {}
            out.append(event)
        return out
