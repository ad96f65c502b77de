"""Bad input and faults around exports and other outputs (issue 12, items 3, 7, 8, 14 and low items).

Each row of the table: where a user points ``export`` or ``prelabel --out`` (or what damage the
project has), the exit code, the words of the one plain line, the stored labels bit for bit
unchanged and, when the command refuses, not one file written, created or changed anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from badinput import assert_plain_failure, labels_digest, run_cli
from labelassist.export import rle_decode, rle_encode
from labelassist.importer import import_images
from labelassist.images import read_mask
from labelassist.project import Project

IMAGES = ["000.png", "001.png", "002.png", "sub/003.png", "004.PNG"]  # 004.PNG: a name that differs in case only


@dataclass
class Layout:
    """The folders of one case: images outside the project, as the README's example has them."""

    root: Path
    images: Path
    masks: Path
    project: Path


@pytest.fixture()
def layout(tmp_path, datasets) -> Layout:
    """Five scratch_assay images (copied: an overwrite would be real) with their masks as labels."""
    src = datasets / "scratch_assay"
    lay = Layout(tmp_path, tmp_path / "data" / "imgs", tmp_path / "data" / "masks", tmp_path / "proj")
    for k, name in enumerate(IMAGES):
        (lay.images / name).parent.mkdir(parents=True, exist_ok=True)
        lay.masks.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / "images" / f"{k:03d}.png", lay.images / name)
        shutil.copyfile(src / "masks" / f"{k:03d}.png", lay.masks / f"{Path(name).stem}.png")
    with Project.create(lay.project) as project:
        report = import_images(project, [lay.images], masks=lay.masks)
        assert report.ok and project.store.counts()["labelled"] == len(IMAGES)
    return lay


