"""What may touch the label database's files: ``os.stat`` only, or SQLite itself.

The POSIX lock rule (see :mod:`labelassist.store`) forbids plain file I/O on ``labels.sqlite``,
its ``-wal`` or its ``-shm`` in a process that may hold a connection to it. These helpers look at
the files without opening them, count a project that is not opened through a read-only SQLite
connection, and keep a connection whose files were taken away from ever checkpointing.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

from labelassist.errors import StoreError
from labelassist.store.schema import SCHEMA_VERSION

log = logging.getLogger(__name__)

SQLITE_HEADER = b"SQLite format 3\x00"
STORE_NAME = "labels.sqlite"

# Connections whose files were taken away while open (see Store._check_files): never closed.
_ABANDONED: list[sqlite3.Connection] = []


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
