"""labelassist.intensity on real images of every stored dtype, against results known from first principles.

The refactor that gathered these functions (issue 13, item 5) was checked bit for bit against the old
implementations with an ad-hoc script; here each function is held to what it must return by definition.
"""

from __future__ import annotations

import numpy as np
import pytest

from labelassist import intensity
from labelassist.images import read_image
from labelassist.training import core

# uint8 PNG, uint8 PNG, uint16 PNG, uint16 TIFF: every dtype the shipped datasets hold.
SOURCES = [
    ("scratch_assay", "000.png", np.uint8),
    ("isbi2012_membrane", "000.png", np.uint8),
    ("t98g_timelapse", "t01.png", np.uint16),
    ("usiigaci_phase", "001.tif", np.uint16),
]


@pytest.fixture(scope="module", params=SOURCES, ids=[f"{s[0]}-{np.dtype(s[2]).name}" for s in SOURCES])
def real(request, datasets):
    folder, name, dtype = request.param
    image = read_image(datasets / folder / "images" / name)
    assert image.dtype == dtype and image.ndim == 2 and image.size <= 1 << 20  # no sub-sampling below
    return image


def test_the_window_is_the_images_own_percentiles(real):
    lo, hi = intensity.percentile_window(real)
    expected = np.percentile(real, intensity.DEFAULT_WINDOW)
    assert (lo, hi) == pytest.approx(tuple(expected), rel=1e-12, abs=1e-9)
    assert intensity.percentile_window(real, 0.0, 100.0) == (float(real.min()), float(real.max()))


def test_percentile_rescale_maps_the_window_to_0_and_1(real):
    x = intensity.percentile_rescale(real)
    lo, hi = intensity.percentile_window(real)
    assert x.dtype == np.float32 and x.shape == real.shape
    assert np.array_equal(x, intensity.rescale_to_window(real, lo, hi))
    assert x[real == real.max()].min() == 1.0 and x[real == real.min()].max() == 0.0
    assert np.all(x[real <= lo] == 0.0) and np.all(x[real >= hi] == 1.0)
    # Full range: 0 -> 0.0 and the dtype's maximum (65535 for uint16) -> 1.0, exactly.
    top = np.iinfo(real.dtype).max
    edges = np.array([[0, top]], real.dtype)
    assert intensity.rescale_to_window(edges, 0, top).tolist() == [[0.0, 1.0]]


def test_as_float01_per_dtype(real):
    x = intensity.as_float01(real)
    assert x.dtype == np.float32 and x.shape == real.shape
    if real.dtype == np.uint8:
        # Absolute grey levels: k / 255 as the nearest float32, and back to k.
        assert np.array_equal(x, real.astype(np.float32) / np.float32(255))
        assert np.array_equal(intensity.to_uint8(x), real)
    else:
        assert np.array_equal(x, intensity.percentile_rescale(real))
        assert x.min() == 0.0 and x.max() == 1.0
    assert np.array_equal(intensity.as_float01(x), x), "floats in [0, 1] pass unchanged"
    assert np.array_equal(intensity.as_float01(real > real.mean()), (real > real.mean()).astype(np.float32))


def test_to_uint8_rounds_255_times_the_unit_image(real):
    x = intensity.as_float01(real)
    expected = np.floor(x.astype(np.float64) * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(intensity.to_uint8(real), expected)
    copy = intensity.to_uint8(intensity.to_uint8(real))
    assert np.array_equal(copy, intensity.to_uint8(real))


def test_to_display_on_the_full_range_divides_by_257_for_16_bit(real):
    if real.dtype == np.uint8:
        assert intensity.to_display(real) is real  # uint8 is shown as it is, no copy
        assert np.array_equal(intensity.to_display(real, (0, 255)), real)
    else:
        # 65535 / 255 = 257 and 257 is odd, so x / 257 is never a tie: round() is exact.
        expected = np.round(real.astype(np.float64) / 257).astype(np.uint8)
        assert np.array_equal(intensity.to_display(real, (0, 65535)), expected)
    lo, hi = intensity.percentile_window(real)
    shown = intensity.to_display(real, (lo, hi))
    if real.dtype == np.uint16:
        assert np.array_equal(intensity.to_display(real), shown), "the default window is the percentile window"
    assert shown.dtype == np.uint8 and np.all(shown[real <= lo] == 0) and np.all(shown[real >= hi] == 255)
    # Float input takes the float path; it must agree with the integer path to within one level.
    as_float = intensity.to_display(real.astype(np.float32), (lo, hi))
    assert np.abs(as_float.astype(int) - shown.astype(int)).max() <= 1


def test_grey_of_an_image_repeated_in_three_channels_is_the_image(real):
    rgb = np.dstack([real, real, real])
    # OpenCV's integer BT.601 weights sum to exactly 1 (4899 + 9617 + 1868 = 2 ** 14).
    assert np.array_equal(intensity.to_grey(rgb), real)
    assert intensity.to_grey(real) is real, "one contiguous channel of a kept dtype: no copy"
    assert np.allclose(intensity.to_grey_float32(rgb), real, rtol=1e-6, atol=1e-3)
    assert np.array_equal(intensity.to_grey_float32(real), real.astype(np.float32))
    assert intensity.to_grey(real > 0).dtype == np.uint8


def test_fill_non_finite_uses_the_finite_extremes(real):
    x = real.astype(np.float32)
    assert intensity.fill_non_finite(x) is x and intensity.fill_non_finite(real) is real
    holed = x.copy()
    holed[0, 0], holed[0, 1], holed[0, 2] = np.nan, np.inf, -np.inf
    finite = np.isfinite(holed)
    filled = intensity.fill_non_finite(holed)
    assert filled[0, :3].tolist() == [holed[finite].min(), holed[finite].max(), holed[finite].min()]
    assert np.array_equal(filled[1:], x[1:])
    with pytest.raises(ValueError):
        intensity.fill_non_finite(np.full((3, 3), np.nan, np.float32))


def test_model_input_is_the_training_codes(real):
    for image in (real, np.dstack([real, real // 2, real // 3])):
        expected = core.percentile_normalise(image)
        got = intensity.percentile_rescale_per_channel(intensity.to_grey_float32(image))
        assert np.array_equal(got, expected)
    flat = np.full(real.shape, real.max(), np.float32)
    assert not intensity.percentile_rescale_per_channel(flat).any(), "a flat image becomes all 0"
    per_channel = intensity.percentile_rescale_per_channel(np.dstack([real, real]).astype(np.float32))
    assert np.array_equal(per_channel[:, :, 0], per_channel[:, :, 1])