def damage_label(project: Path, sample_name: str) -> int:
    """Flip one byte inside the stored deflate stream of a sample's latest label (simulated disk damage).

    The labels table refuses UPDATE by a trigger: drop it, write, create it again, as a bad sector
    would leave things. ``PRAGMA integrity_check`` still says ok.
    """
    conn = sqlite3.connect(project / "labels.sqlite")
    try:
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'labels'"
                                ).fetchall()
        label_id, blob = conn.execute(
            "SELECT l.id, l.mask FROM labels l JOIN samples s ON s.id = l.sample_id WHERE s.name = ?"
            " ORDER BY l.id DESC LIMIT 1", (sample_name,)).fetchone()
        blob = bytearray(blob)
        blob[len(blob) // 2] ^= 0xFF
        with conn:
            for name, _ in triggers:
                conn.execute(f'DROP TRIGGER "{name}"')
            conn.execute("UPDATE labels SET mask = ? WHERE id = ?", (bytes(blob), label_id))
            for _, sql in triggers:
                conn.execute(sql)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return label_id
    finally:
        conn.close()


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: content hash of files, ``dir`` or the link target.

    The database files are left out: never opened with plain file I/O (the POSIX lock rule of
    docs/reliability.md), and SQLite touches ``-wal``/``-shm`` on every open; ``labels_digest``
    checks the labels. The log folder is left out too.
    """
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if rel.startswith("home"):
                continue
            if path.is_symlink():
                seen[rel] = "link " + os.readlink(path)
            elif path.is_dir():
                seen[rel] = "dir"
            elif name.startswith("labels.sqlite"):
                continue  # opening the database touches -wal/-shm; labels_digest checks the labels
            else:
                seen[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


# -- the table ----------------------------------------------------------------------------------
# Each setup gets the layout and returns the arguments after ``labelassist``; None as code = refused
# with exit 1 and nothing written anywhere.

def _link(lay: Layout, name: str, to: Path) -> Path:
    (lay.root / name).symlink_to(to, target_is_directory=True)
    return lay.root / name


def _hard_linked_image(lay: Layout) -> Path:
    folder = lay.root / "hard"
    folder.mkdir()
    os.link(lay.images / "000.png", folder / "000.png")  # the same file under another name
    return folder


def _no_classes(lay: Layout) -> None:
    toml = lay.project / "project.toml"
    toml.write_text(toml.read_text().replace('classes = ["foreground"]', "classes = []"))


def _out_is_a_file(lay: Layout) -> Path:
    target = lay.root / "results.png"
    target.write_bytes(b"not a folder")
    return target


CASES: list[tuple[str, Callable[[Layout], list], int, tuple[str, ...]]] = [
    # item 3: never over a source image ...
    ("export png into the image folder",
     lambda lay: ["export", lay.project, "--out", lay.images], 1, ("000.png", "image", "nothing was written")),
    ("export into a symlink to the image folder",
     lambda lay: ["export", lay.project, "--out", _link(lay, "view", lay.images)],
     1, ("image", "nothing was written")),
    ("export into a folder holding a hard link of an image",
     lambda lay: ["export", lay.project, "--out", _hard_linked_image(lay)], 1, ("000.png", "image")),
    ("prelabel --out the image folder",
     lambda lay: ["prelabel", lay.project, "--method", "otsu", "--out", lay.images],
     1, ("image", "nothing was written")),
    ("prelabel --out a parent of an image folder whose names collide",
     lambda lay: ["prelabel", lay.project, "--method", "otsu", "--samples", "sub/003.png", "--out", lay.images],
     1, ("003.png", "image")),
    ("prelabel --out over an image whose name differs in case only",
     lambda lay: ["prelabel", lay.project, "--method", "otsu", "--samples", "004.PNG", "--out", lay.images],
     1, ("004.PNG", "image")),
    # ... and never into the project folder
    ("export into the project folder",
     lambda lay: ["export", lay.project, "--out", lay.project], 1, ("inside the project folder",)),
    ("export into a new subfolder of the project",
     lambda lay: ["export", lay.project, "--format", "coco", "--out", lay.project / "exports" / "today"],
     1, ("inside the project folder",)),
    ("export through a symlink to the project folder",
     lambda lay: ["export", lay.project, "--out", _link(lay, "shortcut", lay.project) / "masks"],
     1, ("inside the project folder",)),
    ("prelabel --out the project folder",
     lambda lay: ["prelabel", lay.project, "--method", "otsu", "--out", lay.project],
     1, ("inside the project folder",)),
    # low items: plain lines instead of "unexpected error"
    ("prelabel --out an existing file",
     lambda lay: ["prelabel", lay.project, "--method", "otsu", "--out", _out_is_a_file(lay)],
     1, ("results.png", "is a file")),
    ("export --out an existing file",
     lambda lay: ["export", lay.project, "--out", _out_is_a_file(lay)], 1, ("results.png", "is a file")),
    ("coco export with classes = []",
     lambda lay: [_no_classes(lay), "export", lay.project, "--format", "coco", "--out", lay.root / "coco"][1:],
     1, ("classes", "label class")),
    # item 8: one damaged label is named, the rest goes out, exit 3
    ("png export with one damaged label",
     lambda lay: [damage_label(lay.project, "001.png"), "export", lay.project, "--out", lay.root / "out"][1:],
     3, ("001.png", "damaged", "labelassist restore")),
    ("coco export with one damaged label",
     lambda lay: [damage_label(lay.project, "001.png"), "export", lay.project, "--format", "coco",
                  "--out", lay.root / "coco"][1:], 3, ("001.png", "damaged", "labelassist restore")),
    ("inspect with one damaged label",
     lambda lay: [damage_label(lay.project, "001.png"), "inspect", lay.project][1:],
     3, ("001.png", "damaged", "labelassist restore")),
    ("prelabel of a sample whose saved label is damaged",
     lambda lay: [damage_label(lay.project, "001.png"), "prelabel", lay.project, "--method", "otsu",
                  "--samples", "001.png", "--out", lay.root / "pre"][1:],
     3, ("001.png", "damaged", "labelassist restore")),
]


@pytest.mark.parametrize("setup,code,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(layout, setup, code, words):
    argv = setup(layout)
    digest = labels_digest(layout.project)
    before = snapshot(layout.root)
    result = run_cli(*argv, home=layout.root / "home")
    assert_plain_failure(result, code, *words)
    assert labels_digest(layout.project) == digest
    if code == 1:
        assert snapshot(layout.root) == before, "a refused command wrote, created or changed a file"
    lines = [line for line in result.err.splitlines() if line.strip()]
    if code == 1:  # a refusal: one plain line
        assert len(lines) == 1, lines
    else:  # done in part: one plain line for each label left out, each from the app
        assert lines and all(line.startswith("labelassist: ") for line in lines), lines


def test_damaged_label_leaves_the_others_exported_exactly(layout):
    """Item 8: the other labels go out bit for bit; the damaged one is neither in the PNGs nor in COCO."""
    damage_label(layout.project, "001.png")
    home = layout.root / "home"
    assert run_cli("export", layout.project, "--out", layout.root / "png", home=home).code == 3
    written = sorted(p.relative_to(layout.root / "png").as_posix() for p in (layout.root / "png").rglob("*.png"))
    assert written == ["000.png", "002.png", "004.png", "sub/003.png"]
    for rel in written:
        assert np.array_equal(read_mask(layout.root / "png" / rel), read_mask(layout.masks / Path(rel).name))
    assert run_cli("export", layout.project, "--format", "coco", "--out", layout.root / "coco", home=home).code == 3
    coco = json.loads((layout.root / "coco" / "annotations.json").read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == ["000.png", "002.png", "004.PNG", "sub/003.png"]
    inspected = run_cli("inspect", layout.project, "--json", home=home)
    assert inspected.code == 3
    report = json.loads(inspected.out)
    assert report["labels"] == 4 and [d["name"] for d in report["damaged"]] == ["001.png"]


# -- item 14 (export half): a read-only or busy project still exports ------------------------------

@pytest.fixture()
def read_only_project(tmp_path, datasets):
    """A project on a tmpfs mounted read-only (a write-protected USB stick), images outside it."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs read-only and needs root (CI and make test run as root)")
    images, masks, mnt = tmp_path / "imgs", tmp_path / "masks", tmp_path / "stick"
    for folder in (images, masks, mnt):
        folder.mkdir()
    for name in ("000.png", "001.png", "002.png"):
        shutil.copyfile(datasets / "scratch_assay" / "images" / name, images / name)
        shutil.copyfile(datasets / "scratch_assay" / "masks" / name, masks / name)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    try:
        with Project.create(mnt / "p") as project:
            import_images(project, [images], masks=masks)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt / "p", masks
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("fmt", ["png", "coco"])
def test_export_from_a_read_only_project_succeeds(read_only_project, tmp_path, fmt):
    """Exporting from a write-protected stick is a normal use: exit 0, every file, a note that the
    event log could not record it (before: every file written, then exit 1 "nothing was changed")."""
    project, masks = read_only_project
    result = run_cli("export", project, "--format", fmt, "--out", tmp_path / "out", home=tmp_path / "home")
    assert result.code == 0, result.err
    assert "Traceback" not in result.err and "nothing was changed" not in result.err
    assert "event log" in result.err
    if fmt == "png":
        for name in ("000.png", "001.png", "002.png"):
            assert np.array_equal(read_mask(tmp_path / "out" / name), read_mask(masks / name))
    else:
        assert len(json.loads((tmp_path / "out" / "annotations.json").read_text())["images"]) == 3


