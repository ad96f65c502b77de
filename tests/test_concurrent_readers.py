"""Saved labels survive other readers of the project: the POSIX lock rule and its guard.

Closing any file descriptor of ``labels.sqlite`` drops every POSIX lock the process holds on it,
SQLite's included. Another process then checkpoints and deletes the ``-wal`` while this one keeps
committing into the deleted file (issue 12, item 1). These tests reproduce the report, check the
guard that turns any remaining case into a loud error, and watch every plain ``open`` of the
database files during a whole labelling session, the Home listing and the read-only commands.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labelassist.cli import main
from labelassist.store import Store, read_counts

from badinput import labels_digest


@pytest.fixture()
def project(tmp_path, datasets) -> Path:
    folder = tmp_path / "p"
    images = tmp_path / "images"
    images.mkdir()
    for src in sorted((datasets / "scratch_assay" / "images").iterdir())[:10]:
        (images / src.name).symlink_to(src)
    assert main(["init", str(folder), "--images", str(images)]) == 0
    return folder


def _child(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **(env or {})))


SAVER = """
    import os, subprocess, sys
    import numpy as np
    from pathlib import Path
    from labelassist.store import Store, read_counts
    db = Path(sys.argv[1]) / "labels.sqlite"
    store = Store(db)
    ids = [s.id for s in store.samples()][:8]
    def save(i):
        sample = store.sample(ids[i])
        mask = np.zeros((sample.height, sample.width), bool)
        mask[: 10 + i, : 20 + i] = True
        return store.save_label(ids[i], mask, source="manual")
    print("saved", save(0), flush=True)
    {reader}
    subprocess.run([sys.executable, "-m", "labelassist", "status", sys.argv[1]], check=True, capture_output=True)
    for i in range(1, 8):
        try:
            print("saved", save(i), flush=True)
        except Exception as exc:
            print("refused", type(exc).__name__, exc, flush=True)
    os._exit(0)  # a crash: no close, no checkpoint
"""


def test_saves_survive_the_home_listing_and_a_status_run(project):
    """The report's reproduction: read_counts in-process, status in another process, 7 more saves, a crash."""
    run = _child(SAVER.replace("{reader}", "read_counts(db)"), str(project))
    assert run.returncode == 0, run.stderr
    saved = [line for line in run.stdout.splitlines() if line.startswith("saved")]
    assert len(saved) == 8, run.stdout
    with Store(project / "labels.sqlite") as store:
        assert store.counts()["label_versions"] == 8
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_save_into_a_lost_log_is_refused_loudly_and_rescued(project):
    """The guard: a stray plain read of the database (what the old header check did) loses the
    process's locks; ``status`` then deletes the -wal. The next save must not be acknowledged."""
    stray = "open(db, 'rb').read(16)  # a plain reader: drops SQLite's POSIX locks on close"
    run = _child(SAVER.replace("{reader}", stray), str(project))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("saved")
    refused = [line for line in lines if line.startswith("refused")]
    acknowledged = [line for line in lines if line.startswith("saved")]
    assert refused and "StoreError" in refused[0], run.stdout
    assert "removed or replaced by another program" in refused[0]
    assert "nothing was changed" in refused[0] and "Close the app and open the project again" in refused[0]
    # Every save acknowledged is on disk after the crash; none went into the deleted file unreported.
    with Store(project / "labels.sqlite") as store:
        assert store.counts()["label_versions"] == len(acknowledged)
    # Everything that connection saw (the refused save included) was copied beside the database.
    rescued = sorted(project.glob("labels.sqlite.rescued-*"))
    assert len(rescued) == 1
    conn = sqlite3.connect(rescued[0].absolute().as_uri() + "?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT count(*) FROM labels").fetchone()[0] == len(acknowledged)
    finally:
        conn.close()


MID_COMMIT = """
    import os, subprocess, sys
    import numpy as np
    from pathlib import Path
    from labelassist.store import Store
    db = Path(sys.argv[1]) / "labels.sqlite"
    store = Store(db)
    sample = store.samples()[0]
    mask = np.zeros((sample.height, sample.width), bool)
    store.save_label(sample.id, mask, source="manual")
    open(db, "rb").read(16)  # a plain reader: the process no longer holds SQLite's locks
    def status():  # another program reads the project in the middle of the next save
        subprocess.run([sys.executable, "-m", "labelassist", "status", sys.argv[1]], check=True,
                       capture_output=True)
        return 0
    store.conn.create_function("other_reader", 0, status)
    store.conn.execute("CREATE TEMP TRIGGER mid AFTER INSERT ON labels BEGIN SELECT other_reader(); END")
    mask[:30, :30] = True
    try:
        store.save_label(sample.id, mask, source="manual")
        print("acknowledged", flush=True)
    except Exception as exc:
        print("refused", exc, flush=True)
    os._exit(0)
"""


