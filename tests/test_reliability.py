"""Backups, restore after a damaged database, and one owner per project."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from labelassist.backup import backup_now, list_backups
from labelassist.cli import main
from labelassist.errors import ImageReadError, ProjectError, StoreError
from labelassist.images import read_mask
from labelassist.importer import import_images
from labelassist.project import Project
from labelassist.session import Session


@pytest.fixture
def project_dir(tmp_path, datasets):
    images = tmp_path / "images"
    images.mkdir()
    for k in range(4):
        shutil.copy(datasets / "scratch_assay" / "images" / f"{k:03d}.png", images)
    with Project.create(tmp_path / "p") as project:
        import_images(project, [images], masks=datasets / "scratch_assay" / "masks")
    return tmp_path / "p"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_restore_after_the_database_is_corrupted_on_purpose(capsys, project_dir, datasets, monkeypatch, tmp_path):
    monkeypatch.setenv("LABELASSIST_HOME", str(tmp_path / "home"))
    assert _run(capsys, "backup", project_dir)[0] == 0
    db = project_dir / "labels.sqlite"
    data = bytearray(db.read_bytes())
    data[0:100] = b"\x00" * 100  # the header is gone: not a database any more
    db.write_bytes(bytes(data))
    code, _, err = _run(capsys, "status", project_dir)
    assert code == 1 and "not a label database" in err
    code, out, _ = _run(capsys, "restore", project_dir)
    assert code == 0 and "1. labels-" in out and "4 label versions" in out
    code, out, err = _run(capsys, "restore", project_dir, "--backup", "1")
    assert code == 0, err
    assert "restored labels-" in out and "4 label versions of 4 samples" in out
    with Project.open(project_dir) as project:
        for sample in project.store.samples():
            truth = read_mask(datasets / "scratch_assay" / "masks" / sample.name)
            assert np.array_equal(project.store.latest_label(sample.id).mask, truth)
    kept = [p.name for p in project_dir.iterdir() if p.name.startswith("labels.sqlite.replaced-")]
    assert len(kept) == 1  # the damaged file is kept, never deleted
    # Restoring twice within one second keeps both replaced files (a rename would overwrite the first).
    from labelassist.backup import list_backups, restore

    first = (project_dir / kept[0]).read_bytes()
    restore(project_dir, list_backups(project_dir / "backups")[0])
    restore(project_dir, list_backups(project_dir / "backups")[0])
    kept = sorted(p for p in project_dir.iterdir() if p.name.startswith("labels.sqlite.replaced-"))
    assert len(kept) == 3 and any(p.read_bytes() == first for p in kept)


def test_backups_roll_and_a_damaged_backup_is_refused(project_dir, tmp_path):
    with Project.open(project_dir) as project:
        for _ in range(4):
            backup_now(project.store, project.backup_dir, keep=3)
    backups = list_backups(project_dir / "backups")
    assert len(backups) == 3 and all(b.labels == 4 for b in backups)
    backups[0].path.write_bytes(b"garbage" * 100)
    from labelassist.backup import restore

    before = (project_dir / "labels.sqlite").read_bytes()
    with pytest.raises(StoreError, match="cannot be used|damaged"):
        restore(project_dir, list_backups(project_dir / "backups")[0])
    assert (project_dir / "labels.sqlite").read_bytes() == before


def test_session_backs_up_at_exit_when_something_changed(project_dir, datasets):
    with Project.open(project_dir) as project, Session(project, background=False) as session:
        assisted = session.open(project.store.samples()[0].id)
        session.save(assisted.sample.id, assisted.start_mask)
    assert [b.labels for b in list_backups(project_dir / "backups")] == [5]


def test_a_second_instance_is_refused_while_the_first_owns_the_project(project_dir):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from labelassist.project import Project
            from labelassist.session import Session
            project = Project.open({str(project_dir)!r})
            session = Session(project, background=False)
            print("owned", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "owned"
        with Project.open(project_dir) as project:
            with pytest.raises(ProjectError, match="already open in the labelling app .process"):
                Session(project, background=False)
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with the process: no stale lock after a crash.
    with Project.open(project_dir) as project, Session(project, background=False):
        pass


def test_images_unplugged_mid_session_are_skipped_and_come_back(tmp_path, datasets):
    usb = tmp_path / "usb"
    usb.mkdir()
    for k in range(4):
        shutil.copy(datasets / "scratch_assay" / "images" / f"{k:03d}.png", usb)
    with Project.create(tmp_path / "p") as project:
        import_images(project, [usb])
        with Session(project, background=False) as session:
            first = session.next()
            session.save(first.sample.id, first.start_mask)
            unplugged = tmp_path / "drawer"
            usb.rename(unplugged)  # the drive is pulled out
            with pytest.raises(ImageReadError, match="the 3 images still to label cannot be found: reconnect"):
                session.next()
            assert len(session.unavailable) == 3
            assert project.store.latest_label(first.sample.id) is not None  # nothing saved was touched
            unplugged.rename(usb)  # and plugged in again
            again = session.next()
            assert again is not None and again.sample.id in {s.id for s in project.store.samples()}
            assert session.unavailable == set() and again.sample.id != first.sample.id