def test_export_while_another_program_holds_the_database_busy(layout):
    """A project busy past SQLite's 10 s wait still exports: the event log says so, the files stand."""
    holder = sqlite3.connect(layout.project / "labels.sqlite", timeout=1)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a writer that does not let go (a hung program)
        holder.execute("INSERT INTO events (at, actor, action) VALUES ('now', 'test', 'hold')")
        result = run_cli("export", layout.project, "--out", layout.root / "out", home=layout.root / "home")
    finally:
        holder.rollback()
        holder.close()
    assert result.code == 0, result.err
    assert "event log" in result.err and "Traceback" not in result.err
    assert len(list((layout.root / "out").rglob("*.png"))) == len(IMAGES)


# -- item 7: RLE within each segment's box, identical to the full-image encoder -------------------

def _segments_identical(mask: np.ndarray) -> int:
    """Encode every 8-connected segment both ways; return how many there were."""
    from labelassist.export import rle_encode_box  # new in issue 12: imported here so the table runs on main

    n, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    for k in range(1, n):
        x, y, w, h, _ = (int(v) for v in stats[k])
        full = rle_encode(components == k)
        boxed = rle_encode_box(components[y:y + h, x:x + w] == k, y, x, mask.shape)
        assert boxed == full, (k, (x, y, w, h))
        assert all(type(c) is int for c in boxed["counts"])  # plain ints: JSON, as before
    return n - 1


@pytest.mark.parametrize("mask_file", ["scratch_assay/masks/000.png", "scratch_assay/masks/017.png",
                                       "isbi2012_membrane/masks/000.png", "usiigaci_phase/masks/001.png",
                                       "t98g_timelapse/masks/t01.png"])
def test_box_rle_equals_full_image_rle_on_real_masks(datasets, mask_file):
    """Scratch-assay segments span the whole height (runs join across columns) and touch both corners;
    the ISBI membranes and Usiigaci cells are many small segments."""
    assert _segments_identical(read_mask(datasets / mask_file)) >= 1


