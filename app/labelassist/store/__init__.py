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

Modules
-------
==============  ==========================================================================
``schema``      the tables, created by forward migrations: ``MIGRATIONS``, ``SCHEMA_VERSION``
``records``     what a read returns: ``Sample``, ``LabelVersion`` (``DamagedLabelError``),
                ``utc_now``, ``current_user``
``files``       what may touch the database's files, ``os.stat`` only: ``STORE_NAME``,
                ``SQLITE_HEADER``, ``read_counts`` (Home's counts of a project not opened),
                and the connection abandoned when its files were taken away
``connection``  one guarded connection: opening (read-only media, integrity check, schema,
                migration), the guard against a lost write-ahead log, atomic writes, the
                event log, closing
``database``    :class:`Store`: samples, label versions, the stroke journal, UI state,
                flags, cached features, counts
==============  ==========================================================================
"""

from labelassist.store.database import Store
from labelassist.store.files import SQLITE_HEADER, STORE_NAME, read_counts
from labelassist.store.records import DamagedLabelError, LabelVersion, Sample, current_user, utc_now
from labelassist.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["Store", "Sample", "LabelVersion", "DamagedLabelError", "utc_now", "current_user",
           "STORE_NAME", "SQLITE_HEADER", "read_counts", "MIGRATIONS", "SCHEMA_VERSION"]
