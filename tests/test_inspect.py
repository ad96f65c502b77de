"""Label inspection γ(y) on real ground-truth masks and on deliberately broken ones."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import measure

from maskdamage import cut
from labelassist.errors import MaskError, PluginError, ProjectError
from labelassist.images import read_mask
from labelassist.workflow import components
from labelassist.workflow.inspection import Check, InspectionContext, Report, highlight, inspect_label
from labelassist.workflow.metrics import dice
from labelassist.workflow.registry import REGISTRY

METRICS = sorted(REGISTRY.names("inspect"))

# The project defaults (labelassist.project.DEFAULT_SETTINGS) with the README's expert prior
# "2 segments per sample"; every other prior is off. Spelled out so the figure below is stable.
SCRATCH_PRIORS = {
    "segments": 2,
    "holes": None,
    "area_fraction_min": 0.0,
    "area_fraction_max": 1.0,
    "min_segment_area": 0,
    "border_segments": None,
}
PROJECT_METRICS = {
    "segment_count": {"weight": 1.0},
    "hole_count": {"weight": 1.0},
    "area_fraction": {"weight": 1.0},
    "border_touching": {"weight": 0.0},
    "tiny_fragments": {"weight": 1.0},
    "model_disagreement": {"weight": 1.0},
    "prelabel_change": {"weight": 0.5},
}
GAMMA0 = 0.75


def scratch_masks(datasets):
    return [(p.name, read_mask(p)) for p in sorted((datasets / "scratch_assay" / "masks").glob("*.png"))]


def test_scratch_ground_truth_passes_with_the_two_segment_prior(datasets):
    context = InspectionContext(priors=SCRATCH_PRIORS)
    warned = []
    for name, truth in scratch_masks(datasets):
        report = inspect_label(truth, context, PROJECT_METRICS, GAMMA0)
        if report.warning:
            warned.append(name)
            assert [c.name for c in report.failed] == ["segment_count"]
            assert report.failed[0].message == "3 segments, expected 2 (1 too many)"
        else:
            assert report.score == 1.0 and report.failed == ()
    # 59 of the 60 expert masks pass; 020.png really has a third segment (5356 pixels).
    assert warned == ["020.png"]


@pytest.mark.parametrize("name", ["000.png", "017.png", "033.png", "059.png"])
def test_cutting_a_segment_in_two_is_flagged(datasets, name):
    truth = read_mask(datasets / "scratch_assay" / "masks" / name)
    for label in (1, 2):
        broken = cut(truth, label)
        report = inspect_label(broken, InspectionContext(priors=SCRATCH_PRIORS), PROJECT_METRICS, GAMMA0)
        assert report.warning
        assert [c.name for c in report.failed] == ["segment_count"]
        assert report.failed[0].message == "3 segments, expected 2 (1 too many)"
        assert (report.failed[0].value, report.failed[0].expected) == (3, 2)
        assert report.score == 0.5
        # The smaller half of the cut segment is what the UI highlights.
        labels, areas = components.label_segments(broken)
        smallest = labels == np.argmin(areas[1:]) + 1
        assert np.array_equal(highlight(broken, "segment_count", InspectionContext(priors=SCRATCH_PRIORS)), smallest)


@pytest.mark.parametrize("name", ["000.png", "017.png", "033.png", "059.png"])
def test_erasing_a_segment_is_flagged(datasets, name):
    truth = read_mask(datasets / "scratch_assay" / "masks" / name)
    labels, _ = components.label_segments(truth)
    one_side = truth & (labels != 2)
    report = inspect_label(one_side, InspectionContext(priors=SCRATCH_PRIORS), PROJECT_METRICS, GAMMA0)
    assert report.warning
    assert [c.name for c in report.failed] == ["segment_count"]
    assert report.failed[0].message == "1 segment, expected 2 (1 too few)"
    lines = report.describe()
    assert lines[0].startswith("Label quality 0.50 is at or below 0.75")
    assert "Failed segment_count: 1 segment, expected 2 (1 too few) (score 0.50, weight 1)." in lines


def test_gamma_is_the_weighted_mean_of_the_applicable_checks(datasets):
    truth = read_mask(datasets / "scratch_assay" / "masks" / "000.png")
    broken = cut(truth)  # 3 segments: segment_count scores 1 / (1 + 1)
    priors = dict(SCRATCH_PRIORS, area_fraction_min=0.4, area_fraction_max=0.6)
    metrics = {
        "segment_count": {"weight": 3.0},
        "area_fraction": {"weight": 1.0},
        "model_disagreement": {"weight": 5.0},
    }
    report = inspect_label(broken, InspectionContext(priors=priors), metrics, 0.7)
    # model_disagreement has no prediction: not applicable, so its weight of 5 is left out.
    assert report.score == pytest.approx((3 * 0.5 + 1 * 1.0) / 4)
    assert report.warning is True
    skipped = [c for c in report.checks if not c.applicable]
    assert [(c.name, c.score, c.passed, c.message) for c in skipped] == [
        ("model_disagreement", 1.0, True, "no model prediction")
    ]
    assert "Skipped model_disagreement: no model prediction." in report.describe()
    # With the prediction present, DSC is its score.
    prediction = cv2.erode(truth.view(np.uint8), np.ones((9, 9), np.uint8)).view(bool)
    report = inspect_label(broken, InspectionContext(priors=priors, prediction=prediction), metrics, 0.7)
    dsc = dice(broken, prediction)
    assert report.score == pytest.approx((3 * 0.5 + 1.0 + 5 * dsc) / 9)


def test_hole_count_and_its_highlight(datasets):
    truth = read_mask(datasets / "scratch_assay" / "masks" / "000.png")
    framed = cv2.copyMakeBorder(truth.view(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    depth = cv2.distanceTransform(framed, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(np.argmax(depth), depth.shape)
    assert depth[y, x] > 20
    holed = truth.copy()
    holed[y - 2 : y + 2, x - 2 : x + 2] = False  # two holes deep inside a segment
    holed[y + 8 : y + 10, x : x + 2] = False
    context = InspectionContext(priors={"holes": 0})
    check = inspect_label(holed, context, {"hole_count": {}}, 0.9).checks[0]
    assert (check.value, check.passed, check.score) == (2, False, pytest.approx(1 / 3))
    assert check.message == "2 holes, expected 0 (2 too many)"
    assert np.array_equal(highlight(holed, "hole_count", context), holed != truth)
    tolerant = inspect_label(holed, context, {"hole_count": {"tolerance": 2}}, 0.9).checks[0]
    assert tolerant.passed and tolerant.score == 1.0


def test_area_fraction_scores_the_distance_outside_the_range(datasets):
    truth = read_mask(datasets / "scratch_assay" / "masks" / "000.png")  # covers 49.1%
    inside = InspectionContext(priors={"area_fraction": (0.3, 0.7)})
    check = inspect_label(truth, inside, {"area_fraction": {}}, 0.5).checks[0]
    assert check.passed and check.score == 1.0
    assert check.message == "covers 49.1% of the image, expected 30% to 70%"
    above = InspectionContext(priors={"area_fraction_min": 0.1, "area_fraction_max": 0.4})
    check = inspect_label(truth, above, {"area_fraction": {"scale": 0.05}}, 0.5).checks[0]
    fraction = truth.mean()
    assert not check.passed
    assert check.score == pytest.approx(1 / (1 + (fraction - 0.4) / 0.05))
    assert check.message.endswith("(9.1 points too much)")
    assert inspect_label(truth, above, {"area_fraction": {}}, 0.5).failed == (check,)


def test_border_touching(datasets):
    truth = read_mask(datasets / "scratch_assay" / "masks" / "000.png")  # both sides touch the border
    for prior, passed, message in [
        (2, True, "2 segments, as expected touching the border"),
        (False, False, "2 segments, expected 0 (2 too many) touching the border"),
        (True, True, "2 segments touch the border (allowed)"),
    ]:
        context = InspectionContext(priors={"border_segments": prior})
        check = inspect_label(truth, context, {"border_touching": {}}, 0.5).checks[0]
        assert (check.passed, check.message) == (passed, message)
    assert np.array_equal(highlight(truth, "border_touching", InspectionContext()), truth)


def test_tiny_fragments_on_usiigaci_match_a_skimage_count(datasets):
    truth = read_mask(datasets / "usiigaci_phase" / "masks" / "003.png")
    areas = np.bincount(measure.label(truth, connectivity=2).ravel())[1:]
    tiny = areas[areas < 20]
    context = InspectionContext(priors={"min_segment_area": 20})
    check = inspect_label(truth, context, {"tiny_fragments": {}}, 0.5).checks[0]
    assert check.value == len(tiny) > 0
    assert check.score == pytest.approx(1 / (1 + len(tiny)))
    assert check.message == f"{len(tiny)} segments smaller than 20 pixels ({tiny.sum()} pixels in all)"
    shown = highlight(truth, "tiny_fragments", context)
    assert shown.sum() == tiny.sum() and not (shown & ~truth).any()


def test_prelabel_change_and_model_disagreement_score_the_dice(datasets):
    truth = read_mask(datasets / "scratch_assay" / "masks" / "000.png")
    otherwise = read_mask(datasets / "scratch_assay" / "masks" / "030.png")
    context = InspectionContext(prelabel=otherwise, prediction=truth)
    report = inspect_label(truth, context, {"prelabel_change": {"min_dice": 0.95}, "model_disagreement": {}}, 0.5)
    change, model = report.checks
    assert change.score == pytest.approx(dice(truth, otherwise)) and not change.passed
    assert change.message.endswith("expected at least 0.95: the label was changed a lot")
    assert model.score == 1.0 and model.passed
    assert np.array_equal(highlight(truth, "prelabel_change", context), truth ^ otherwise)
    with pytest.raises(MaskError, match="pre-label is 10x10"):
        inspect_label(truth, InspectionContext(prelabel=np.zeros((10, 10), bool)), {"prelabel_change": {}}, 0.5)


def test_weights_that_add_up_to_zero_are_refused():
    mask = np.zeros((32, 32), bool)
    context = InspectionContext(priors={"segments": 1})
    with pytest.raises(PluginError, match="add up to 0"):
        inspect_label(mask, context, {"segment_count": {"weight": 0}, "hole_count": {"weight": 0.0}}, 0.75)
    with pytest.raises(PluginError, match="add up to 0"):
        inspect_label(mask, context, {}, 0.75)
    with pytest.raises(PluginError, match="weight of 'segment_count' must be a number of 0 or more, got -1"):
        inspect_label(mask, context, {"segment_count": {"weight": -1}}, 0.75)
    with pytest.raises(PluginError, match="no weighted inspection check applies"):
        inspect_label(mask, InspectionContext(), {"segment_count": {}, "model_disagreement": {}}, 0.75)


def test_unknown_metrics_parameters_and_thresholds_are_named():
    mask = np.zeros((32, 32), bool)
    context = InspectionContext(priors={"segments": 1})
    with pytest.raises(PluginError, match="'segment_counts'"):
        inspect_label(mask, context, {"segment_counts": {}}, 0.75)
    with pytest.raises(PluginError, match="'target'"):
        inspect_label(mask, context, {"segment_count": {"target": 2}}, 0.75)
    with pytest.raises(PluginError, match="'min_dice' = 1.5 is outside"):
        inspect_label(mask, context, {"model_disagreement": {"min_dice": 1.5}}, 0.75)
    with pytest.raises(PluginError, match="gamma0"):
        inspect_label(mask, context, {"segment_count": {}}, 1.5)
    with pytest.raises(PluginError, match="'segment_counts'"):
        highlight(mask, "segment_counts", context)
    with pytest.raises(ProjectError, match="prior 'segments'"):
        inspect_label(mask, InspectionContext(priors={"segments": 1.5}), {"segment_count": {}}, 0.75)


def test_empty_and_full_masks_go_through_every_metric():
    priors = {
        "segments": 2,
        "holes": 0,
        "area_fraction": (0.2, 0.8),
        "min_segment_area": 20,
        "border_segments": 1,
    }
    shape = (48, 64)
    for mask in (np.zeros(shape, bool), np.ones(shape, bool)):
        for other in (np.zeros(shape, bool), np.ones(shape, bool)):
            context = InspectionContext(priors=priors, prelabel=other, prediction=other)
            report = inspect_label(mask, context, {name: {} for name in METRICS}, 0.75)
            assert isinstance(report, Report) and 0.0 <= report.score <= 1.0
            assert [c.name for c in report.checks] == METRICS
            assert all(isinstance(c, Check) and c.applicable and 0.0 <= c.score <= 1.0 for c in report.checks)
            for name in METRICS:
                shown = highlight(mask, name, context)
                assert shown.shape == shape and shown.dtype == bool
    empty = inspect_label(np.zeros(shape, bool), InspectionContext(priors=priors), {"segment_count": {}}, 0.75)
    assert empty.failed[0].message == "0 segments, expected 2 (2 too few)"


def test_the_label_is_not_modified(datasets):
    truth = read_mask(datasets / "usiigaci_phase" / "masks" / "001.png")
    frozen = truth.copy()
    frozen.flags.writeable = False
    context = InspectionContext(priors={"segments": 50, "holes": 0, "min_segment_area": 20, "border_segments": 5})
    inspect_label(frozen, context, {name: {} for name in METRICS}, 0.75)
    for name in METRICS:
        highlight(frozen, name, context)
    assert np.array_equal(frozen, truth)
