"""labelassist.images on the real datasets: reading, probing, discovery, display, thumbnails."""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from labelassist import fileio, images, intensity
from labelassist.errors import ImageReadError, MaskError

# (set, first image, shape, dtype, number of images, sequence id)
REAL_SETS = [
    ("scratch_assay", "000.png", (388, 520), "uint8", 60, "/"),
    ("isbi2012_membrane", "000.png", (512, 512), "uint8", 30, "/"),
    ("usiigaci_phase", "001.tif", (1022, 1024), "uint16", 12, "/"),
    ("t98g_timelapse", "t01.png", (512, 512), "uint16", 37, "/t"),
]


def _frames(datasets: Path, n: int = 5) -> list[np.ndarray]:
    """n consecutive real uint16 frames (T98G time-lapse)."""
    return [images.read_image(datasets / "t98g_timelapse" / "images" / f"t{k:02d}.png") for k in range(1, n + 1)]


# --------------------------------------------------------------------------- probe / read


@pytest.mark.parametrize("name, first, shape, dtype, count, sequence", REAL_SETS)
def test_probe_and_read_real_image(datasets, name, first, shape, dtype, count, sequence):
    path = datasets / name / "images" / first
    (info,) = images.probe(path)
    assert (info.height, info.width, info.dtype, info.channels, info.page) == (*shape, dtype, 1, 0)
    image = images.read_image(path)
    assert image.shape == shape and image.dtype == dtype
    assert image.flags.c_contiguous
    # Same pixels as the reference readers.
    reference = tifffile.imread(path) if path.suffix == ".tif" else cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(image, reference)


@pytest.mark.parametrize("name", [s[0] for s in REAL_SETS])
def test_probe_agrees_with_read_for_every_file(datasets, name):
    for path in sorted((datasets / name / "images").iterdir()):
        (info,) = images.probe(path)
        image = images.read_image(path)
        assert (info.height, info.width) == image.shape[:2]
        assert info.dtype == image.dtype.name
        assert info.channels == (1 if image.ndim == 2 else 3)


@pytest.mark.parametrize("name, first, shape, dtype, count, sequence", REAL_SETS)
def test_discover_real_folder_is_one_sequence_in_natural_order(datasets, name, first, shape, dtype, count, sequence):
    calls = []
    found = images.discover([datasets / name / "images"], progress=lambda done, total: calls.append((done, total)))
    assert len(found.frames) == count
    assert {f.sequence for f in found.frames} == {sequence}
    assert [f.frame for f in found.frames] == list(range(count))
    names = [f.name for f in found.frames]
    assert names == sorted(names, key=images.natural_key)
    assert names[0] == first and "/" not in names[0]
    assert all(f.path.is_absolute() and f.page == 0 for f in found.frames)
    assert calls[-1] == (count, count) and len(calls) == count
    assert found.skipped == [] and found.errors == {}


def test_discover_t98g_frames_follow_time(datasets):
    found = images.discover([datasets / "t98g_timelapse" / "images"])
    assert [(f.name, f.frame) for f in found.frames] == [(f"t{k:02d}.png", k - 1) for k in range(1, 38)]


def test_discover_parent_folder_skips_licence_and_groups_by_folder(datasets):
    found = images.discover([datasets / "usiigaci_phase"])
    assert [p.name for p in found.skipped] == ["LICENSE"]
    groups = found.sequences()
    assert list(groups) == ["images/", "masks/"]
    assert [f.name for f in groups["images/"]][:2] == ["images/001.tif", "images/002.tif"]
    assert len(groups["masks/"]) == 12


