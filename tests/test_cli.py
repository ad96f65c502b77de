"""The command line on real data: init, import, status, export round trips, relink, demo, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from labelassist.cli import main
from labelassist.export import rle_decode
from labelassist.images import read_mask
from labelassist.project import Project
from labelassist.store import SCHEMA_VERSION


def run(capsys, *argv):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def status(capsys, project) -> dict:
    code, out, _ = run(capsys, "status", project, "--json")
    assert code == 0
    return json.loads(out)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELASSIST_HOME", str(tmp_path / "home"))


def test_every_command_has_help():
    for command in ["init", "import", "relink", "status", "export", "demo"]:
        result = subprocess.run([sys.executable, "-m", "labelassist", command, "--help"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "usage: labelassist " + command in result.stdout


def test_console_script_is_installed():
    exe = shutil.which("labelassist", path=os.path.dirname(sys.executable))
    assert exe, "the labelassist console script is not installed beside this Python"
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("labelassist ")


@pytest.mark.parametrize("dataset,masks_ext", [("scratch_assay", ".png"), ("usiigaci_phase", ".png")])
def test_init_with_masks_then_export_reproduces_the_masks(capsys, tmp_path, datasets, dataset, masks_ext):
    src = datasets / dataset
    n = len(list((src / "images").iterdir()))
    code, out, err = run(capsys, "init", tmp_path / "p", "--images", src / "images", "--masks", src / "masks")
    assert code == 0, err
    assert f"added {n} images" in out and f"imported {n} masks as labels" in out
    st = status(capsys, tmp_path / "p")
    assert (st["samples"], st["labelled"], st["label_versions"], st["sequences"]) == (n, n, n, 1)
    code, out, err = run(capsys, "export", tmp_path / "p", "--format", "png", "--out", tmp_path / "out")
    assert code == 0, err
    # Beside the masks, the hidden list of what the export wrote there (so it never replaces anything else).
    exported = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != ".labelassist-export.json")
    assert exported == sorted(p.name for p in (src / "masks").iterdir())
    assert json.loads((tmp_path / "out" / ".labelassist-export.json").read_text())["files"] == exported
    for original in (src / "masks").iterdir():
        a = cv2.imread(str(original), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "out" / original.name), cv2.IMREAD_UNCHANGED)
        assert b.dtype == np.uint8 and np.array_equal(a, b), original.name  # bit for bit


def test_coco_export_rle_decodes_to_the_masks(capsys, tmp_path, datasets):
    src = datasets / "scratch_assay"
    assert run(capsys, "init", tmp_path / "p", "--images", src / "images", "--masks", src / "masks")[0] == 0
    assert run(capsys, "export", tmp_path / "p", "--format", "coco", "--out", tmp_path / "coco")[0] == 0
    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert len(coco["images"]) == 60
    by_image = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for image in coco["images"]:
        truth = read_mask(src / "masks" / image["file_name"])
        union = np.zeros_like(truth)
        for ann in by_image.get(image["id"], []):
            segment = rle_decode(ann["segmentation"])
            assert int(segment.sum()) == ann["area"]
            x, y, w, h = ann["bbox"]
            assert segment[y:y + h, x:x + w].sum() == ann["area"]
            union |= segment
        assert np.array_equal(union, truth), image["file_name"]


@pytest.mark.parametrize("dataset,n", [("scratch_assay", 60), ("isbi2012_membrane", 30),
                                       ("usiigaci_phase", 12), ("t98g_timelapse", 37)])
def test_import_each_dataset(capsys, tmp_path, datasets, dataset, n):
    assert run(capsys, "init", tmp_path / "p", "--images", datasets / dataset / "images")[0] == 0
    st = status(capsys, tmp_path / "p")
    assert (st["samples"], st["labelled"], st["sequences"], st["missing_files"]) == (n, 0, 1, 0)
    with Project.open(tmp_path / "p") as project:
        samples = project.store.samples()
        names = [s.name for s in samples]
        assert [s.frame for s in samples] == list(range(n))
        assert names == sorted(names, key=lambda s: [int(t) if t.isdigit() else t for t in
                                                     __import__("re").split(r"(\d+)", s)])
        first = samples[0]
        assert not Path(first.path).is_absolute()  # referenced relative to the project
        assert project.resolve(first.path).is_file()
    # Importing the same folder again adds nothing.
    code, out, _ = run(capsys, "import", tmp_path / "p", datasets / dataset / "images")
    assert code == 0 and f"added 0 images ({n} already in the project)" in out


def test_stack_and_video_become_sequences_in_frame_order(capsys, tmp_path, datasets):
    frames = [cv2.imread(str(datasets / "t98g_timelapse" / "images" / f"t{k:02d}.png"), cv2.IMREAD_UNCHANGED)
              for k in range(1, 7)]
    src = tmp_path / "src"
    src.mkdir()
    tifffile.imwrite(src / "stack.tif", np.stack(frames))
    writer = cv2.VideoWriter(str(src / "movie.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (512, 512), isColor=False)
    for f in frames:
        writer.write((f >> 8).astype(np.uint8))
    writer.release()
    assert run(capsys, "init", tmp_path / "p", "--images", src)[0] == 0
    with Project.open(tmp_path / "p") as project:
        samples = project.store.samples()
    by_seq = {}
    for s in samples:
        by_seq.setdefault(s.sequence, []).append(s)
    assert len(by_seq) == 2
    for members in by_seq.values():
        assert [s.frame for s in members] == list(range(6))
        assert [s.page for s in members] == list(range(6))


def test_moved_image_folder_is_relinked_by_hash(capsys, tmp_path, datasets):
    images = tmp_path / "usb" / "images"
    shutil.copytree(datasets / "isbi2012_membrane" / "images", images)
    assert run(capsys, "init", tmp_path / "p", "--images", images)[0] == 0
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(str(images), moved)
    (moved / "029.png").rename(moved / "slice-twenty-nine.png")  # names may change too: content decides
    assert status(capsys, tmp_path / "p")["missing_files"] == 30
    code, out, err = run(capsys, "relink", tmp_path / "p", tmp_path / "elsewhere")
    assert code == 0, err
    assert "found 30 moved images again" in out
    assert status(capsys, tmp_path / "p")["missing_files"] == 0
    with Project.open(tmp_path / "p") as project:
        assert len(project.store.events("relink")) == 30


def test_demo_project_is_created_then_reused(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "--folder", tmp_path / "demo", "--no-open")
    assert code == 0 and f"demo project: {tmp_path / 'demo'}" in out
    st = status(capsys, tmp_path / "demo")
    assert (st["samples"], st["labelled"], st["sequences"]) == (6, 1, 1)
    assert (tmp_path / "demo" / "LICENSE-images").is_file()
    assert run(capsys, "demo", "--folder", tmp_path / "demo", "--no-open")[0] == 0
    assert status(capsys, tmp_path / "demo")["samples"] == 6


# -- bad input: a clear message naming what and why; nothing stored changes -----------------------

@pytest.fixture
def labelled_project(capsys, tmp_path, datasets):
    src = datasets / "scratch_assay"
    images = tmp_path / "images"
    images.mkdir()
    for k in range(3):
        shutil.copy(src / "images" / f"{k:03d}.png", images)
    assert run(capsys, "init", tmp_path / "p", "--images", images, "--masks", src / "masks")[0] == 0
    return tmp_path / "p"


def _labels_snapshot(project_dir):
    with Project.open(project_dir) as project:
        return [(s.id, v.id, v.blob) for s in project.store.samples() for v in project.store.label_history(s.id)]


def test_bad_images_are_named_with_the_reason_and_the_rest_imported(capsys, tmp_path, datasets, labelled_project):
    before = _labels_snapshot(labelled_project)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    data = (datasets / "scratch_assay" / "images" / "010.png").read_bytes()
    (bad / "truncated.png").write_bytes(data[: len(data) // 2])
    (bad / "noise.tif").write_bytes(os.urandom(5000))
    (bad / "notes.txt").write_text("not an image")
    shutil.copy(datasets / "scratch_assay" / "images" / "011.png", bad / "good.png")
    code, out, err = run(capsys, "import", labelled_project, bad)
    assert code != 0
    assert "added 1 image" in out
    assert "empty.png" in out and "empty (0 bytes)" in out
    assert "truncated.png" in out and "truncated" in out
    assert "noise.tif" in out
    assert "notes.txt" in out  # skipped, not an image
    assert _labels_snapshot(labelled_project) == before


def test_unsupported_single_file_is_refused(capsys, tmp_path, labelled_project):
    doc = tmp_path / "protocol.docx"
    doc.write_bytes(b"PK\x03\x04 word document")
    code, out, err = run(capsys, "import", labelled_project, doc)
    assert code != 0
    assert "protocol.docx" in out + err and "unsupported" in (out + err).lower()


def test_mask_of_the_wrong_size_names_both_sizes(capsys, tmp_path, datasets):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    shutil.copy(datasets / "scratch_assay" / "images" / "000.png", images)
    shutil.copy(datasets / "isbi2012_membrane" / "masks" / "000.png", masks)  # 512x512, not 520x388
    code, out, err = run(capsys, "init", tmp_path / "p", "--images", images, "--masks", masks)
    assert code != 0
    assert "000.png is 512x512 pixels but its image 000.png is 520x388" in out
    assert status(capsys, tmp_path / "p")["labelled"] == 0


def test_non_binary_mask_lists_the_values(capsys, tmp_path, datasets):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    shutil.copy(datasets / "scratch_assay" / "images" / "000.png", images)
    grey = cv2.imread(str(datasets / "scratch_assay" / "images" / "000.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(masks / "000.png"), (grey // 64) * 60)  # values 0, 60, 120, 180
    code, out, err = run(capsys, "init", tmp_path / "p", "--images", images, "--masks", masks)
    assert code != 0
    assert "not a binary mask" in out and "0, 60, 120, 180" in out
    assert status(capsys, tmp_path / "p")["labelled"] == 0


def test_not_a_project(capsys, tmp_path):
    (tmp_path / "folder").mkdir()
    code, out, err = run(capsys, "status", tmp_path / "folder")
    assert code == 1
    assert err.strip() == f"labelassist: error: {tmp_path / 'folder'} is not a Label Assistant project (it has no project.toml)"
    code, _, err = run(capsys, "status", tmp_path / "nowhere")
    assert code == 1 and "does not exist" in err


def test_init_refuses_an_existing_project(capsys, labelled_project, datasets):
    before = _labels_snapshot(labelled_project)
    code, _, err = run(capsys, "init", labelled_project, "--images", datasets / "scratch_assay" / "images")
    assert code == 1 and "already a project" in err
    assert _labels_snapshot(labelled_project) == before


def test_database_from_a_newer_version(capsys, labelled_project):
    import sqlite3

    conn = sqlite3.connect(labelled_project / "labels.sqlite")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    code, _, err = run(capsys, "status", labelled_project)
    assert code == 1 and "newer Label Assistant" in err and "update the app" in err
    assert "Traceback" not in err


def test_broken_settings_are_named(capsys, labelled_project):
    settings = labelled_project / "project.toml"
    settings.write_text(settings.read_text().replace("gamma0 = 0.75", "gamma0 = \"high\""))
    code, _, err = run(capsys, "status", labelled_project)
    assert code == 1 and "'inspection.gamma0' must be float" in err
    settings.write_text(settings.read_text().replace("gamma0 = \"high\"", "gamma0 = 0.75\ngama0 = 0.5"))
    code, _, err = run(capsys, "status", labelled_project)
    assert code == 1 and "unknown setting 'inspection.gama0'" in err


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root only: the real full-disk and read-only conditions)."""
    if os.geteuid() != 0:
        pytest.fail("the disk-full and read-only tests need root to mount a tmpfs (CI runs as root)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_while_saving_keeps_earlier_labels(capsys, small_disk, datasets):
    src = datasets / "scratch_assay"
    project_dir = small_disk / "p"
    assert run(capsys, "init", project_dir, "--images", src / "images", "--masks", src / "masks")[0] == 0
    with Project.open(project_dir) as project:
        sample = project.store.samples()[0]
        rng = np.random.default_rng(1)
        with open(small_disk / "filler", "wb") as fh:  # fill the disk up
            try:
                while True:
                    fh.write(rng.bytes(64 * 1024))
            except OSError:
                pass
        from labelassist.errors import StoreError

        with pytest.raises(StoreError, match="the disk is full|could not be written"):
            for _ in range(50):
                project.store.save_label(sample.id, rng.random((sample.height, sample.width)) > 0.5,
                                         source="manual")
    (small_disk / "filler").unlink()
    with Project.open(project_dir) as project:
        assert project.store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for s in project.store.samples():
            assert np.array_equal(project.store.label_history(s.id)[0].mask, read_mask(src / "masks" / s.name))


def test_read_only_disk_while_saving(capsys, small_disk, datasets):
    src = datasets / "scratch_assay"
    project_dir = small_disk / "p"
    assert run(capsys, "init", project_dir, "--images", src / "images")[0] == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    mask = read_mask(src / "masks" / "000.png")
    from labelassist.errors import LabelAssistError

    with pytest.raises(LabelAssistError, match="read-only"):
        with Project.open(project_dir) as project:
            project.store.save_label(project.store.samples()[0].id, mask, source="manual")
    code, _, err = run(capsys, "import", project_dir, src / "images")
    assert code == 1 and "read-only" in err


def test_evaluate_box_on_a_project(capsys, tmp_path, datasets):
    """`labelassist evaluate box` compares tap-to-segment methods on the project's own labels."""
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for name in ("050.png", "059.png"):
        shutil.copy(datasets / "scratch_assay" / "images" / name, src / "images")
        shutil.copy(datasets / "scratch_assay" / "masks" / name, src / "masks")
    assert run(capsys, "init", tmp_path / "p", "--images", src / "images", "--masks", src / "masks")[0] == 0
    code, out, err = run(capsys, "evaluate", "box", tmp_path / "p", "--samples", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["methods"]["grabcut"]["objects"] == 4  # two segments in each scratch frame
    assert result["methods"]["grabcut"]["dsc_mean"] > 0.9
    assert set(result["methods"]) == ({"box_model", "grabcut"} if result["box_model_installed"] else {"grabcut"})
    assert result["choice"]["method"] == result["best"] == "grabcut"
    # one tap at each object's middle, as separate fields: the model's and the watershed's
    assert set(result["points"]) == ({"box_model", "watershed"} if result["box_model_installed"] else {"watershed"})
    assert all(p["objects"] == 4 and 0 <= p["dsc_mean"] <= 1 and p["ms_per_point"] > 0
               for p in result["points"].values())
    assert result["adapted"] is None  # nothing learned yet: LiteMedSAM's own decoder
    code, out, err = run(capsys, "evaluate", "box", tmp_path / "empty-not-a-project")
    assert code != 0 and "empty-not-a-project" in err
