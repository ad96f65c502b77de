"""Bad-input fuzzing: every mangled file or setting ends in a clear error or a correct result.

"Clear error" means a LabelAssistError (its message is one sentence naming the file and the
reason); anything else escaping — an IndexError from a decoder, a numpy warning turned
exception, a hang — fails the test. Each test counts the cases it tried.
"""

from __future__ import annotations

import io
import math
import os
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from labelassist import images
from labelassist.errors import ImageReadError, LabelAssistError, MaskError
from labelassist.importer import import_images
from labelassist.project import DEFAULT_SETTINGS, Project, validate_settings
from labelassist.tomlout import dump_toml
from labelassist.session import Session

# Random examples on a developer's machine (new cases each run); a fixed, reproducible set in CI
# (CI=true), so a landing never depends on the draw. Cases found once stay as @example.
FUZZ = settings(max_examples=150, deadline=None, derandomize=os.environ.get("CI") == "true",
                suppress_health_check=[HealthCheck.function_scoped_fixture])
TRIED: dict[str, int] = {}


def _count(name: str) -> None:
    TRIED[name] = TRIED.get(name, 0) + 1


def _read_or_clear_error(path: Path) -> np.ndarray | None:
    """probe + read_image: an image of the probed shape, or an ImageReadError naming the file."""
    try:
        infos = images.probe(path)
        pixels = [images.read_image(path, page=i.page) for i in infos[:3]]
    except ImageReadError as exc:
        assert path.name in str(exc), str(exc)
        return None
    for info, image in zip(infos, pixels):
        assert image.shape[:2] == (info.height, info.width)
        assert image.dtype.name == info.dtype
    return pixels[0]


@pytest.fixture(scope="module")
def originals(datasets) -> dict[str, bytes]:
    tif = io.BytesIO()
    tifffile.imwrite(tif, np.stack([cv2.imread(str(datasets / "t98g_timelapse" / "images" / f"t0{k}.png"),
                                               cv2.IMREAD_UNCHANGED) for k in (1, 2, 3)]), photometric="minisblack")
    jpg = cv2.imencode(".jpg", cv2.imread(str(datasets / "scratch_assay" / "images" / "000.png")))[1].tobytes()
    return {
        "png8": (datasets / "scratch_assay" / "images" / "000.png").read_bytes(),
        "png16": (datasets / "t98g_timelapse" / "images" / "t01.png").read_bytes(),
        "tif16": (datasets / "usiigaci_phase" / "images" / "001.tif").read_bytes(),
        "stack": tif.getvalue(),
        "jpg": jpg,
    }


SUFFIX = {"png8": ".png", "png16": ".png", "tif16": ".tif", "stack": ".tif", "jpg": ".jpg"}


@FUZZ
@given(kind=st.sampled_from(sorted(SUFFIX)), cut=st.floats(0.0, 1.0), flips=st.lists(
    st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=12))
def test_truncated_or_flipped_image_files(tmp_path_factory, originals, kind, cut, flips):
    data = bytearray(originals[kind])
    data = data[: max(0, int(len(data) * cut))] if cut < 0.98 else data
    for where, value in flips:
        if data:
            data[min(len(data) - 1, int(where * len(data)))] = value
    path = tmp_path_factory.mktemp("fuzz") / f"mangled{SUFFIX[kind]}"
    path.write_bytes(bytes(data))
    _read_or_clear_error(path)
    _count("mangled image files")


@pytest.mark.parametrize("shape,dtype,ok", [
    ((1, 1), np.uint8, True),
    ((10, 100000), np.uint8, True),
    ((100000, 10), np.uint16, True),
    ((4, 4, 5), np.uint8, False),       # 5 channels
    ((4, 4, 2), np.uint8, False),       # 2 channels
    ((0, 4), np.uint8, False),          # no pixels
])
def test_absurd_shapes(tmp_path, shape, dtype, ok):
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, np.zeros(shape, dtype), photometric="minisblack",
                     planarconfig="contig" if len(shape) == 3 else None)
    result = _read_or_clear_error(path)
    assert (result is not None) == ok
    _count("absurd shapes")