def test_discover_natural_order_hidden_files_and_nested_names(datasets, tmp_path):
    src = datasets / "t98g_timelapse" / "images"
    (tmp_path / "run 1").mkdir()
    for k in (1, 2, 10):
        shutil.copy(src / f"t{k:02d}.png", tmp_path / "run 1" / f"cell_{k}.png")
    shutil.copy(src / "t03.png", tmp_path / ".hidden.png")
    (tmp_path / ".cache").mkdir()
    shutil.copy(src / "t04.png", tmp_path / ".cache" / "x.png")
    (tmp_path / "notes.txt").write_text("not an image")
    found = images.discover([tmp_path])
    assert [(f.name, f.sequence, f.frame) for f in found.frames] == [
        ("run 1/cell_1.png", "run 1/cell", 0),
        ("run 1/cell_2.png", "run 1/cell", 1),
        ("run 1/cell_10.png", "run 1/cell", 2),
    ]
    assert [p.name for p in found.skipped] == ["notes.txt"]
    # A single file source is named relative to its parent.
    (single,) = images.discover([tmp_path / "run 1" / "cell_10.png"]).frames
    assert (single.name, single.sequence, single.frame) == ("cell_10.png", "/cell", 0)


def test_discover_two_folders_with_equal_names_stay_apart(datasets):
    found = images.discover([datasets / "scratch_assay" / "images", datasets / "isbi2012_membrane" / "images"])
    assert len(found.frames) == 90
    names = [f.name for f in found.frames]
    assert len(set(names)) == 90
    assert names[60] == "images/000.png"  # second source prefixed by its folder name
    assert len(found.sequences()) == 2


def test_discover_reports_bad_files_through_on_error(datasets, tmp_path):
    shutil.copy(datasets / "scratch_assay" / "images" / "000.png", tmp_path / "a1.png")
    (tmp_path / "a2.png").write_bytes(b"")
    shutil.copy(datasets / "scratch_assay" / "images" / "001.png", tmp_path / "a3.png")
    seen = []
    found = images.discover([tmp_path], on_error=lambda path, exc: seen.append((path.name, str(exc))))
    assert [f.name for f in found.frames] == ["a1.png", "a3.png"]
    assert [f.frame for f in found.frames] == [0, 1]
    assert seen == [("a2.png", "a2.png could not be read: the file is empty (0 bytes)")]
    assert list(found.errors) == [tmp_path / "a2.png"]
    with pytest.raises(ImageReadError, match="a2.png"):
        images.discover([tmp_path])


# --------------------------------------------------------------------------- stacks and videos


def test_multipage_tiff_is_one_sequence_in_page_order(datasets, tmp_path):
    stack = np.stack(_frames(datasets, 5))
    assert stack.shape == (5, 512, 512) and stack.dtype == np.uint16
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    infos = images.probe(tmp_path / "stack.tif")
    assert [i.page for i in infos] == [0, 1, 2, 3, 4]
    assert all((i.height, i.width, i.dtype, i.channels) == (512, 512, "uint16", 1) for i in infos)
    found = images.discover([tmp_path])
    assert [(f.name, f.sequence, f.frame, f.page) for f in found.frames] == [
        (f"stack.tif#{k}", "stack", k, k) for k in range(5)
    ]
    for k in range(5):
        np.testing.assert_array_equal(images.read_image(tmp_path / "stack.tif", page=k), stack[k])
    with pytest.raises(ImageReadError, match=r"stack.tif could not be read: it has no page 5 \(it has 5\)"):
        images.read_image(tmp_path / "stack.tif", page=5)


def test_tiff_reduced_resolution_pages_are_skipped(datasets, tmp_path):
    full = _frames(datasets, 2)
    with tifffile.TiffWriter(tmp_path / "pyramid.tif") as tw:
        for frame in full:
            tw.write(frame)
            tw.write(frame[::4, ::4].copy(), subfiletype=1)  # reduced-resolution copy
    infos = images.probe(tmp_path / "pyramid.tif")
    assert [(i.page, i.height) for i in infos] == [(0, 512), (1, 512)]
    np.testing.assert_array_equal(images.read_image(tmp_path / "pyramid.tif", page=1), full[1])