def test_a_commit_that_went_into_a_deleted_log_is_not_acknowledged(project):
    """The guard after the commit: the -wal is deleted by another process while this one writes
    (inside the transaction, after the check before it); the save must end in a loud error."""
    run = _child(MID_COMMIT, str(project))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("refused"), run.stdout
    assert "this save may not be on disk" in run.stdout
    rescued = sorted(project.glob("labels.sqlite.rescued-*"))
    assert len(rescued) == 1
    conn = sqlite3.connect(rescued[0].absolute().as_uri() + "?mode=ro", uri=True)
    try:  # the rescue copy holds the save that could not be acknowledged
        assert conn.execute("SELECT count(*) FROM labels").fetchone()[0] == 2
    finally:
        conn.close()


AUDIT = """
    import sys, os, json
    from pathlib import Path
    project, out = Path(sys.argv[1]), Path(sys.argv[2])
    watched = {str(project / f"labels.sqlite{s}") for s in ("", "-wal", "-shm")}
    opened = []
    def hook(event, args):
        if event in ("open", "os.open", "shutil.copyfile", "shutil.copytree") and args and args[0] is not None:
            try:
                path = os.path.abspath(os.fsdecode(args[0])) if not isinstance(args[0], int) else ""
            except Exception:
                return
            if path in watched or any(path.startswith(w) for w in watched):
                opened.append((event, path))
    sys.addaudithook(hook)

    import numpy as np
    from labelassist.cli import main
    from labelassist.project import Project
    from labelassist.session import Session
    from labelassist.ui import projects
    with Project.open(project) as p:
        p.lock("audit")
        with Session(p, lookahead=1) as session:
            for k in range(3):
                assisted = session.next()
                mask = np.zeros(assisted.image.shape[:2], bool); mask[5:40, 5:60] = True
                session.record_edit(assisted.sample.id, "stroke", np.arange(10), np.ones(10, bool))
                session.submit(assisted.sample.id, mask)
                session.save(assisted.sample.id, mask, strokes=1)
                projects.scan(project.parent)          # Home lists the projects on the tablet
                for argv in (["status", str(project)], ["select", str(project), "--top", "3"],
                             ["inspect", str(project)], ["backup", str(project)],
                             ["export", str(project), "--format", "png", "--out", str(out / f"png{k}")],
                             ["export", str(project), "--format", "coco", "--out", str(out / f"coco{k}")],
                             ["restore", str(project), "--list"]):
                    main(argv)
    print(json.dumps(opened))
"""


def test_no_plain_file_io_on_the_database_during_a_session(project, tmp_path):
    """Python's audit hook sees every ``open`` from Python code (SQLite's own opens are C calls and
    raise no event): a labelling session with Home's listing and every read-only command in the same
    process opens the database files with plain I/O zero times."""
    run = _child(AUDIT, str(project), str(tmp_path / "out"), env={"LABELASSIST_HOME": str(tmp_path / "home")})
    assert run.returncode == 0, run.stderr[-3000:]
    opened = json.loads(run.stdout.strip().splitlines()[-1])
    assert opened == [], opened
    with Store(project / "labels.sqlite") as store:
        assert store.counts()["label_versions"] == 3


