"""The tables of the label database, created by forward-only migrations.

The schema version is ``PRAGMA user_version``; :class:`~labelassist.store.connection.StoreConnection`
runs each missing migration in one transaction with its ``user_version``.
"""

from __future__ import annotations

import sqlite_utils


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
