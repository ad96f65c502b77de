"""Bad input and faults around importing images and masks, relinking and the demo (issue 12).

Each row of the table: files a user hands to ``import`` (or ``demo``), the exit code, the words of
the one plain line at the end of stderr, how many images were still added, and the stored labels bit
for bit unchanged. The cases that succeed (with a line in the report) and the faults that need a
real setup (a full disk, an unreadable file) follow the table.
"""

from __future__ import annotations

import ctypes
import io
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from badinput import SCRATCH, assert_plain_failure, copy_of, labels_digest, run_cli, scratch_template
from labelassist import fileio, images
from labelassist.errors import ImageReadError
from labelassist.images import read_mask

LABELLED = [f"{k:03d}.png" for k in range(6)]  # what the template project holds, with their masks


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, datasets) -> Path:
    """A scratch_assay project with six imported labels: the template each case copies."""
    return scratch_template(tmp_path_factory.mktemp("template"), datasets, images=len(LABELLED))


@pytest.fixture()
def project(labelled, tmp_path) -> Path:
    return copy_of(labelled, tmp_path)


def _samples(project: Path) -> list[tuple]:
    """(name, path, page) of every sample, read-only through SQLite."""
    conn = sqlite3.connect((project / "labels.sqlite").absolute().as_uri() + "?mode=ro", uri=True)
    try:
        return conn.execute("SELECT name, path, page FROM samples ORDER BY id").fetchall()
    finally:
        conn.close()


def _latest(project: Path) -> dict[str, tuple[str, np.ndarray]]:
    """sample name -> (source, mask) of its newest label version."""
    from labelassist.project import Project

    with Project.open(project) as p:
        return {s.name: (label.source, label.mask) for s, label in p.store.latest_labels()}


def _added(result) -> int:
    found = re.search(r"added (\d+) image", result.out)
    return int(found.group(1)) if found else -1


# --------------------------------------------------------------------------- files that are bad


def _scratch(datasets: Path, kind: str, k: int) -> Path:
    return datasets / SCRATCH / kind / f"{k:03d}.png"


def _mask_array(datasets: Path, k: int) -> np.ndarray:
    return read_mask(_scratch(datasets, "masks", k)).astype(np.uint8) * 255