def test_box_rle_equals_full_image_rle_on_a_speckled_mask_and_edge_cases():
    rng = np.random.default_rng(12)
    speckled = rng.random((300, 257)) < 0.08
    assert _segments_identical(speckled) > 1000
    full = np.ones((7, 5), bool)
    column = np.zeros((7, 5), bool)
    column[:, 2:4] = True  # full-height columns: one run across two columns
    corners = np.zeros((7, 5), bool)
    corners[0, 0] = corners[-1, -1] = True
    for mask in (full, column, corners, np.ones((1, 1), bool), np.eye(6, dtype=bool)):
        _segments_identical(mask)
    from labelassist.export import rle_encode_box

    assert rle_encode_box(np.zeros((0, 0), bool), 0, 0, (4, 3)) == rle_encode(np.zeros((4, 3), bool))


def test_coco_export_of_a_speckled_mask_decodes_to_it(layout):
    """A label of 2048² speckle (about 40 000 segments) exports in seconds; every RLE decodes to its
    segment and all of them together give the mask back. Before: about half an hour."""
    rng = np.random.default_rng(7)
    mask = rng.random((2048, 2048)) < 0.01
    with Project.open(layout.project) as project:
        sample = project.store.add_sample(path="speckle.png", page=0, name="speckle.png", hash="5" * 64, file_size=1,
                                          height=2048, width=2048, dtype="uint8", channels=1, sequence="speckle",
                                          frame=0)
        project.store.save_label(sample, mask, source="manual")
    start = time.perf_counter()
    result = run_cli("export", layout.project, "--format", "coco", "--out", layout.root / "coco",
                     home=layout.root / "home", timeout=120)  # before the fix: about half an hour
    seconds = time.perf_counter() - start
    assert result.code == 0, result.err
    coco = json.loads((layout.root / "coco" / "annotations.json").read_text())
    anns = [a for a in coco["annotations"] if a["image_id"] == sample]
    assert len(anns) > 35_000
    for ann in anns[:50]:
        x, y, w, h = ann["bbox"]
        segment = rle_decode(ann["segmentation"])
        assert segment.sum() == ann["area"] and segment[y:y + h, x:x + w].sum() == ann["area"]
    # Decoding all 40 000 in full would take minutes: lay their runs into one column-major buffer.
    flat = np.zeros(mask.size, np.uint8)
    for ann in anns:
        counts = np.asarray(ann["segmentation"]["counts"], dtype=np.int64)
        bounds = np.cumsum(counts)
        for start, stop in zip(bounds[0::2], bounds[1::2]):
            flat[start:stop] += 1
    assert flat.max() == 1 and np.array_equal(flat.reshape(mask.shape, order="F").astype(bool), mask)
    print(f"coco export of a 2048² speckled label: {seconds:.1f} s")


def test_outputs_never_replace_files_this_app_did_not_write(layout, tmp_path):
    """Review findings: ``prelabel --out`` into the ground-truth mask folder replaced hand-drawn
    masks; ``export --out`` into another project's image folder replaced its originals; a file
    output over another project's labels.sqlite replaced that database. Each is refused with one
    plain line and nothing changes; exporting again into a folder an export made still works."""
    home = tmp_path / "home"
    other = tmp_path / "other"
    shutil.copytree(layout.images, tmp_path / "other-images")
    with Project.create(other) as project:
        import_images(project, [tmp_path / "other-images"])
    before = snapshot(tmp_path)
    refused = [
        ("prelabel", layout.project, "--method", "otsu", "--out", layout.masks),  # the ground truth
        ("export", layout.project, "--out", tmp_path / "other-images"),  # another project's images
        ("export", layout.project, "--out", other / "exports"),  # inside another project
        ("job", "export", layout.project, "--out", other / "labels.sqlite"),  # another project's database
    ]
    for argv in refused:
        result = run_cli(*argv, home=home)
        assert_plain_failure(result, 1)
        assert len([line for line in result.err.splitlines() if line.strip()]) == 1, result.err
        assert snapshot(tmp_path) == before, f"{argv[0]} changed a file"
    out = tmp_path / "masks-out"
    for _ in range(2):  # an export may replace what an earlier export wrote there
        assert run_cli("export", layout.project, "--out", out, home=home).code == 0
    assert (out / "000.png").is_file()