def test_a_header_claiming_30000_squared_is_refused_before_decoding(tmp_path):
    # A real 64x64 PNG whose IHDR says 30000x30000: refused from the header, nothing allocated.
    data = bytearray(cv2.imencode(".png", np.zeros((64, 64), np.uint8))[1].tobytes())
    data[16:24] = (30000).to_bytes(4, "big") * 2
    import zlib

    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="huge.png"):
        images.probe(path)
    _count("absurd shapes")


@pytest.mark.parametrize("fill", [math.nan, math.inf, -math.inf, "mixed"])
def test_nan_and_inf_float_tiffs_go_through_the_whole_session(tmp_path, datasets, fill):
    base = cv2.imread(str(datasets / "scratch_assay" / "images" / "000.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    image = base.copy()
    if fill == "mixed":
        image[::7, ::5] = np.nan
        image[3::11, ::3] = np.inf
    else:
        image[:, :] = fill
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "float.tif", image)
    with Project.create(tmp_path / "p") as project:
        import_images(project, [folder])
        with Session(project, background=False) as session:
            try:
                assisted = session.next()
            except LabelAssistError as exc:
                assert "blank" in str(exc) or "float" in str(exc), str(exc)
            else:
                assert assisted.display.dtype == np.uint8 and assisted.display.shape == image.shape
                mask = assisted.start_mask
                session.save(assisted.sample.id, mask)
                assert np.array_equal(project.store.latest_label(assisted.sample.id).mask, mask)
    _count("non-finite float images")


@FUZZ
@given(values=st.lists(st.integers(0, 255), min_size=1, max_size=6, unique=True))
def test_masks_with_other_values_are_refused_with_the_values(tmp_path_factory, values):
    mask = np.array(values * (64 * 64 // len(values) + 1), np.uint8)[: 64 * 64].reshape(64, 64)
    path = tmp_path_factory.mktemp("masks") / "m.png"
    cv2.imwrite(str(path), mask)
    binary = set(values) <= {0, 255} or set(values) <= {0, 1} or len(values) == 1 and values[0] in (0, 1, 255)
    try:
        result = images.read_mask(path)
    except MaskError as exc:
        assert not binary, f"a binary mask {values} was refused: {exc}"
        assert "not a binary mask" in str(exc) and str(sorted(values)[-1]) in str(exc)
    else:
        assert binary, f"a mask with values {values} was accepted"
        assert result.dtype == bool
    _count("mask values")


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(-2, 2, allow_nan=False),
                     st.text(max_size=6), st.lists(st.integers(0, 3), max_size=3))


@FUZZ
@given(section=st.sampled_from(sorted(DEFAULT_SETTINGS) + ["bogus"]),
       key=st.one_of(st.sampled_from(sorted({k for t in DEFAULT_SETTINGS.values() for k in t})), st.text(max_size=8)),
       value=_SCALARS)
@example(section="prelabel", key="method", value="\x1f")  # control characters were written unescaped
def test_project_toml_with_wrong_types_and_unknown_keys(section, key, value):
    raw = {section: {key: value}} if value is not None else {section: {}}
    try:
        settings_ = validate_settings(raw)
    except LabelAssistError as exc:
        assert "project.toml" in str(exc)
    else:
        # Whatever was accepted must survive a write and a read unchanged.
        assert validate_settings(tomllib.loads(dump_toml(settings_))) == settings_
    _count("project.toml settings")


@FUZZ
@given(data=st.binary(min_size=0, max_size=4096), keep_header=st.booleans())
def test_label_database_that_is_not_sqlite_or_is_damaged(tmp_path_factory, data, keep_header):
    folder = tmp_path_factory.mktemp("db")
    Project.create(folder / "p").close()
    db = folder / "p" / "labels.sqlite"
    original = db.read_bytes()
    mangled = (original[:100] + data + original[100 + len(data):]) if keep_header else data
    db.write_bytes(mangled)
    try:
        Project.open(folder / "p").close()
    except LabelAssistError as exc:
        assert "labels.sqlite" in str(exc)
        assert db.read_bytes() == mangled  # refused untouched
    _count("database files")


# -- ONNX models: truncated, byte-flipped, wrong shapes, cards that do not fit ------------------
MODELS = Path(__file__).resolve().parents[1] / "models"
ONNX_FUZZ = settings(FUZZ, max_examples=25)  # each case loads a model: fewer, still varied
ONNX_SLOW = settings(FUZZ, max_examples=12)  # cases that load the 1 MB shipped model and run it


def _small_card(**changes) -> dict:
    """The shipped int8 model's card, probing at 64x64 (a fast check), with ``changes`` applied."""
    import json

    card = json.loads((MODELS / "scratch_assay_unet.int8.json").read_text())
    card["tiling"] = {"tile": 64, "overlap": 16}
    for path, value in changes.items():
        node = card
        *parents, last = path.split(".")
        for part in parents:  # input, output, normalisation, tiling: all in the shipped card
            node = node[part]
        node[last] = value
    return card


@pytest.fixture(scope="module")
def model_project(tmp_path_factory, datasets):
    """A project with two stored labels and an installed model; fuzzed imports must change neither."""
    folder = tmp_path_factory.mktemp("model_project")
    images = folder / "images"
    images.mkdir()
    for k in range(2):
        (images / f"{k:03d}.png").write_bytes((datasets / "scratch_assay" / "images" / f"{k:03d}.png").read_bytes())
    project = Project.create(folder / "p")
    import_images(project, [images], masks=datasets / "scratch_assay" / "masks")
    from labelassist import models

    models.install_model(project, MODELS / "scratch_assay_unet.int8.onnx", card=_small_card())
    image = cv2.imread(str(images / "000.png"), cv2.IMREAD_UNCHANGED)[:96, :128]
    yield project, image
    project.close()


def _stored_labels(project) -> list:
    return project.store.conn.execute("SELECT id, sample_id, mask FROM labels ORDER BY id").fetchall()


def _import_or_clear_error(project, image, path: Path, card: dict) -> bool:
    """install_model: True with a working model installed, or False after a ModelError that changed nothing."""
    from labelassist import models

    installed = models.installed_model_path(project)
    before = (installed.read_bytes(), models.card_path(installed).read_bytes(), _stored_labels(project))
    try:
        models.install_model(project, path, card=card)
    except models.ModelError as exc:
        assert path.name in str(exc) or "card" in str(exc) or "'" in str(exc), str(exc)
        assert models.installed_model_path(project) == installed, "a refused model became the current one"
        after = (installed.read_bytes(), models.card_path(installed).read_bytes(), _stored_labels(project))
        assert after == before, "a refused model changed the project"
        return False
    assert _stored_labels(project) == before[2]
    installed = models.installed_model_path(project)  # the model just imported (its own history folder)
    assert installed.read_bytes() == path.read_bytes()
    try:
        model = models.Model(installed)
        prob = model.predict(image)
    except models.ModelError as exc:  # imported, then fails on a real image: still a clear error
        assert installed.name in str(exc), str(exc)
        return True
    assert prob.shape == image.shape[:2] and prob.dtype == np.float32
    assert np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1
    return True


@ONNX_FUZZ
@given(cut=st.floats(0.0, 0.999))
@example(cut=0.0)
@example(cut=0.5)
def test_truncated_onnx_files(tmp_path_factory, model_project, cut):
    project, image = model_project
    data = (MODELS / "scratch_assay_unet.int8.onnx").read_bytes()
    path = tmp_path_factory.mktemp("onnx") / "truncated.onnx"
    path.write_bytes(data[: int(len(data) * cut)])
    assert not _import_or_clear_error(project, image, path, _small_card()), "a truncated model was accepted"
    _count("ONNX files truncated")


@ONNX_SLOW
@given(flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), min_size=1, max_size=12),
       head=st.booleans())