def test_lzw_tiff_written_by_opencv_reads(datasets, tmp_path):
    # tifffile needs imagecodecs for LZW; read_image falls back to OpenCV's libtiff.
    frame = _frames(datasets, 1)[0]
    assert cv2.imwrite(str(tmp_path / "lzw.tif"), frame)
    assert tifffile.TiffFile(tmp_path / "lzw.tif").pages[0].compression == 5  # LZW
    (info,) = images.probe(tmp_path / "lzw.tif")
    assert (info.dtype, info.channels) == ("uint16", 1)
    np.testing.assert_array_equal(images.read_image(tmp_path / "lzw.tif"), frame)


def test_rgb_tiff_and_planar_tiff(datasets, tmp_path):
    grey = intensity.to_display(_frames(datasets, 1)[0])
    rgb = np.dstack([grey, 255 - grey, grey // 2])
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    for name in ("rgb.tif", "planar.tif"):
        (info,) = images.probe(tmp_path / name)
        assert info.channels == 3
        np.testing.assert_array_equal(images.read_image(tmp_path / name), rgb)


@pytest.mark.parametrize("fourcc, suffix", [("MJPG", ".avi"), ("mp4v", ".mp4")])
def test_video_is_one_sequence_in_frame_order(datasets, tmp_path, fourcc, suffix):
    # Serial EM sections: neighbours are similar but each frame is most like itself.
    sources = [images.read_image(datasets / "isbi2012_membrane" / "images" / f"{k:03d}.png") for k in range(6)]
    path = tmp_path / f"movie{suffix}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 5.0, (512, 512), isColor=True)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for frame in sources:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()

    infos = images.probe(path)
    assert len(infos) == 6
    assert all((i.height, i.width, i.dtype, i.channels) == (512, 512, "uint8", 3) for i in infos)
    found = images.discover([tmp_path])
    assert [(f.name, f.sequence, f.frame) for f in found.frames] == [
        (f"movie{suffix}#{k}", "movie", k) for k in range(6)
    ]
    flat = np.stack([s.astype(np.float32).ravel() for s in sources])
    for k in (0, 3, 5, 2):  # out of order: exercises seeking backwards too
        decoded = images.read_image(path, page=k)
        assert decoded.shape == (512, 512, 3) and decoded.dtype == np.uint8
        grey = decoded.astype(np.float32).mean(axis=2).ravel()
        correlations = [np.corrcoef(grey, s)[0, 1] for s in flat]
        assert int(np.argmax(correlations)) == k
        assert correlations[k] > 0.95
    with pytest.raises(ImageReadError, match="has no frame 6"):
        images.read_image(path, page=6)


# --------------------------------------------------------------------------- colour


def test_rgb_png_reads_in_rgb_order(datasets, tmp_path):
    grey = images.read_image(datasets / "scratch_assay" / "images" / "000.png")
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    bgr[10, 20] = (0, 0, 255)  # pure red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    image = images.read_image(tmp_path / "red.png")
    assert image.shape == (388, 520, 3) and image.dtype == np.uint8
    assert tuple(image[10, 20]) == (255, 0, 0)
    # Channels equal everywhere else: still 3 channels ("don't be clever").
    assert images.probe(tmp_path / "red.png")[0].channels == 3

    bgra = np.dstack([bgr, np.full(grey.shape, 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "red_alpha.png"), bgra)
    np.testing.assert_array_equal(images.read_image(tmp_path / "red_alpha.png"), image)
    assert images.probe(tmp_path / "red_alpha.png")[0].channels == 3


def test_rgb_jpeg_reads_in_rgb_order(tmp_path):
    bgr = np.zeros((64, 80, 3), np.uint8)
    bgr[:, :40] = (0, 0, 255)  # red half, large enough to survive JPEG
    cv2.imwrite(str(tmp_path / "red.jpg"), bgr)
    image = images.read_image(tmp_path / "red.jpg")
    (info,) = images.probe(tmp_path / "red.jpg")
    assert (info.height, info.width, info.channels, info.dtype) == (64, 80, 3, "uint8")
    assert image[32, 10, 0] > 200 and image[32, 10, 2] < 50


def test_dtype_conversions(datasets, tmp_path):
    frame = _frames(datasets, 1)[0]
    tifffile.imwrite(tmp_path / "f64.tif", frame.astype(np.float64))
    signed = (frame.astype(np.int32) // 2 - 16000).astype(np.int16)  # negative values too
    tifffile.imwrite(tmp_path / "i16.tif", signed)
    tifffile.imwrite(tmp_path / "b.tif", frame > 20000)
    cases = {"f64.tif": "float32", "i16.tif": "float32", "b.tif": "uint8"}
    for name, dtype in cases.items():
        assert images.probe(tmp_path / name)[0].dtype == dtype
        assert images.read_image(tmp_path / name).dtype == dtype
    np.testing.assert_array_equal(images.read_image(tmp_path / "f64.tif"), frame.astype(np.float32))
    np.testing.assert_array_equal(images.read_image(tmp_path / "i16.tif"), signed.astype(np.float32))
    assert set(np.unique(images.read_image(tmp_path / "b.tif")).tolist()) == {0, 255}


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize("name", ["scratch_assay", "isbi2012_membrane", "usiigaci_phase", "t98g_timelapse", "medaka_masks"])
def test_read_mask_matches_opencv_count(datasets, name):
    paths = sorted((datasets / name / "masks").iterdir())
    for path in paths[:: max(1, len(paths) // 8)]:
        mask = images.read_mask(path)
        reference = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == bool and mask.shape == reference.shape
        assert int(mask.sum()) == int(np.count_nonzero(reference))
        assert 0 < mask.sum() < mask.size


def test_read_mask_accepts_binary_encodings(datasets, tmp_path):
    real = images.read_mask(datasets / "scratch_assay" / "masks" / "000.png")
    cv2.imwrite(str(tmp_path / "01.png"), real.astype(np.uint8))
    cv2.imwrite(str(tmp_path / "rgb.png"), np.dstack([real.astype(np.uint8) * 255] * 3))
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros(real.shape, np.uint8))
    cv2.imwrite(str(tmp_path / "full255.png"), np.full(real.shape, 255, np.uint8))
    cv2.imwrite(str(tmp_path / "full1.png"), np.ones(real.shape, np.uint8))
    tifffile.imwrite(tmp_path / "bool.tif", real)
    for name in ("01.png", "rgb.png", "bool.tif"):
        np.testing.assert_array_equal(images.read_mask(tmp_path / name), real)
    assert not images.read_mask(tmp_path / "empty.png").any()
    assert images.read_mask(tmp_path / "full255.png").all()
    assert images.read_mask(tmp_path / "full1.png").all()


def test_read_mask_refuses_non_binary(datasets, tmp_path):
    mask = images.read_mask(datasets / "scratch_assay" / "masks" / "000.png").astype(np.uint8) * 255
    mask[0, :3] = (1, 2, 0)
    cv2.imwrite(str(tmp_path / "bad.png"), mask)
    with pytest.raises(MaskError) as err:
        images.read_mask(tmp_path / "bad.png")
    assert str(err.value) == (
        "bad.png is not a binary mask: found values 0, 1, 2, 255 (expected 0 and 255, or 0 and 1)"
    )
    # A grey image given as a mask: the list is cut short.
    with pytest.raises(MaskError, match=r"^000.png is not a binary mask: found values 1, 2, 3, .* …and \d+ more"):
        images.read_mask(datasets / "isbi2012_membrane" / "images" / "000.png")
    colour = np.dstack([mask, mask, 255 - mask])
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    with pytest.raises(MaskError, match="colour.png is not a binary mask: its colour channels differ"):
        images.read_mask(tmp_path / "colour.png")


# --------------------------------------------------------------------------- bad input


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def _bad_files(datasets: Path, folder: Path) -> dict[str, str]:
    """file name -> expected reason (regex) for every kind of bad input."""
    png = (datasets / "scratch_assay" / "images" / "000.png").read_bytes()
    ok, jpeg = cv2.imencode(".jpg", images.read_image(datasets / "scratch_assay" / "images" / "000.png"))
    tif = (datasets / "usiigaci_phase" / "images" / "001.tif").read_bytes()
    rng = np.random.default_rng(0)
    (folder / "empty.png").write_bytes(b"")
    (folder / "half.png").write_bytes(png[: len(png) // 2])
    (folder / "half.jpg").write_bytes(jpeg.tobytes()[: jpeg.size // 2])
    (folder / "half.tif").write_bytes(tif[: len(tif) // 2])
    (folder / "noise.png").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (folder / "noise.tif").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (folder / "noise.avi").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (folder / "notes.txt").write_text("hello")
    (folder / "huge.png").write_bytes(_png_header_only(100_000, 100_000))
    (folder / "nopixels.png").write_bytes(_png_header_only(0, 10))
    tifffile.imwrite(folder / "twochannel.tif", np.zeros((8, 8, 2), np.uint8), photometric="minisblack", planarconfig="contig")
    return {
        "empty.png": r"the file is empty \(0 bytes\)",
        "half.png": "truncated",
        "half.jpg": "truncated .*FFD9",
        "half.tif": "truncated",
        "noise.png": "not a PNG file",
        "noise.tif": "not a valid TIFF file",
        "noise.avi": "could not be opened as a video",
        "notes.txt": r"\.txt files are not supported \(supported: images .*\.png.*videos .*\.avi",
        "missing.png": "does not exist",
        "huge.png": "too large .*100000 x 100000",
        "nopixels.png": "no pixels",
        "twochannel.tif": "2 colour channels",
    }


def test_bad_input_raises_image_read_error_naming_file_and_reason(datasets, tmp_path):
    for name, reason in _bad_files(datasets, tmp_path).items():
        for reader in (images.probe, images.read_image):
            with pytest.raises(ImageReadError) as err:
                reader(tmp_path / name)
            message = str(err.value)
            assert message.startswith(f"{name} could not be read: "), message
            assert re.search(reason, message), (reader.__name__, message)
            assert "\n" not in message


def test_truncated_jpeg_is_refused_although_opencv_decodes_it(datasets, tmp_path):
    ok, jpeg = cv2.imencode(".jpg", images.read_image(datasets / "isbi2012_membrane" / "images" / "000.png"))
    (tmp_path / "cut.jpg").write_bytes(jpeg.tobytes()[: jpeg.size * 2 // 3])
    # The reason for the explicit EOI check: OpenCV happily returns a partial image.
    assert cv2.imread(str(tmp_path / "cut.jpg"), cv2.IMREAD_UNCHANGED) is not None
    with pytest.raises(ImageReadError, match="cut.jpg could not be read: the JPEG file is truncated"):
        images.read_image(tmp_path / "cut.jpg")


# --------------------------------------------------------------------------- display


def test_to_display_uint16_maps_percentiles(datasets):
    image = images.read_image(datasets / "usiigaci_phase" / "images" / "001.tif")
    lo, hi = np.percentile(image, (0.5, 99.5))
    wlo, whi = intensity.percentile_window(image)
    span = hi - lo
    assert abs(wlo - lo) < 0.01 * span and abs(whi - hi) < 0.01 * span  # subsampled, so close not equal
    shown = intensity.to_display(image)
    assert shown.dtype == np.uint8 and shown.shape == image.shape
    assert 0.002 < np.mean(shown == 0) < 0.01
    assert 0.002 < np.mean(shown == 255) < 0.01
    expected = np.clip((image.astype(np.float64) - wlo) / (whi - wlo) * 255, 0, 255)
    assert np.abs(shown - expected).max() <= 1.0


def test_to_display_uint8_unchanged_and_explicit_window(datasets):
    image = images.read_image(datasets / "scratch_assay" / "images" / "000.png")
    assert intensity.to_display(image) is image
    stretched = intensity.to_display(image, (50, 150))
    assert stretched[image <= 50].max() == 0 and stretched[image >= 150].min() == 255


def test_to_display_constant_and_non_finite(datasets):
    for constant, expected in [
        (np.zeros((30, 40), np.uint16), 0),
        (np.full((30, 40), 65535, np.uint16), 255),
        (np.zeros((30, 40), np.float32), 0),
        (np.full((30, 40), 7.5, np.float32), 255),
    ]:
        lo, hi = intensity.percentile_window(constant)
        assert hi > lo
        shown = intensity.to_display(constant)
        assert shown.dtype == np.uint8 and np.all(shown == expected)

    frame = _frames(datasets, 1)[0].astype(np.float32)
    clean = intensity.to_display(frame)
    noisy = frame.copy()
    noisy[100:110, 100:110] = np.nan
    noisy[200, 200] = np.inf
    noisy[201, 201] = -np.inf
    window = intensity.percentile_window(noisy)
    assert np.all(np.isfinite(window))
    shown = intensity.to_display(noisy)
    assert np.all(shown[100:110, 100:110] == 0)
    assert shown[200, 200] == 255 and shown[201, 201] == 0
    keep = np.isfinite(noisy)
    assert np.abs(shown[keep].astype(int) - clean[keep]).max() <= 2
    assert intensity.percentile_window(np.full((4, 4), np.nan, np.float32)) == (0.0, 1.0)


def test_thumbnail_size_and_aspect(datasets):
    scratch = images.read_image(datasets / "scratch_assay" / "images" / "000.png")
    phase = images.read_image(datasets / "usiigaci_phase" / "images" / "001.tif")
    assert images.thumbnail(scratch).shape == (96, 128)
    thumb = images.thumbnail(phase, max_side=64)
    assert thumb.shape == (64, 64) and thumb.dtype == np.uint8
    assert images.thumbnail(scratch, max_side=1000).shape == scratch.shape  # never enlarged
    rgb = np.dstack([scratch] * 3)
    assert images.thumbnail(rgb).shape == (96, 128, 3)


def test_thumbnail_cache_reuses_and_regenerates(datasets, tmp_path):
    path = datasets / "t98g_timelapse" / "images" / "t01.png"
    calls = []

    def load():
        calls.append(1)
        return images.read_image(path)

    cache = images.ThumbnailCache(tmp_path / "thumbs", max_side=100)
    key = f"{fileio.file_hash(path)}_0"
    assert not (tmp_path / "thumbs").exists()  # created lazily
    first = cache.get(key, load)
    assert first.shape == (100, 100) and first.dtype == np.uint8
    second = cache.get(key, load)
    np.testing.assert_array_equal(first, second)
    assert len(calls) == 1
    files = list((tmp_path / "thumbs").iterdir())
    assert len(files) == 1 and files[0].suffix == ".png"

    files[0].write_bytes(files[0].read_bytes()[:40])  # damaged cache file
    third = cache.get(key, load)
    assert len(calls) == 2
    np.testing.assert_array_equal(first, third)
    assert cache.get(key, load) is not None and len(calls) == 2

    # Unsafe keys become safe, distinct file names; RGB survives the round trip.
    rgb = np.dstack([first, first // 2, 255 - first])
    a = cache.get("a/b:c", lambda: rgb)
    b = cache.get("a_b_c", lambda: rgb[:, :, ::-1])
    np.testing.assert_array_equal(cache.get("a/b:c", load), rgb)
    assert not np.array_equal(a, b)
    assert all(p.parent == tmp_path / "thumbs" for p in (tmp_path / "thumbs").iterdir())


# --------------------------------------------------------------------------- helpers


def test_natural_key_ordering():
    names = ["img10.png", "img2.png", "Img1.png", "img02b.png", "img2a.png", "a", "10", "9", ""]
    assert sorted(names, key=images.natural_key) == [
        "", "9", "10", "a", "Img1.png", "img2.png", "img2a.png", "img02b.png", "img10.png",
    ]
    assert images.natural_key("t2") < images.natural_key("t10")
    assert images.natural_key("img02") != images.natural_key("img2")  # ties broken, order total


def test_file_hash_is_sha256(datasets):
    path = datasets / "scratch_assay" / "images" / "000.png"
    assert fileio.file_hash(path, chunk=1000) == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ImageReadError, match="nothere.png could not be read: the file does not exist"):
        fileio.file_hash(path.parent / "nothere.png")
