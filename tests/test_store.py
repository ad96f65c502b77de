"""The label store: append-only versions, schema versions, refusal of foreign or damaged files."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelassist.errors import StoreError
from labelassist.images import read_mask
from labelassist.maskcodec import decode_mask, encode_mask
from labelassist.store import SCHEMA_VERSION, Store


def _sample_fields(h=388, w=520, **over):
    fields = dict(path="images/000.png", page=0, name="000.png", hash="ab" * 32, file_size=1234, height=h,
                  width=w, dtype="uint8", channels=1, sequence="/", frame=0)
    fields.update(over)
    return fields


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "labels.sqlite", create=True) as s:
        yield s


@pytest.fixture
def gt_mask(datasets):
    return read_mask(datasets / "scratch_assay" / "masks" / "000.png")


def test_new_store_is_wal_with_foreign_keys_and_current_schema(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.schema_version == SCHEMA_VERSION


def test_label_versions_are_append_only(store, gt_mask):
    sid = store.add_sample(**_sample_fields())
    first = store.save_label(sid, gt_mask, source="import", author="alice")
    edited = gt_mask.copy()
    edited[100:120, 100:140] = ~edited[100:120, 100:140]
    second = store.save_label(sid, edited, source="manual", author="bob", parent_id=first, seconds=12.5, strokes=3)
    history = store.label_history(sid)
    assert [v.id for v in history] == [first, second]
    assert np.array_equal(history[0].mask, gt_mask)
    assert np.array_equal(store.latest_label(sid).mask, edited)
    latest = store.latest_label(sid)
    assert (latest.author, latest.source, latest.parent_id, latest.seconds, latest.strokes) == (
        "bob", "manual", first, 12.5, 3)
    assert latest.area == int(edited.sum())
    # The database itself refuses to change or remove a saved version.
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.conn.execute("UPDATE labels SET author = 'mallory' WHERE id = ?", (first,))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.conn.execute("DELETE FROM labels WHERE id = ?", (first,))
    store.conn.rollback()
    assert np.array_equal(store.label(first).mask, gt_mask)
    saves = store.events("save_label")
    assert [e["label_id"] for e in saves] == [first, second]
    assert saves[1]["details"]["strokes"] == 3


def test_label_of_the_wrong_size_is_refused(store, gt_mask):
    sid = store.add_sample(**_sample_fields(h=100, w=100))
    with pytest.raises(StoreError, match="520x388 pixels but image 000.png is 100x100"):
        store.save_label(sid, gt_mask, source="manual")
    assert store.latest_label(sid) is None


def test_flags_features_and_counts(store):
    a = store.add_sample(**_sample_fields())
    b = store.add_sample(**_sample_fields(hash="cd" * 32, name="001.png", frame=1))
    store.set_flag(a, True)
    store.set_flag(b, False)
    store.set_flag(b, True)
    assert store.flags() == {a: True, b: True}
    store.set_flag(a, None)
    assert store.flags() == {b: True}
    vec = np.arange(768, dtype=np.float32)
    store.put_features("grey32x24", {a: vec, b: vec * 2})
    cached = store.get_features("grey32x24")
    assert np.array_equal(cached[b], vec * 2) and cached[a].dtype == np.float32
    assert store.counts()["samples"] == 2 and store.counts()["flagged"] == 1


def test_the_same_content_is_one_sample(store):
    store.add_sample(**_sample_fields())
    with pytest.raises(StoreError):
        store.add_sample(**_sample_fields(path="elsewhere/000.png"))


def test_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "labels.sqlite"
    Store(path, create=True).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=f"newer Label Assistant .*schema {SCHEMA_VERSION + 5}"):
        Store(path)
    assert path.read_bytes() == before


def test_migration_from_empty_database_sets_user_version(tmp_path):
    path = tmp_path / "labels.sqlite"
    conn = sqlite3.connect(path)  # a valid SQLite file at schema 0 (as an interrupted first start leaves it)
    conn.execute("CREATE TABLE scratch (a)")
    conn.execute("DROP TABLE scratch")
    conn.commit()
    conn.close()
    with Store(path, create=False) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert {"samples", "labels", "flags", "features", "events"} <= set(store.db.table_names())


@pytest.mark.parametrize("content,reason", [
    (b"", "empty"),
    (b"PK\x03\x04 this is a zip file, not a database" * 20, "not a label database"),
])
def test_foreign_files_are_refused_untouched(tmp_path, content, reason):
    path = tmp_path / "labels.sqlite"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=reason):
        Store(path)
    assert path.read_bytes() == content


def test_damaged_database_is_refused_untouched(tmp_path, gt_mask):
    path = tmp_path / "labels.sqlite"
    with Store(path, create=True) as store:
        sid = store.add_sample(**_sample_fields())
        for _ in range(30):
            store.save_label(sid, gt_mask, source="manual")
    data = bytearray(path.read_bytes())
    page = 4096
    # Scribble over the header of a b-tree page of the labels table (0x0d: table leaf page).
    leaves = [k for k in range(1, len(data) // page) if data[k * page] == 0x0D]
    assert leaves, "expected table leaf pages in a database with 30 labels"
    data[leaves[-1] * page: leaves[-1] * page + 64] = bytes(range(64))
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged"):
        Store(path)
    assert path.read_bytes() == bytes(data)


def test_full_database_keeps_earlier_labels(tmp_path, gt_mask):
    """SQLite's own page limit makes the database 'full' exactly as a full disk does."""
    path = tmp_path / "labels.sqlite"
    with Store(path, create=True) as store:
        sid = store.add_sample(**_sample_fields())
        first = store.save_label(sid, gt_mask, source="import")
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages}")
        noise = np.random.default_rng(0).random(gt_mask.shape) > 0.5  # incompressible: needs new pages
        with pytest.raises(StoreError, match="could not save the label of 000.png: the disk is full; nothing was changed"):
            store.save_label(sid, noise, source="manual")
        assert [v.id for v in store.label_history(sid)] == [first]
    with Store(path) as store:
        assert np.array_equal(store.latest_label(sid).mask, gt_mask)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.integers(1, 70), st.integers(0, 2**32 - 1))
def test_mask_codec_round_trip(h, w, seed):
    mask = np.random.default_rng(seed).random((h, w)) > 0.6
    assert np.array_equal(decode_mask(encode_mask(mask), h, w), mask)


def test_schema_3_database_migrates_to_4_keeping_samples_and_labels(tmp_path):
    """A project from the previous version gains ``samples.mtime_ns`` (NULL: its hash is checked instead)."""
    import sqlite_utils

    from labelassist.store import MIGRATIONS

    path = tmp_path / "labels.sqlite"
    conn = sqlite3.connect(path)
    db = sqlite_utils.Database(conn)
    for k, migrate in enumerate(MIGRATIONS[:3], 1):
        migrate(db)
        conn.execute(f"PRAGMA user_version = {k}")
    conn.execute(
        "INSERT INTO samples (path, page, name, hash, file_size, height, width, dtype, channels, sequence, frame,"
        " added_at) VALUES ('a.png', 0, 'a.png', 'ab', 10, 4, 5, 'uint8', 1, 's', 0, '2026-01-01')")
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.schema_version == 4 == SCHEMA_VERSION
        (sample,) = store.samples()
        assert sample.name == "a.png" and sample.mtime_ns is None
        label = store.save_label(sample.id, np.ones((4, 5), bool), source="manual")
        assert store.label(label).area == 20
