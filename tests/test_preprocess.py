"""Pre-processing steps h(x) and the pipeline runner on real 8-bit, 16-bit and RGB images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from labelassist.errors import PluginError
from labelassist.images import read_image
from labelassist.workflow import preprocess
from labelassist.workflow.preprocess import as_float01, run_pipeline, to_uint8
from labelassist.workflow.registry import REGISTRY

STEPS = sorted(REGISTRY.names("preprocess"))


@pytest.fixture(scope="module")
def grey8(datasets):
    return read_image(datasets / "scratch_assay" / "images" / "000.png")


@pytest.fixture(scope="module")
def grey16(datasets):
    return read_image(datasets / "usiigaci_phase" / "images" / "001.tif")


@pytest.fixture(scope="module")
def rgb(grey8):
    # No colour set ships with the data: three real-derived channels with different content.
    return np.dstack([grey8, 255 - grey8, cv2.GaussianBlur(grey8, (0, 0), 3)])


@pytest.fixture(scope="module")
def rgb16(grey16):
    return np.dstack([grey16, 65535 - grey16, grey16 // 2])


def test_the_inputs_are_what_the_tests_claim(grey8, grey16, rgb, rgb16):
    assert grey8.dtype == np.uint8 and grey8.ndim == 2
    assert grey16.dtype == np.uint16 and grey16.shape == (1022, 1024)
    assert rgb.dtype == np.uint8 and rgb.shape == grey8.shape + (3,)
    assert rgb16.dtype == np.uint16 and rgb16.shape == grey16.shape + (3,)


def test_percentile_normalise_clips_half_a_percent_at_each_end_of_16_bit_data(datasets):
    for path in sorted((datasets / "usiigaci_phase" / "images").glob("*.tif")):
        raw = read_image(path)
        x = preprocess.percentile_normalise(raw, low=0.5, high=99.5)
        assert x.dtype == np.float32 and x.shape == raw.shape
        assert x.min() == 0.0 and x.max() == 1.0
        # Measured: 0.5000 to 0.5004 percent at each end (ties at the window edges).
        assert 0.45 < 100 * np.mean(x == 0.0) < 0.55, path.name
        assert 0.45 < 100 * np.mean(x == 1.0) < 0.55, path.name
        # In between, the mapping is linear in the raw values.
        inside = (x > 0) & (x < 1)
        slope = np.polyfit(raw[inside][::97].astype(float), x[inside][::97].astype(float), 1)[0]
        lo, hi = np.percentile(raw, (0.5, 99.5))
        assert slope == pytest.approx(1 / (hi - lo), rel=1e-3)


def test_as_float01_per_dtype(grey8, grey16):
    assert np.array_equal(as_float01(grey8), grey8.astype(np.float32) / 255)
    assert np.array_equal(as_float01(grey16), preprocess.percentile_normalise(grey16))
    x = as_float01(grey8)
    again = as_float01(x)
    assert np.array_equal(again, x) and again is not x, "floats in [0, 1] pass unchanged, as a copy"
    wide = grey16.astype(np.float32) - 30000.0  # float data outside [0, 1] gets the window
    assert np.allclose(as_float01(wide), as_float01(grey16), atol=1e-5)
    with_nan = x.copy()
    with_nan[0, 0] = np.nan
    out = as_float01(with_nan)
    assert out[0, 0] == 0.0 and np.array_equal(out[1:], x[1:])
    assert np.array_equal(as_float01(np.array([[True, False]])), np.array([[1.0, 0.0]], np.float32))


def test_to_uint8_rounds(grey8):
    assert np.array_equal(to_uint8(as_float01(grey8)), grey8)
    assert to_uint8(np.array([[0.0, 0.5, 1.0]], np.float32)).tolist() == [[0, 128, 255]]


# nl_means takes seconds on the 1022x1024 frames.
@pytest.mark.parametrize("step", [pytest.param(s, marks=pytest.mark.slow) if s == "nl_means" else s for s in STEPS])
def test_every_step_keeps_the_shape_and_returns_float32_in_0_1(step, grey8, grey16, rgb, rgb16):
    for image in (grey8, grey16, rgb, rgb16, as_float01(grey16)):
        before = image.copy()
        out = REGISTRY.get("preprocess", step)(image)  # through Step.__call__: defaults resolved
        assert out.dtype == np.float32 and out.shape == image.shape, (step, image.dtype, image.shape)
        assert np.isfinite(out).all()
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert np.array_equal(image, before), "the input must not be modified"


def test_steps_change_the_image_the_way_they_say(grey8, grey16):
    x = as_float01(grey8)
    assert np.array_equal(preprocess.gamma(grey8, gamma=1.0), x)
    assert preprocess.gamma(grey8, gamma=0.5).mean() > x.mean()  # lifts dark parts
    assert np.array_equal(preprocess.gaussian(grey8, sigma=0.0), x)

    def roughness(y):
        return float(np.abs(np.diff(y, axis=1)).mean())

    for smoothing in (
        preprocess.gaussian(grey8, sigma=2.0),
        preprocess.median(grey8, radius=1),
        preprocess.median(grey8, radius=4),
        preprocess.bilateral(grey8),
        preprocess.nl_means(grey8),
    ):
        assert roughness(smoothing) < roughness(x)
    # CLAHE on 16-bit data: a higher clip limit gives more contrast (OpenCV's own 16-bit
    # CLAHE would ignore the clip limit here, which is why the step runs on 8 bits).
    spread = [preprocess.clahe(grey16, clip_limit=c).std() for c in (1.0, 2.0, 4.0)]
    assert spread[0] < spread[1] < spread[2]


def test_clahe_on_rgb_keeps_grey_pixels_grey(grey8):
    grey_rgb = np.dstack([grey8] * 3)
    out = preprocess.clahe(grey_rgb)
    # Only lightness is equalised; a grey pixel stays (nearly) grey after the L*a*b* round trip.
    assert np.abs(out[..., 0] - out[..., 1]).max() <= 2 / 255
    assert np.abs(out[..., 1] - out[..., 2]).max() <= 2 / 255


def test_pipeline_runs_the_steps_in_order(grey16):
    pipeline = [{"step": "percentile_normalise", "low": 1.0, "high": 99.0}, {"step": "gamma", "gamma": 0.5}]
    expected = preprocess.gamma(preprocess.percentile_normalise(grey16, 1.0, 99.0), 0.5)
    assert np.array_equal(run_pipeline(grey16, pipeline), expected)
    assert np.array_equal(run_pipeline(grey16, []), as_float01(grey16))
    # Items are not consumed: the same settings can run again.
    assert pipeline[0]["step"] == "percentile_normalise"


def test_pipeline_names_what_is_wrong(grey8):
    with pytest.raises(PluginError, match="no preprocess step called 'sharpen'"):
        run_pipeline(grey8, [{"step": "gamma"}, {"step": "sharpen"}])
    with pytest.raises(PluginError, match="clahe' has no parameter 'clip'"):
        run_pipeline(grey8, [{"step": "clahe", "clip": 2.0}])
    with pytest.raises(PluginError, match=r"'clip_limit' = 100.0 is outside its range \[0.1, 40.0\]"):
        run_pipeline(grey8, [{"step": "clahe", "clip_limit": 100.0}])
    with pytest.raises(PluginError, match="'radius' must be a whole number"):
        run_pipeline(grey8, [{"step": "median", "radius": 1.5}])
    with pytest.raises(PluginError, match=r"low \(60.0\) must be below high \(40.0\)"):
        run_pipeline(grey8, [{"step": "percentile_normalise", "low": 60, "high": 40}])
    with pytest.raises(PluginError, match="item 1 must name its 'step'"):
        run_pipeline(grey8, [{"gamma": 2.0}])


def test_bad_images_are_refused_with_a_message():
    with pytest.raises(PluginError, match="grey"):
        preprocess.gaussian(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(PluginError, match="grey"):
        run_pipeline(np.zeros((0, 5), np.uint8), [])


def test_constant_images_do_not_fail():
    for image in (np.zeros((16, 16), np.uint16), np.full((16, 16), 7.5, np.float32), np.zeros((16, 16, 3), np.uint8)):
        for step in STEPS:
            out = REGISTRY.get("preprocess", step)(image)
            assert out.shape == image.shape and np.isfinite(out).all() and 0 <= out.min() <= out.max() <= 1
