"""Bad input and faults around the label database, its lock and its backups (issue 12).

Each row: something a user, an IT administrator or a stray program leaves in a project, the
command run on it, the exit code, the words of its one plain line, and the stored labels bit for
bit unchanged.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from badinput import assert_plain_failure, copy_of, labels_digest, run_cli, scratch_template
from labelassist.cli import main
from labelassist.project import Project
from labelassist.session import Session


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, datasets) -> Path:
    """A scratch_assay project with six imported labels: the template each case copies."""
    return scratch_template(tmp_path_factory.mktemp("template"), datasets, images=6)


@pytest.fixture()
def project(labelled, tmp_path) -> Path:
    return copy_of(labelled, tmp_path)


def _stray_backup(p: Path) -> None:
    (p / "backups").mkdir(exist_ok=True)
    (p / "backups" / "labels-20261399T999999Z-000007.sqlite").write_bytes(b"not ours")


def _backups_is_a_file(p: Path) -> None:
    (p / "backups").write_text("a file where the backups folder belongs")


def _lock_is_a_symlink(p: Path) -> None:
    victim = p.parent / "victim.txt"
    victim.write_text("precious")
    (p / ".lock").symlink_to(victim)


def _lock_is_a_fifo(p: Path) -> None:
    os.mkfifo(p / ".lock")


def _foreign_database(p: Path) -> None:
    db = p / "labels.sqlite"
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    conn.commit()
    conn.close()


def _zip_as_database(p: Path) -> None:
    (p / "labels.sqlite").write_bytes(b"PK\x03\x04 this is a zip file, not a database" * 20)


def _empty_database(p: Path) -> None:
    (p / "labels.sqlite").write_bytes(b"")


# (id, setup, argv after the command name with {p} for the project, exit code, words of the message)
CASES = [
    ("stray backup name, backup", _stray_backup, ["backup", "{p}"], 0, []),
    ("stray backup name, restore --list", _stray_backup, ["restore", "{p}", "--list"], 1, ["has no backups yet"]),
    ("backups is a file", _backups_is_a_file, ["backup", "{p}"], 1, ["is a file, not a folder"]),
    ("foreign sqlite file, status", _foreign_database, ["status", "{p}"], 1, ["another program", "nothing was changed"]),
    ("zip file as database, status", _zip_as_database, ["status", "{p}"], 1, ["not a label database"]),
    ("empty database, status", _empty_database, ["status", "{p}"], 1, ["empty (0 bytes)"]),
]


@pytest.mark.parametrize("name,setup,argv,code,words", CASES, ids=[c[0] for c in CASES])
def test_bad_store_input(project, tmp_path, name, setup, argv, code, words):
    replaces_db = setup in (_foreign_database, _zip_as_database, _empty_database)
    before = labels_digest(project) if not replaces_db else None
    setup(project)
    db_before = (project / "labels.sqlite").read_bytes() if replaces_db else None
    result = run_cli(*[a.replace("{p}", str(project)) for a in argv], home=tmp_path / "home")
    if code == 0:
        assert result.code == 0, result.err
        assert "Traceback" not in result.err
    else:
        assert_plain_failure(result, code, *words)
        assert len(result.err.strip().splitlines()) == 1, result.err
    if before is not None:
        assert labels_digest(project) == before
    else:  # a file that is not a label database is left byte for byte as it was
        assert (project / "labels.sqlite").read_bytes() == db_before
    if "stray backup" in name:  # the stray file is left alone, never pruned
        assert (project / "backups" / "labels-20261399T999999Z-000007.sqlite").read_bytes() == b"not ours"


def test_foreign_database_is_not_migrated_by_a_read_only_command(project, tmp_path):
    _foreign_database(project)
    before = (project / "labels.sqlite").read_bytes()
    result = run_cli("status", project, home=tmp_path / "home")
    assert_plain_failure(result, 1, "another program")
    assert (project / "labels.sqlite").read_bytes() == before


@pytest.mark.parametrize("setup", [_lock_is_a_symlink, _lock_is_a_fifo], ids=["symlink", "fifo"])
def test_the_lock_file_is_never_written_through_a_link(project, setup):
    """Item 13: ``.lock`` is truncated and rewritten once taken; through a symlink that would
    overwrite any file the user can write. A link (or a FIFO, which would block) is refused."""
    from labelassist.errors import ProjectError

    setup(project)
    with Project.open(project) as p:
        with pytest.raises(ProjectError, match="link to another file|not a plain file"):
            p.lock()
    victim = project.parent / "victim.txt"
    if victim.exists():
        assert victim.read_text() == "precious"


def test_a_stray_backup_name_never_breaks_a_save_or_close(project):
    """Item 11: a stray file named like a backup with an impossible date made ``Session.save``
    raise after the label was committed, ``close()`` raise, and no backup was ever taken again."""
    _stray_backup(project)
    with Project.open(project) as p:
        p.settings["backup"]["minutes"] = 1e-9  # a backup after every save
        with Session(p, lookahead=0) as session:
            for _ in range(2):
                assisted = session.open(p.store.samples()[_].id)  # every sample is labelled
                mask = np.zeros(assisted.image.shape[:2], bool)
                mask[3:30, 4:50] = True
                label_id = session.save(assisted.sample.id, mask, strokes=1)
                assert p.store.label(label_id).area == mask.sum()
    from labelassist.backup import list_backups

    taken = list_backups(project / "backups")
    assert len(taken) >= 2  # backups go on being taken (two saves, and the one at close)
    assert (project / "backups" / "labels-20261399T999999Z-000007.sqlite").exists()


def test_an_image_replaced_in_place_is_noticed_and_its_labels_kept(tmp_path, datasets):
    """Item 12: the stored SHA-256 was never checked, so an image replaced in place was shown with
    the old label. BMP files of one size have one byte length: the swap keeps the size (only the
    modification time and then the hash can tell), a second file changes size."""
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    srcs = sorted((datasets / "scratch_assay" / "images").iterdir())[:3]
    for src in srcs:
        cv2.imwrite(str(images / (src.stem + ".bmp")), cv2.imread(str(src), cv2.IMREAD_GRAYSCALE))
    folder = tmp_path / "p"
    assert main(["init", str(folder), "--images", str(images)]) == 0
    with Project.open(folder) as p:
        first, second, third = p.store.samples()
        for s in (first, second, third):
            mask = np.zeros((s.height, s.width), bool)
            mask[: 5 + s.id, :9] = True
            p.store.save_label(s.id, mask, source="manual")
    before = labels_digest(folder)
    # Same bytes written again (a copy tool, a backup restore): the time changes, the picture does not.
    data = (images / "001.bmp").read_bytes()
    (images / "001.bmp").write_bytes(data)
    os.utime(images / "001.bmp", ns=(1, 10**18))
    # Replaced in place by another picture of the same size, and a third one by a smaller picture.
    (images / "000.bmp").write_bytes((images / "002.bmp").read_bytes())
    assert (images / "000.bmp").stat().st_size == first.file_size
    cv2.imwrite(str(images / "002.bmp"), np.zeros((10, 10), np.uint8))

    result = run_cli("status", folder, "--json", home=tmp_path / "home")
    assert result.code == 0, result.err
    import json

    status = json.loads(result.out)
    assert status["changed_files"] == 2 and sorted(status["changed"]) == ["000.bmp", "002.bmp"]
    assert status["missing_files"] == 0
    text = run_cli("status", folder, home=tmp_path / "home")
    assert "changed files   2" in text.out and "000.bmp" in text.out
    from labelassist.errors import ImageReadError

    with Project.open(folder) as p:
        with pytest.raises(ImageReadError, match="was changed after it was imported"):
            p.read_image(p.store.sample(first.id))
        assert p.read_image(p.store.sample(second.id)).shape[:2] == (second.height, second.width)
        with Session(p, lookahead=0) as session:
            with pytest.raises(ImageReadError, match="its labels are kept"):
                session.open(first.id)
    assert labels_digest(folder) == before


def test_two_images_of_one_size_and_time_swapped_by_name_are_noticed(tmp_path, datasets):
    """Review finding: files of one acquisition often share size and modification time (unzipped,
    copied with times kept); swapped by name they passed the size-and-time check."""
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    for src in sorted((datasets / "scratch_assay" / "images").iterdir())[:2]:
        cv2.imwrite(str(images / (src.stem + ".bmp")), cv2.imread(str(src), cv2.IMREAD_GRAYSCALE))
    stamp = 1_700_000_000_000_000_000
    for path in images.iterdir():
        os.utime(path, ns=(stamp, stamp))
    folder = tmp_path / "p"
    assert main(["init", str(folder), "--images", str(images)]) == 0
    a, b = images / "000.bmp", images / "001.bmp"
    a.rename(tmp_path / "swap")
    b.rename(a)
    (tmp_path / "swap").rename(b)
    for path in (a, b):
        os.utime(path, ns=(stamp, stamp))
    result = run_cli("status", folder, "--json", home=tmp_path / "home")
    assert result.code == 0, result.err
    import json

    assert sorted(json.loads(result.out)["changed"]) == ["000.bmp", "001.bmp"]