def self_referencing_tiff() -> bytes:
    """A tiny valid TIFF whose only page directory names itself as the next one (a loop)."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((4, 4), np.uint8))
    data = bytearray(buffer.getvalue())
    assert data[:4] == b"II*\x00"  # classic little-endian TIFF
    (ifd,) = struct.unpack("<I", data[4:8])
    (entries,) = struct.unpack("<H", data[ifd:ifd + 2])
    next_at = ifd + 2 + 12 * entries
    data[next_at:next_at + 4] = struct.pack("<I", ifd)
    return bytes(data)


def _with_crc(data: bytearray, start: int, end: int) -> None:
    """Rewrite the CRC of the chunk whose type+data span data[start:end]."""
    data[end:end + 4] = zlib.crc32(bytes(data[start:end])).to_bytes(4, "big")


def _good_pair(src: Path, datasets: Path) -> None:
    """Two readable images the import must still add beside a bad file."""
    for k in (10, 11):
        shutil.copy(_scratch(datasets, "images", k), src)


def _loop_tiff(src, datasets):
    _good_pair(src, datasets)
    (src / "loop.tif").write_bytes(self_referencing_tiff())


def _png_cut_mid_chunk(src, datasets):
    _good_pair(src, datasets)
    data = _scratch(datasets, "images", 12).read_bytes()
    (src / "cut.png").write_bytes(data[: len(data) // 2] + data[-12:])  # half, then IEND again


def _png_cut_at_chunk(src, datasets):
    """Whole chunks dropped: every chunk is intact, only the pixel data ends early."""
    _good_pair(src, datasets)
    data = _scratch(datasets, "images", 12).read_bytes()
    pos, starts = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        if data[pos + 4:pos + 8] == b"IDAT":
            starts.append(pos)
        pos += 12 + length
    (src / "short.png").write_bytes(data[: starts[len(starts) // 2]] + data[-12:])


def _jpeg_bomb(src, datasets):
    """A 333-byte JPEG whose frame header says 16000 x 16000 (256 megapixels)."""
    _good_pair(src, datasets)
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 16000, 16000)
    (src / "bomb.jpg").write_bytes(bytes(data))


def _png16_rgb_large(src, datasets):
    """A 16-bit RGB PNG of 7000 x 7000: 49 megapixels (under the old pixel limit) but 294 MB decoded."""
    _good_pair(src, datasets)
    data = bytearray(cv2.imencode(".png", np.zeros((64, 64, 3), np.uint16))[1].tobytes())
    data[16:24] = struct.pack(">II", 7000, 7000)
    _with_crc(data, 12, 29)
    (src / "wide16.png").write_bytes(bytes(data))


def _damaged_with_latin1_name(src, datasets):
    _good_pair(src, datasets)
    data = _scratch(datasets, "images", 12).read_bytes()
    with open(os.path.join(os.fsencode(src), b"caf\xe9.png"), "wb") as fh:  # a Latin-1 name, not UTF-8
        fh.write(data[:2000])


def _masks_layout(src: Path) -> tuple[Path, Path]:
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    return src / "images", src / "masks"


def _same_image_two_masks(src, datasets):
    imgs, masks = _masks_layout(src)
    for name in ("a.png", "b.png"):
        shutil.copy(_scratch(datasets, "images", 10), imgs / name)
    shutil.copy(_scratch(datasets, "masks", 10), masks / "a.png")
    shutil.copy(_scratch(datasets, "masks", 11), masks / "b.png")


def _stack(datasets: Path, first: int, n: int) -> np.ndarray:
    return np.stack([cv2.imread(str(_scratch(datasets, "images", first + k)), cv2.IMREAD_UNCHANGED)
                     for k in range(n)])


def _one_mask_for_five_frames(src, datasets):
    imgs, masks = _masks_layout(src)
    tifffile.imwrite(imgs / "stack.tif", _stack(datasets, 20, 5), photometric="minisblack")
    shutil.copy(_scratch(datasets, "masks", 20), masks / "stack.png")


def _three_masks_as_colour_planes(src, datasets):
    imgs, masks = _masks_layout(src)
    tifffile.imwrite(imgs / "three.tif", _stack(datasets, 30, 3), photometric="minisblack")
    # What tifffile (2026.3) writes for a (3, H, W) array by default: ONE page with three colour planes.
    tifffile.imwrite(masks / "three.tif", np.stack([_mask_array(datasets, 30 + k) for k in range(3)]),
                     photometric="rgb", planarconfig="separate")


def _equal_planes_for_three_frames(src, datasets):
    imgs, masks = _masks_layout(src)
    tifffile.imwrite(imgs / "three.tif", _stack(datasets, 30, 3), photometric="minisblack")
    tifffile.imwrite(masks / "three.tif", np.stack([_mask_array(datasets, 30)] * 3), photometric="rgb",
                     planarconfig="separate")


def _planes_for_single_image(src, datasets):
    imgs, masks = _masks_layout(src)
    shutil.copy(_scratch(datasets, "images", 40), imgs / "one.png")
    tifffile.imwrite(masks / "one.tif", np.stack([_mask_array(datasets, 40 + k) for k in range(3)]),
                     photometric="rgb", planarconfig="separate")


def _mask_stack_for_single_image(src, datasets):
    imgs, masks = _masks_layout(src)
    shutil.copy(_scratch(datasets, "images", 40), imgs / "one.png")
    tifffile.imwrite(masks / "one.tif", np.stack([_mask_array(datasets, 40 + k) for k in range(3)]),
                     photometric="minisblack")


def _colour_and_alpha_disagree(src, datasets):
    imgs, masks = _masks_layout(src)
    shutil.copy(_scratch(datasets, "images", 41), imgs / "one.png")
    grey = _mask_array(datasets, 41)
    bgra = np.dstack([grey, grey, grey, _mask_array(datasets, 42)])
    cv2.imwrite(str(masks / "one.png"), bgra)


def _demo_folder_is_a_file(src, datasets):
    (src / "demo-here").write_text("a file where the demo folder should go")


def _demo_folder_holds_other_files(src, datasets):
    (src / "mine").mkdir()
    (src / "mine" / "thesis.docx").write_bytes(b"PK\x03\x04 someone's work")


# (id, setup(src, datasets), argv with {p} = project and {src}, exit code, words of the last line, images added)
CASES = [
    ("tiff_page_directory_points_to_itself", _loop_tiff, ["import", "{p}", "{src}"], 3,
     ["loop.tif", "loop"], 2),
    ("png_cut_then_iend_appended", _png_cut_mid_chunk, ["import", "{p}", "{src}"], 3,
     ["cut.png", "truncated"], 2),
    ("png_idat_chunks_dropped_then_iend", _png_cut_at_chunk, ["import", "{p}", "{src}"], 3,
     ["short.png", "ends early"], 2),
    ("jpeg_335_bytes_declaring_16000_squared", _jpeg_bomb, ["import", "{p}", "{src}"], 3,
     ["bomb.jpg", "16000 x 16000", "more than a file of"], 2),
    ("png_16bit_rgb_over_the_byte_limit", _png16_rgb_large, ["import", "{p}", "{src}"], 3,
     ["wide16.png", "too large", "MB decoded"], 2),
    ("damaged_file_with_a_non_utf8_name", _damaged_with_latin1_name, ["import", "{p}", "{src}"], 3,
     ["caf\\xe9.png", "truncated"], 2),
    ("two_identical_images_with_different_masks", _same_image_two_masks,
     ["import", "{p}", "{src}/images", "--masks", "{src}/masks"], 3, ["a.png and b.png", "same image", "neither"], 1),
    ("one_2d_mask_for_a_5_frame_stack", _one_mask_for_five_frames,
     ["import", "{p}", "{src}/images", "--masks", "{src}/masks"], 3, ["stack.tif has 5 frames", "one page per frame"],
     5),
    ("three_masks_saved_as_colour_planes", _three_masks_as_colour_planes,
     ["import", "{p}", "{src}/images", "--masks", "{src}/masks"], 3,
     ["three.tif has 3 frames", "colour planes", "3 pages"], 3),
    ("equal_planes_for_a_3_frame_stack", _equal_planes_for_three_frames,
     ["import", "{p}", "{src}/images", "--masks", "{src}/masks"], 3, ["three.tif has 3 frames", "colour planes"], 3),
    ("three_different_planes_for_a_single_image", _planes_for_single_image,
     ["import", "{p}", "{src}/images", "--masks", "{src}/masks"], 3, ["one.tif holds 3 different masks",
                                                                      "colour planes"], 1),
    ("mask_stack_for_a_single_image", _mask_stack_for_single_image,
     ["import", "{p}", "{src}/images", "--masks", "{src}/masks"], 3, ["one.tif has 3 pages", "single image"], 1),
    ("colour_and_alpha_hold_different_masks", _colour_and_alpha_disagree,
     ["import", "{p}", "{src}/images", "--masks", "{src}/masks"], 3, ["one.png", "alpha channel"], 1),
    ("demo_folder_is_a_file", _demo_folder_is_a_file, ["demo", "--folder", "{src}/demo-here", "--no-open"], 1,
     ["demo-here", "is a file"], None),
    ("demo_folder_holds_other_files", _demo_folder_holds_other_files,
     ["demo", "--folder", "{src}/mine", "--no-open"], 1, ["mine", "not empty", "thesis.docx"], None),
]


@pytest.mark.parametrize("setup,argv,code,words,added", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_import_input(project, tmp_path, datasets, setup, argv, code, words, added):
    src = tmp_path / "src"
    src.mkdir()
    setup(src, datasets)
    before = labels_digest(project)
    argv = [a.format(p=project, src=src) for a in argv]
    # A hang (the self-referencing TIFF did) fails here instead of stalling CI.
    result = run_cli(*argv, home=tmp_path / "home", timeout=90)
    assert_plain_failure(result, code, *words)
    assert all(w.lower() in result.message.lower() for w in words), result.err  # ONE line says it all
    if added is not None:
        assert _added(result) == added, result.out
    assert labels_digest(project) == before


# --------------------------------------------------------------------------- item 5: re-import over corrections


def test_reimporting_masks_keeps_manual_corrections(project, tmp_path, datasets):
    from labelassist.project import Project

    root = project.parent
    with Project.open(project) as p:
        sample = next(s for s in p.store.samples() if s.name == "001.png")
        imported = p.store.latest_label(sample.id)
        corrected = imported.mask.copy()
        corrected[:40, :40] = ~corrected[:40, :40]
        p.store.save_label(sample.id, corrected, source="manual", parent_id=imported.id)
    before = labels_digest(project)
    result = run_cli("import", project, root / "images", "--masks", root / "masks", home=tmp_path / "home")
    assert result.code == 0, result.err
    assert "kept your corrections on 1 sample" in result.out, result.out
    assert "5 unchanged" in result.out  # bit-identical masks add nothing
    assert labels_digest(project) == before
    source, mask = _latest(project)["001.png"]
    assert source == "manual" and np.array_equal(mask, corrected)


def test_a_changed_mask_file_never_replaces_an_existing_label(project, tmp_path, datasets):
    masks = tmp_path / "masks"
    shutil.copytree(project.parent / "masks", masks, symlinks=False)
    (masks / "002.png").unlink()
    shutil.copy(_scratch(datasets, "masks", 3), masks / "002.png")  # another mask, same size
    before = labels_digest(project)
    result = run_cli("import", project, project.parent / "images", "--masks", masks, home=tmp_path / "home")
    assert result.code == 0, result.err
    assert "kept the label imported earlier on 1 sample" in result.out, result.out
    assert labels_digest(project) == before


# --------------------------------------------------------------------------- item 16: what is accepted, and said


def test_alpha_only_masks_are_read_from_alpha_and_unmatched_masks_are_listed(project, tmp_path, datasets):
    src = tmp_path / "src"
    imgs, masks = _masks_layout(src)
    shutil.copy(_scratch(datasets, "images", 50), imgs / "050.png")
    truth = _mask_array(datasets, 50)
    blank = np.zeros_like(truth)
    cv2.imwrite(str(masks / "050.png"), np.dstack([blank, blank, blank, truth]))  # drawn on a transparent layer
    shutil.copy(_scratch(datasets, "masks", 51), masks / "orphan.png")
    result = run_cli("import", project, imgs, "--masks", masks, home=tmp_path / "home")
    assert result.code == 0, result.err
    assert "read 1 mask from the alpha channel" in result.out and "050.png" in result.out, result.out
    assert "1 mask matches no image and was not used: orphan.png" in result.out, result.out
    source, mask = _latest(project)["050.png"]
    assert source == "import" and np.array_equal(mask, truth > 0)


def test_identical_images_with_equal_masks_import_the_mask_once(project, tmp_path, datasets):
    src = tmp_path / "src"
    imgs, masks = _masks_layout(src)
    for name in ("a.png", "b.png"):
        shutil.copy(_scratch(datasets, "images", 10), imgs / name)
        shutil.copy(_scratch(datasets, "masks", 10), masks / name)
    result = run_cli("import", project, imgs, "--masks", masks, home=tmp_path / "home")
    assert result.code == 0, result.err
    assert "added 1 image (1 already in the project)" in result.out and "imported 1 mask" in result.out


# --------------------------------------------------------------------------- item 6: every page loop is bounded


def test_every_loop_over_pages_and_frames_is_bounded(tmp_path, datasets, monkeypatch):
    monkeypatch.setattr("labelassist.images.decode.MAX_FRAMES", 3)  # where probe reads it
    frames = _stack(datasets, 0, 4)
    tifffile.imwrite(tmp_path / "four.tif", frames, photometric="minisblack")
    with pytest.raises(ImageReadError, match="more than 3 pages"):
        images.probe(tmp_path / "four.tif")
    video = cv2.VideoWriter(str(tmp_path / "four.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5,
                            (frames.shape[2], frames.shape[1]), isColor=False)
    for frame in frames:
        video.write(frame)
    video.release()
    with pytest.raises(ImageReadError, match="more than 3 frames"):
        images.probe(tmp_path / "four.avi")
    with pytest.raises(ImageReadError, match="loop"):
        loop = tmp_path / "loop.tif"
        loop.write_bytes(self_referencing_tiff())
        images.probe(loop)


# --------------------------------------------------------------------------- item 15: stopped part-way


def test_non_utf8_file_names_import(project, tmp_path, datasets):
    src = tmp_path / "src"
    src.mkdir()
    raw = os.fsencode(src)
    shutil.copy(_scratch(datasets, "images", 10), os.fsdecode(os.path.join(raw, b"caf\xe9.png")))
    shutil.copy(_scratch(datasets, "images", 11), os.fsdecode(os.path.join(raw, b"\xff\xfe-011.png")))
    os.mkdir(os.path.join(raw, b"d\xe9p\xf4t"))  # a folder name that is not UTF-8 either
    shutil.copy(_scratch(datasets, "images", 12), os.fsdecode(os.path.join(raw, b"d\xe9p\xf4t", b"012.png")))
    result = run_cli("import", project, src, home=tmp_path / "home")
    assert result.code == 0, result.err
    assert "added 3 images" in result.out
    stored = {name: path for name, path, _ in _samples(project)}
    assert "caf\\xe9.png" in stored  # shown with an escape, never a crash on printing
    # The stored text leads back to the very file (its bytes are not UTF-8).
    for name, tail in (("caf\\xe9.png", b"caf\xe9.png"), ("d\\xe9p\\xf4t/012.png", b"d\xe9p\xf4t/012.png")):
        path = project / fileio.text_to_path(stored[name])
        assert os.fsencode(path).endswith(tail) and path.is_file(), (name, stored)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root only: the real full-disk condition; CI runs as root)."""
    if os.geteuid() != 0:
        pytest.fail("the disk-full test needs root to mount a tmpfs (CI runs as root)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill the disk until about ``leave`` bytes are free; returns the filler file."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


def test_disk_full_mid_import_says_what_was_added(small_disk, tmp_path, datasets):
    project = small_disk / "p"
    first = tmp_path / "first"
    first.mkdir()
    for name in LABELLED[:2]:
        (first / name).symlink_to(datasets / SCRATCH / "images" / name)
    masks = tmp_path / "masks"
    masks.mkdir()
    for name in LABELLED[:2]:
        (masks / name).symlink_to(datasets / SCRATCH / "masks" / name)
    home = tmp_path / "home"
    assert run_cli("init", project, "--images", first, "--masks", masks, home=home).code == 0
    before = labels_digest(project)
    filler = _fill(small_disk, 48 * 1024)
    result = run_cli("import", project, datasets / SCRATCH / "images", home=home)
    assert_plain_failure(result, 3, "stopped part-way", "disk is full", "added before it")
    assert "nothing was changed" not in result.err
    added = _added(result)
    assert 0 < added < 58, result.out
    assert len(_samples(project)) == 2 + added  # exactly what it said
    assert labels_digest(project) == before
    filler.unlink()
    again = run_cli("import", project, datasets / SCRATCH / "images", home=home)
    assert again.code == 0, again.err
    assert len(_samples(project)) == 60 and labels_digest(project) == before


# --------------------------------------------------------------------------- relink: skip what cannot be read


def _without_read_override() -> None:
    """In the child: give up root's right to read any file, so a mode-000 file is unreadable as for a user."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_relink_skips_an_unreadable_candidate_and_goes_on(project, tmp_path, datasets):
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in LABELLED:  # the images move: the project's symlinks are gone, five files are here
        (project.parent / "images" / name).unlink()
        if name != "005.png":
            shutil.copy(_scratch(datasets, "images", int(name[:3])), moved / name)
    # The sixth is there too, but nobody may read it: it is skipped and named, the others are found.
    shutil.copy(_scratch(datasets, "images", 5), moved / "locked.png")
    (moved / "locked.png").chmod(0)
    before = labels_digest(project)
    env = dict(os.environ, LABELASSIST_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-m", "labelassist", "relink", str(project), str(moved)],
                          capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
                          preexec_fn=_without_read_override if os.geteuid() == 0 else None)
    assert proc.returncode == 3, proc.stderr  # done in part: one image is still missing
    assert "found 5 moved images again" in proc.stdout, proc.stdout
    assert "skipped 1 file that could not be read" in proc.stdout and "locked.png" in proc.stdout
    assert "still missing: 005.png" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert labels_digest(project) == before
