"""Pre-labels l(x) and their evaluation, measured on the real datasets.

The DSC figures asserted here were measured with the code as committed; each
assertion keeps a margin of about 0.02 around the measured value, so a change
that moves a figure is noticed (a better figure too: then update the comment).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from skimage.filters import threshold_otsu

from labelassist.errors import LabelAssistError, PluginError
from labelassist.images import read_image, read_mask
from labelassist.research.prelabel_eval import Evaluation, evaluate_prelabels
from labelassist.research.prompts import simulate_prompts
from labelassist.workflow.metrics import dice
from labelassist.workflow.prelabel import (
    NO_PREVIOUS_NOTE,
    Prelabel,
    PrelabelContext,
    onnx,
    otsu,
    otsu_threshold,
    previous,
)
from labelassist.workflow.prompted import flood, grabcut, watershed
from labelassist.workflow.registry import REGISTRY

METHODS = ["otsu", "previous", "flood", "watershed", "grabcut"]

# Flood on local contrast instead of grey levels: what a brightfield project sets
# (the grey-level magic wand leaks through the scratch, see test_flood_on_grey_levels_leaks...).
BRIGHTFIELD_FLOOD = {"feature": "texture", "tolerance": 48, "sigma": 8.0, "texture_radius": 15}


def load(datasets, name, every=1):
    """``(name, image, truth, previous_truth)`` in file order; ``previous_truth`` is the
    mask of the file just before (also when only ``every``-th sample is returned)."""
    images = sorted((datasets / name / "images").iterdir())
    masks = sorted((datasets / name / "masks").iterdir())
    assert len(images) == len(masks) > 0
    out = []
    for k in range(0, len(images), every):
        prev = read_mask(masks[k - 1]) if k > 0 else None
        out.append((images[k].name, read_image(images[k]), read_mask(masks[k]), prev))
    return out


@pytest.fixture(scope="module")
def usiigaci(datasets):
    # 12 independent fields, not a sequence: no previous label.
    return [(n, im, t, None) for n, im, t, _ in load(datasets, "usiigaci_phase")]


@pytest.fixture(scope="module")
def isbi(datasets):
    return load(datasets, "isbi2012_membrane")


@pytest.fixture(scope="module")
def scratch(datasets):
    return load(datasets, "scratch_assay")


def segments(truth):
    """Each 8-connected segment of ``truth`` as its own mask (what simulate_prompts prompts)."""
    n, labels = cv2.connectedComponents(truth.view(np.uint8), connectivity=8)
    return labels


# -- otsu --------------------------------------------------------------------------------------


def test_otsu_on_usiigaci_phase_uint16(usiigaci):
    assert usiigaci[0][1].dtype == np.uint16
    s = evaluate_prelabels(usiigaci, ["otsu"]).summaries["otsu"]
    # Measured: mean 0.260, median 0.262 (q1 0.251, q3 0.287). Phase contrast cells differ from
    # the background by texture and halos, not by brightness: one threshold is a poor pre-label.
    assert s.n == 12
    assert s.dice_mean == pytest.approx(0.260, abs=0.02)
    assert s.dice_median == pytest.approx(0.262, abs=0.02)


def test_otsu_window_beats_the_full_range_on_usiigaci(usiigaci):
    # Why window=True is the default: the saturated halos (65535) pull the full-range threshold.
    # Measured mean DSC: windowed 0.260, full range 0.234.
    ev = evaluate_prelabels(usiigaci, ["otsu"], params={"otsu": {"window": False}})
    full = ev.summaries["otsu"].dice_mean
    windowed = evaluate_prelabels(usiigaci, ["otsu"]).summaries["otsu"].dice_mean
    assert full == pytest.approx(0.234, abs=0.02)
    assert windowed > full + 0.015


def test_otsu_threshold_matches_skimage_at_full_precision(usiigaci, scratch):
    for _, image, _, _ in usiigaci:
        ours, theirs = otsu_threshold(image, window=False), float(threshold_otsu(image))
        # Same histogram (one bin per 16-bit level); the between-class variance is flat near its
        # maximum, so float rounding may pick a neighbouring level: measured at most 2 of 65536.
        assert abs(ours - theirs) <= 3
        assert np.count_nonzero((image > ours) != (image > theirs)) < 1e-4 * image.size
    for _, image, _, _ in scratch[:10]:
        assert otsu_threshold(image, window=False) == float(threshold_otsu(image))


def test_otsu_float_and_rgb_inputs_agree_with_the_grey_original(usiigaci, scratch):
    image = usiigaci[0][1]
    as_float = image.astype(np.float32) / 65535.0  # what pre-processing hands over
    # Floats are quantised to 16 bits over their range: the same split up to a level or two.
    assert dice(otsu(as_float).mask, otsu(image).mask) > 0.999
    grey = scratch[0][1]
    rgb = np.dstack([grey, grey, grey])
    result = otsu(rgb)
    assert result.mask.dtype == bool and result.mask.shape == grey.shape
    assert np.array_equal(result.mask, otsu(grey).mask)


def test_otsu_polarity(isbi):
    # ISBI: 78 % of the pixels are cell interior (bright), so 'auto' (foreground = minority side)
    # picks the membranes; set polarity='bright' for such data. Measured mean DSC: bright 0.786,
    # auto 0.418.
    auto = evaluate_prelabels(isbi, ["otsu"]).summaries["otsu"].dice_mean
    bright = evaluate_prelabels(isbi, ["otsu"], params={"otsu": {"polarity": "bright"}}).summaries["otsu"].dice_mean
    assert bright == pytest.approx(0.786, abs=0.02)
    assert auto == pytest.approx(0.418, abs=0.02)
    image = isbi[0][1]
    b = otsu(image, polarity="bright").mask
    d = otsu(image, polarity="dark").mask
    a = otsu(image, polarity="auto").mask
    assert np.array_equal(b, ~d)
    assert np.count_nonzero(a) <= image.size / 2
    assert np.array_equal(a, d)


# -- previous ----------------------------------------------------------------------------------


def test_previous_on_isbi_sequence(isbi):
    s = evaluate_prelabels(isbi, ["previous"]).summaries["previous"]
    # Measured over the 30 slices: mean 0.792, median 0.818 (q1 0.805, q3 0.838); the first slice
    # has no previous label and counts as an empty pre-label (DSC 0): 0.819 over the other 29.
    assert s.n == 30 and s.noted == 1
    assert s.dice_mean == pytest.approx(0.792, abs=0.02)
    assert s.dice_median == pytest.approx(0.818, abs=0.02)
    rows = evaluate_prelabels(isbi[:3], ["previous"]).rows
    assert rows[0].dice == 0.0 and rows[0].effort == 1.0 and rows[0].note == NO_PREVIOUS_NOTE
    assert rows[1].note == "" and rows[1].dice > 0.7


def test_previous_at_a_sequence_start_is_an_explained_empty_mask(isbi):
    _, image, truth, _ = isbi[0]
    result = previous(image, PrelabelContext())
    assert result.method == "previous" and result.is_placeholder and result.note == NO_PREVIOUS_NOTE
    assert result.mask.dtype == bool and result.mask.shape == truth.shape and not result.mask.any()
    done = previous(image, PrelabelContext(previous_mask=truth))
    assert np.array_equal(done.mask, truth) and not done.is_placeholder
    # A note alone does not make a stand-in: the flag says so explicitly.
    assert not Prelabel(mask=truth, probability=None, method="noted", note="a remark").is_placeholder
    with pytest.raises(PluginError, match="the previous label is 256x256 but this image is 512x512"):
        previous(image, PrelabelContext(previous_mask=np.zeros((256, 256), bool)))


# -- interactive methods on the scratch assay --------------------------------------------------


def test_grabcut_from_each_true_box_on_scratch_assay(scratch):
    scores = []
    for _, image, truth, _ in scratch[::10]:
        labels = segments(truth)
        prompts = simulate_prompts(truth)
        for (x, y), box in zip(prompts.points, prompts.boxes):
            segment = labels == labels[y, x]
            result = grabcut(image, PrelabelContext(box=box))
            assert result.method == "grabcut" and result.mask.dtype == bool and result.mask.shape == truth.shape
            assert result.mask.any()
            x0, y0, x1, y1 = box
            outside = np.ones_like(result.mask)
            outside[y0:y1, x0:x1] = False
            assert not result.mask[outside].any()  # outside the box is sure background
            scores.append(dice(result.mask, segment))
    # Measured on frames 0, 10, ..., 50 (13 segments): mean 0.887, median 0.979; 11 of 13 above
    # 0.9, the two misses are frame 0's thin strip along the left edge (0.80) and frame 20's small
    # 5356-pixel segment, boxed inside the textured cell sheet (0.03).
    assert len(scores) == 13
    assert np.mean(scores) == pytest.approx(0.887, abs=0.02)
    assert np.median(scores) == pytest.approx(0.979, abs=0.02)
    assert sum(s > 0.9 for s in scores) == 11


def test_flood_from_a_tap_on_scratch_assay(scratch):
    scores = []
    for _, image, truth, _ in scratch[::10]:
        labels = segments(truth)
        for x, y in simulate_prompts(truth).points:
            result = flood(image, PrelabelContext(points=[(x, y)]), **BRIGHTFIELD_FLOOD)
            assert result.mask.dtype == bool and result.mask.shape == truth.shape
            assert result.mask[y, x]
            scores.append(dice(result.mask, labels == labels[y, x]))
    # Measured (texture feature, edge-aware, holes filled per tap): mean 0.851, median 0.885,
    # min 0.495 over the 13 segments (0.856, 0.884, 0.565 before the edges and the cap).
    assert np.mean(scores) == pytest.approx(0.851, abs=0.02)
    assert np.median(scores) == pytest.approx(0.885, abs=0.02)
    assert min(scores) == pytest.approx(0.495, abs=0.03)


def test_flood_on_grey_levels_leaks_through_the_scratch_and_the_cap_says_so(scratch):
    # The default grey-level wand: cells and scratch share grey levels, so the fill spreads over
    # most of the image (per-segment mean DSC 0.427 before the cap). The cap tightens the tolerance
    # and says so, or stops the wand with the reason; no fill ever covers more than half the image.
    # Measured on these 13 segments: 12 tightened (mean DSC 0.42), 1 stopped.
    scores, stopped = [], 0
    for _, image, truth, _ in scratch[::10]:
        labels = segments(truth)
        for x, y in simulate_prompts(truth).points:
            try:
                result = flood(image, PrelabelContext(points=[(x, y)]))
            except PluginError as exc:
                assert "no clear edge" in str(exc) and "Tap to segment" in str(exc)
                stopped += 1
                continue
            assert result.mask.mean() <= 0.5
            assert result.note.startswith("The wand used a tighter tolerance")
            scores.append(dice(result.mask, labels == labels[y, x]))
    assert stopped >= 1 and len(scores) + stopped == 13
    assert np.mean(scores) < 0.55


def test_watershed_from_taps_on_scratch_assay(scratch):
    _, image, truth, _ = scratch[1]
    prompts = simulate_prompts(truth)
    ctx = PrelabelContext(points=prompts.points, background_points=prompts.background_points)
    result = watershed(image, ctx)
    # Measured: DSC 0.966 on frame 001 with one tap per segment and per background region.
    assert result.mask.dtype == bool and result.mask.shape == truth.shape
    assert dice(result.mask, truth) == pytest.approx(0.966, abs=0.02)
    # Without a background tap the image border is the background seed.
    alone = watershed(image, PrelabelContext(points=prompts.points[:1]))
    assert alone.mask.any() and not alone.mask.all()


def test_scratch_assay_ranking_puts_otsu_behind(scratch):
    samples = scratch[::3]  # 20 frames; 'previous' still gets the truth of the frame before
    ev = evaluate_prelabels(samples, METHODS)
    ranking = [s.method for s in ev.ranking()]
    means = {s.method: round(s.dice_mean, 3) for s in ev.ranking()}
    # Measured mean DSC: grabcut 0.973, watershed 0.860, previous 0.835 (frame 0 has no previous
    # label and counts 0; the other 19 average 0.879), otsu 0.509, flood 0.441 (grey levels).
    # Otsu fails on scratch assays, as the dataset README says; the grey-level wand scored 0.711
    # only while it leaked over the whole image (the truth covers most of it): its area cap now
    # tightens each fill to at most half the image.
    assert ranking == ["grabcut", "watershed", "previous", "otsu", "flood"]
    assert means["otsu"] == pytest.approx(0.509, abs=0.02)
    assert means["grabcut"] == pytest.approx(0.973, abs=0.02)
    assert means["watershed"] == pytest.approx(0.860, abs=0.03)
    assert means["previous"] == pytest.approx(0.835, abs=0.02)
    assert means["flood"] == pytest.approx(0.441, abs=0.02)
    assert ev.best(0.9) == "grabcut"
    # A too-high bar switches pre-labelling off, and so does "otsu only" at the project default.
    assert ev.best(0.99) is None
    only_otsu = evaluate_prelabels(samples, ["otsu"])
    assert only_otsu.best(0.6) is None


# -- evaluation bookkeeping --------------------------------------------------------------------


def test_evaluation_rows_summary_json_and_progress(isbi):
    calls = []
    ev = evaluate_prelabels(isbi[:4], ["otsu", "previous"], progress=lambda d, t: calls.append((d, t)))
    assert calls == [(k, 8) for k in range(1, 9)]
    assert isinstance(ev, Evaluation) and len(ev.rows) == 8
    assert [r.sample for r in ev.rows_of("otsu")] == [n for n, *_ in isbi[:4]]
    for s in ev.summaries.values():
        assert s.dice_q1 <= s.dice_median <= s.dice_q3 and s.n == 4 and s.ms_mean >= 0
    payload = json.loads(json.dumps(ev.to_dict()))
    assert [s["method"] for s in payload["summaries"]] == [s.method for s in ev.ranking()]
    assert len(payload["rows"]) == 8


def test_evaluation_survives_a_failing_sample_and_rejects_bad_params(isbi):
    name, image, truth, prev = isbi[1]
    blank = ("blank", np.zeros_like(image), truth, prev)
    ev = evaluate_prelabels([isbi[1], blank], ["otsu"])
    rows = ev.rows_of("otsu")
    assert rows[1].dice == 0.0 and "blank" in rows[1].note
    assert ev.summaries["otsu"].noted == 1
    with pytest.raises(PluginError, match="polarity"):
        evaluate_prelabels([isbi[1]], ["otsu"], params={"otsu": {"polarity": "up"}})
    with pytest.raises(PluginError, match="no prelabel step called 'magic'"):
        evaluate_prelabels([isbi[1]], ["magic"])
    with pytest.raises(LabelAssistError, match="true mask"):
        evaluate_prelabels([(name, image, truth[:10], None)], ["otsu"])
    with pytest.raises(PluginError, match="unknown prompt simulation otsu='tap'"):
        evaluate_prelabels([isbi[1]], ["otsu"], prompts={"otsu": "tap"})
    # Any iterable works (a generator is read once); the figures do not depend on the container.
    streamed = evaluate_prelabels((s for s in isbi[1:3]), ["otsu"])
    assert [r.dice for r in streamed.rows] == [r.dice for r in evaluate_prelabels(isbi[1:3], ["otsu"]).rows]


def test_simulated_prompts_lie_inside_their_segments(scratch):
    for _, _, truth, _ in scratch[::15]:
        prompts = simulate_prompts(truth)
        labels = segments(truth)
        assert len(prompts.points) == len(prompts.boxes) >= 1
        for (x, y), (x0, y0, x1, y1) in zip(prompts.points, prompts.boxes):
            assert truth[y, x] and x0 <= x < x1 and y0 <= y < y1
            seg = labels == labels[y, x]
            ys, xs = np.nonzero(seg)
            assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        for x, y in prompts.background_points:
            assert not truth[y, x]


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["otsu", "previous", "flood", "watershed", "grabcut", "onnx"])
@pytest.mark.parametrize("value", [0, 255])
def test_blank_image_is_a_clear_error(method, value):
    image = np.full((64, 80), value, np.uint8)
    ctx = PrelabelContext(points=[(10, 10)], box=(5, 5, 40, 40), previous_mask=np.zeros((64, 80), bool))
    with pytest.raises(PluginError, match=rf"the image is blank \(every pixel is {value}\): there is nothing to pre-label"):
        REGISTRY.get("prelabel", method)(image, ctx)


@pytest.mark.parametrize("image", [np.zeros((0, 0), np.uint8), np.zeros((5, 5, 2), np.uint8),
                                   np.full((8, 8), np.nan, np.float32), np.zeros((4, 4), complex)])
def test_unusable_arrays_are_clear_errors(image):
    with pytest.raises(PluginError, match="image|pixels"):
        otsu(image)


def test_missing_prompts_say_what_to_do(scratch):
    image = scratch[0][1]
    with pytest.raises(PluginError, match="the magic wand needs a tap: tap inside the object first"):
        flood(image, PrelabelContext())
    with pytest.raises(PluginError, match="tap-to-segment needs a tap: tap inside the object first"):
        watershed(image, PrelabelContext(background_points=[(5, 5)]))
    with pytest.raises(PluginError, match="draw a box around the object first"):
        grabcut(image, PrelabelContext())
    with pytest.raises(PluginError, match=r"the tap at \(600, 10\) is outside the image \(520x388 pixels\)"):
        flood(image, PrelabelContext(points=[(600, 10)]))
    with pytest.raises(PluginError, match="box covers the whole image"):
        grabcut(image, PrelabelContext(box=(0, 0, 520, 388)))
    with pytest.raises(PluginError, match="does not cover the object"):
        grabcut(image, PrelabelContext(box=(600, 400, 700, 500)))
    with pytest.raises(PluginError, match="PrelabelContext"):
        otsu(image, {"points": []})


def test_onnx_without_a_model_and_with_one(scratch):
    _, image, truth, _ = scratch[0]
    with pytest.raises(PluginError, match="^no model is installed for this project$"):
        onnx(image, PrelabelContext())

    class Truthful:
        def predict(self, img):
            return np.where(truth, 0.9, 0.1).astype(np.float32)

    class WrongSize:
        def predict(self, img):
            return np.zeros((10, 10), np.float32)

    result = REGISTRY.get("prelabel", "onnx")(image, PrelabelContext(model=Truthful()), threshold=0.5)
    assert result.method == "onnx" and np.array_equal(result.mask, truth)
    assert result.probability.dtype == np.float32 and result.probability.shape == truth.shape
    with pytest.raises(PluginError, match="the model's output is 10x10 but the image is 520x388"):
        onnx(image, PrelabelContext(model=WrongSize()))


# -- shapes and types --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["otsu", "previous", "flood", "watershed", "grabcut"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_masks_are_bool_and_image_sized_for_rgb(scratch, method, dtype):
    _, grey, truth, prev = scratch[1]
    rgb = np.dstack([grey, cv2.GaussianBlur(grey, (0, 0), 2), 255 - grey])
    rgb = (rgb.astype(np.float32) / 255).astype(dtype) if dtype == np.float32 else rgb.astype(dtype) * (
        257 if dtype == np.uint16 else 1)
    prompts = simulate_prompts(truth)
    ctx = PrelabelContext(previous_mask=prev, points=prompts.points[:1], background_points=prompts.background_points,
                          box=prompts.boxes[0])
    result = REGISTRY.get("prelabel", method)(rgb, ctx)
    assert isinstance(result, Prelabel) and result.method == method
    assert result.mask.dtype == bool and result.mask.shape == grey.shape
    assert result.mask.any()


def test_grabcut_with_scribbles_only_and_intensity_colour(scratch):
    _, image, truth, _ = scratch[1]
    labels = segments(truth)
    prompts = simulate_prompts(truth)
    x, y = prompts.points[0]
    fg = np.zeros(truth.shape, bool)
    cv2.line(fg.view(np.uint8), (x, max(0, y - 60)), (x, min(truth.shape[0] - 1, y + 60)), 1, 5)
    bx, by = prompts.background_points[0]
    bg = np.zeros(truth.shape, bool)
    cv2.line(bg.view(np.uint8), (bx, max(0, by - 60)), (bx, min(truth.shape[0] - 1, by + 60)), 1, 5)
    result = grabcut(image, PrelabelContext(foreground_scribble=fg, background_scribble=bg))
    assert result.mask[fg].all() and not result.mask[bg].any()
    # Measured: DSC 0.897 from one 120-pixel stroke on the object and one on the scratch.
    assert dice(result.mask, labels == labels[y, x]) == pytest.approx(0.897, abs=0.03)
    # Why feature='texture' is the default: on colours (here grey replicated) GrabCut cannot
    # tell the cell sheet from the scratch. Measured on this box: 0.989 texture, 0.003 colour.
    segment = labels == labels[y, x]
    rgb = np.dstack([image] * 3)
    colour = grabcut(rgb, PrelabelContext(box=prompts.boxes[0]), feature="intensity")
    assert colour.mask.dtype == bool and colour.mask.shape == image.shape
    assert dice(colour.mask, segment) < 0.2
    assert dice(grabcut(rgb, PrelabelContext(box=prompts.boxes[0])).mask, segment) > 0.96


def test_registered_steps_and_their_parameters():
    assert {"otsu", "previous", "flood", "watershed", "grabcut", "onnx"} <= set(REGISTRY.names("prelabel"))
    step = REGISTRY.get("prelabel", "otsu")
    assert step.resolve({}) == {"polarity": "auto", "sigma": 0.0, "window": True}
    with pytest.raises(PluginError, match="tolerance"):
        REGISTRY.get("prelabel", "flood").resolve({"tolerance": 300})
    # The declared defaults are the functions' defaults (a direct call and a registry call agree).
    import inspect

    for name in ("otsu", "flood", "watershed", "grabcut", "onnx"):
        step = REGISTRY.get("prelabel", name)
        sig = inspect.signature(step.func)
        for p in step.params:
            assert sig.parameters[p.name].default == p.default, (name, p.name)


def test_prelabel_is_frozen_and_input_is_not_modified(scratch):
    _, image, truth, _ = scratch[1]
    before = image.copy()
    result = flood(image, PrelabelContext(points=simulate_prompts(truth).points))
    watershed(image, PrelabelContext(points=simulate_prompts(truth).points))
    otsu(image, sigma=2.0)
    assert np.array_equal(image, before)
    with pytest.raises(AttributeError):
        result.method = "other"  # type: ignore[misc]