def test_byte_flipped_onnx_files(tmp_path_factory, model_project, flips, head):
    project, image = model_project
    data = bytearray((MODELS / "scratch_assay_unet.int8.onnx").read_bytes())
    span = 4096 if head else len(data)  # the graph's structure sits near the start; weights fill the rest
    for where, value in flips:
        data[min(len(data) - 1, int(where * span))] = value
    path = tmp_path_factory.mktemp("onnx") / "flipped.onnx"
    path.write_bytes(bytes(data))
    _import_or_clear_error(project, image, path, _small_card())
    _count("ONNX files with bytes flipped")


def _graph(path: Path, in_shape, out_shape, op: str, elem=None) -> Path:
    """A valid ONNX graph (one node) built with the onnx helper API."""
    import onnx
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT if elem is None else elem
    if op == "pool":  # halves the size: an output that does not match the input
        node = helper.make_node("AveragePool", ["image"], ["out"], kernel_shape=[2, 2], strides=[2, 2])
    elif op == "reduce":  # collapses the channels
        node = helper.make_node("ReduceMean", ["image"], ["out"], keepdims=1, axes=[1])
    else:
        node = helper.make_node(op, ["image"], ["out"])
    graph = helper.make_graph([node], "fuzz", [helper.make_tensor_value_info("image", elem, in_shape)],
                              [helper.make_tensor_value_info("out", elem, out_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


_DIM = st.sampled_from([None, 1, 2, 3, 5, 7, 64])


@ONNX_FUZZ
@given(rank=st.integers(2, 5), channels=st.sampled_from([None, 0, 1, 2, 3, 5]), h=_DIM, w=_DIM,
       op=st.sampled_from(["Sigmoid", "Identity", "pool", "reduce"]), card_channels=st.sampled_from([1, 3]),
       layout=st.sampled_from(["NCHW", "NHWC"]))
@example(rank=4, channels=1, h=None, w=None, op="Sigmoid", card_channels=1, layout="NCHW")  # fits: accepted
@example(rank=4, channels=3, h=None, w=None, op="Sigmoid", card_channels=1, layout="NCHW")  # RGB model, grey card
def test_valid_onnx_graphs_with_wrong_shapes(tmp_path_factory, model_project, rank, channels, h, w, op,
                                             card_channels, layout):
    project, image = model_project
    dims = {2: [None, None], 3: [1, None, None], 4: [1, channels, h, w], 5: [1, channels, h, w, 1]}[rank]
    if rank == 4 and layout == "NHWC":
        dims = [1, h, w, channels]
    path = _graph(tmp_path_factory.mktemp("onnx") / "graph.onnx", dims, [None] * max(rank, 3), op)
    card = _small_card(**{"input.channels": card_channels, "input.layout": layout})
    accepted = _import_or_clear_error(project, image if card_channels == 1 else np.dstack([image] * 3), path, card)
    c_axis = 1 if layout == "NCHW" else 3
    if rank != 4 or (dims[c_axis] is not None and dims[c_axis] != card_channels):
        assert not accepted, f"a model with input {dims} was accepted for a {card_channels}-channel {layout} card"
    if op == "pool" or (rank == 4 and (h is not None or w is not None)):
        assert not accepted, f"a model with input {dims} and op {op} was accepted"
    _count("ONNX graphs with wrong shapes")


_CARD_KEYS = ["format", "name", "task", "input.layout", "input.channels", "input.size", "input.multiple",
              "output.kind", "output.channels", "output.foreground_channel", "normalisation.kind",
              "normalisation.low", "scale", "threshold", "tiling.tile", "tiling.overlap", "input"]


@ONNX_SLOW
@given(key=st.sampled_from(_CARD_KEYS), value=st.one_of(
    st.none(), st.booleans(), st.integers(-3, 600), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["dynamic", "NHWC", "softmax", "logits", "meanstd", "", "x" * 300]),
    st.lists(st.integers(-1, 600), max_size=3)))
@example(key="input.channels", value=3)   # grey model, RGB card
@example(key="input.size", value=[64, 64])  # dynamic model, fixed-size card: fine, it runs at 64x64
@example(key="output.foreground_channel", value=1)
def test_cards_that_do_not_fit_the_model(tmp_path_factory, model_project, key, value):
    project, image = model_project
    card = _small_card(**{key: value})
    folder = tmp_path_factory.mktemp("onnx")
    path = folder / "model.onnx"
    path.write_bytes((MODELS / "scratch_assay_unet.int8.onnx").read_bytes())
    accepted = _import_or_clear_error(project, image, path, card)
    if (key, value) in (("input.channels", 3), ("output.foreground_channel", 1), ("output.kind", "softmax")):
        assert not accepted, f"a card with {key} = {value!r} was accepted for the grey, dynamic, 1-channel model"
    _count("model cards that do not fit")


def test_report_how_many_cases_were_tried():
    """Runs last in this file: the counts go to the test log (and docs/reliability.md)."""
    print("fuzz cases tried:", TRIED)
    artifacts = Path(__file__).with_name("artifacts")
    artifacts.mkdir(exist_ok=True)
    (artifacts / "fuzz_counts.json").write_text(__import__("json").dumps(TRIED))
    assert sum(TRIED.values()) >= 500, TRIED