def test_read_counts_opens_nothing_with_plain_io(project, monkeypatch):
    """read_counts (Home) and Store's checks of a damaged or foreign file go through SQLite only."""
    import builtins

    seen = []
    real_open = builtins.open

    def spy(file, *a, **k):
        if isinstance(file, (str, os.PathLike)) and "labels.sqlite" in os.fspath(file):
            seen.append(os.fspath(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", spy)
    assert read_counts(project / "labels.sqlite")["samples"] == 10
    with Store(project / "labels.sqlite"):
        pass
    assert seen == []


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path):
    """A read-only command must never migrate another program's SQLite file into a label database."""
    db = tmp_path / "labels.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.execute("INSERT INTO contacts VALUES ('x')")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    from labelassist.errors import StoreError

    with pytest.raises(StoreError, match="another program"):
        Store(db)
    assert db.read_bytes() == before


def test_read_only_media_show_labels_still_in_the_wal(project, tmp_path):
    """Item 4: labels committed just before a power cut live in the -wal; a read-only medium must
    still show them (``immutable=1`` would silently hide them)."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs read-only and needs root (CI and make test run as root)")
    mnt = tmp_path / "stick"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], check=True)
    try:
        stick = mnt / "p"
        subprocess.run(["cp", "-a", str(project), str(stick)], check=True)
        run = _child("""
            import os, sys
            import numpy as np
            from labelassist.store import Store
            store = Store(sys.argv[1] + "/labels.sqlite")
            for s in store.samples()[:3]:
                mask = np.zeros((s.height, s.width), bool); mask[:7, :9] = True
                store.save_label(s.id, mask, source="manual")
            os._exit(0)  # the power cut: nothing checkpointed
        """, str(stick))
        assert run.returncode == 0, run.stderr
        assert (stick / "labels.sqlite-wal").stat().st_size > 0
        digest = labels_digest(stick)
        for shm in (True, False):
            if not shm:
                (stick / "labels.sqlite-shm").unlink()
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
            try:
                with Store(stick / "labels.sqlite") as store:
                    assert store.read_only
                    assert store.counts()["label_versions"] == 3, f"-shm present: {shm}"
                    assert len(list(store.latest_labels())) == 3
                assert main(["status", str(stick), "--json"]) == 0
                # Item 14: the selector works from read-only media (its feature cache stays in memory).
                assert main(["select", str(stick), "--top", "3"]) == 0
            finally:
                subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        assert labels_digest(stick) == digest
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


NORMAL_EXIT = """
    import subprocess, sys
    import numpy as np
    from pathlib import Path
    from labelassist.errors import StoreError
    from labelassist.store import Store
    db = Path(sys.argv[1]) / "labels.sqlite"
    store = Store(db)
    sample = store.samples()[0]
    store.save_label(sample.id, np.ones((sample.height, sample.width), bool), source="manual")
    open(db, "rb").read(16)  # a plain reader: the process no longer holds SQLite's locks
    try:
        with store.writing("a label"):  # another program checkpoints and deletes the -wal meanwhile
            store.conn.execute("INSERT INTO labels (sample_id, created_at, author, source, codec, height, width,"
                               " mask, area) SELECT sample_id, created_at, author, 'orphan', codec, height, width,"
                               " mask, area FROM labels LIMIT 1")
            subprocess.run([sys.executable, "-m", "labelassist", "status", sys.argv[1]], capture_output=True)
    except StoreError as exc:
        print("refused", exc, flush=True)
    store.close()
    other = [sys.executable, "-c", OTHER, str(db)]
    subprocess.run(other, check=True)
    print("others saved", flush=True)
    sys.exit(0)  # an ordinary exit: the interpreter shuts down and frees what it can
"""
OTHER = """
import sys, numpy as np
from labelassist.store import Store
other = Store(sys.argv[1])
for s in other.samples()[1:4]:
    other.save_label(s.id, np.ones((s.height, s.width), bool), source="manual")
other.close()
"""


def test_the_abandoned_connection_never_checkpoints_over_later_saves(project):
    """After the guard fired, the process must never checkpoint that connection, not even at an
    ordinary exit: that would copy its orphaned log over pages other programs committed since
    (found by review: three acknowledged labels of another program were silently gone)."""
    code = NORMAL_EXIT.replace("OTHER,", repr(OTHER) + ",")
    run = _child(code, str(project))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("refused") and "others saved" in run.stdout, run.stdout
    with Store(project / "labels.sqlite") as store:
        rows = store.conn.execute("SELECT source FROM labels ORDER BY id").fetchall()
        assert [r[0] for r in rows] == ["manual"] * 4, rows
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


RELINK = """
    import os, sqlite3, sys
    from pathlib import Path
    data, project = Path(sys.argv[1]), Path(sys.argv[1]) / "p"
    db = project / "labels.sqlite"
    opened = []
    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            if "labels.sqlite" in os.fsdecode(args[0]):
                opened.append(os.fsdecode(args[0]))
    sys.addaudithook(hook)
    from labelassist.cli import main
    code = main(["relink", str(project), str(data)])
    print("opened", opened, "code", code, flush=True)
"""


def test_relink_never_hashes_the_database_it_holds_open(project, tmp_path):
    """``relink`` hashed every file of the right size under SOURCE; with the project inside SOURCE
    that opened labels.sqlite (or its -wal/-shm) with plain I/O in the process holding it (review)."""
    db = project / "labels.sqlite"
    size = db.stat().st_size
    conn = sqlite3.connect(db)
    name = conn.execute("SELECT path FROM samples ORDER BY id LIMIT 1").fetchone()[0]
    # A missing image whose recorded size is the database's: the only candidate of that size is the database.
    conn.execute("UPDATE samples SET file_size = ?, path = 'gone/' || path WHERE path = ?", (size, name))
    conn.commit()
    conn.close()
    run = _child(RELINK, str(project.parent), env={"LABELASSIST_HOME": str(tmp_path / "home")})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "opened [] code 3" in run.stdout, run.stdout  # still missing (exit 3), and the database never opened
