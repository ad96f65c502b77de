"""The label store: :class:`Store`, what a project's label database keeps and how it is read.

The connection under it (opening, the guard of the POSIX lock rule, atomic writes, the event
log) is :class:`~labelassist.store.connection.StoreConnection`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from labelassist.errors import StoreError
from labelassist.maskcodec import CODEC, decode_delta, encode_delta, encode_mask
from labelassist.store.connection import StoreConnection
from labelassist.store.records import (
    _LABEL_COLUMNS,
    _OPTIONAL_SAMPLE_COLUMNS,
    _SAMPLE_COLUMNS,
    LabelVersion,
    Sample,
    current_user,
    utc_now,
)

log = logging.getLogger(__name__)


class Store(StoreConnection):
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

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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

    def latest_labels(self, newest: int | None = None) -> Iterator[tuple[Sample, LabelVersion]]:
        """(sample, newest label version) for every labelled sample, in sequence/frame order; with
        ``newest``, only the samples of the ``newest`` most recent label versions, newest first."""
        query = (
            f"SELECT {', '.join('s.' + c for c in _SAMPLE_COLUMNS)}, {', '.join('l.' + c for c in _LABEL_COLUMNS)}"
            " FROM samples s JOIN labels l ON l.id = (SELECT max(id) FROM labels WHERE sample_id = s.id)"
        )
        params: tuple = ()
        if newest is None:
            query += " ORDER BY s.sequence, s.frame, s.id"
        else:
            query += " ORDER BY l.id DESC LIMIT ?"
            params = (int(newest),)
        n = len(_SAMPLE_COLUMNS)
        for row in self.conn.execute(query, params):
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

