"""The GUI-free label layer: tools, sparse undo/redo, dirty rectangles; and the kiosk PIN."""

from __future__ import annotations

import numpy as np
import pytest

from labelassist import kiosk_settings
from labelassist.label_layer import Edit, LabelLayer


def stroke(layer, points, radius=4.0, value=True, kind="brush"):
    layer.begin_edit(kind)
    for a, b in zip(points[:-1], points[1:]):
        layer.paint_segment(a, b, radius, value)
    return layer.end_edit()


def test_brush_paints_a_round_capped_line_under_the_path():
    layer = LabelLayer(np.zeros((100, 120), bool))
    edit = stroke(layer, [(10, 50), (100, 50)], radius=5)
    assert layer.mask[50, 10:101].all()
    assert layer.mask[45:56, 50].all() and not layer.mask[40, 50] and not layer.mask[60, 50]
    assert layer.mask[50, 6] and not layer.mask[50, 3]  # round cap, radius 5
    assert edit.size == int(layer.mask.sum())
    assert len(edit.starts) < edit.size / 5, "a stroke is stored as row runs, not pixel by pixel"


def test_eraser_lasso_polygon_bucket():
    layer = LabelLayer(np.zeros((60, 60), bool))
    layer.begin_edit("lasso")
    layer.fill_polygon([(10, 10), (50, 10), (50, 50), (10, 50)])
    layer.end_edit()
    assert layer.mask[30, 30] and layer.mask[11, 11] and not layer.mask[5, 5]
    stroke(layer, [(30, 5), (30, 55)], radius=2, value=False, kind="eraser")
    assert not layer.mask[30, 30]
    # the square is now two halves: fill the left half's background hole-free region
    layer.begin_edit("bucket")
    layer.bucket_fill(30, 30)  # the erased line is background connected to outside: fills it all
    layer.end_edit()
    assert layer.mask[30, 30] and layer.mask[0, 0]


def test_edits_outside_the_image_are_clipped():
    layer = LabelLayer(np.zeros((20, 20), bool))
    stroke(layer, [(-50, -50), (-10, -10)])
    assert not layer.mask.any() and not layer.undo_stack
    stroke(layer, [(-5, 10), (25, 10)])
    assert layer.mask[10].all()


def test_undo_redo_is_bit_for_bit_and_journal_values_replay():
    rng = np.random.default_rng(1)
    start = rng.random((64, 80)) > 0.7
    layer = LabelLayer(start)
    replay = start.copy().ravel()
    states = [layer.mask.copy()]
    for i in range(12):
        pts = [tuple(p) for p in rng.uniform(-5, 85, size=(4, 2))]
        edit = stroke(layer, pts, radius=rng.uniform(1, 6), value=bool(i % 3))
        if edit is not None:
            states.append(layer.mask.copy())
            replay[edit.indices()] = edit.pixel_values()
    assert np.array_equal(replay.reshape(layer.mask.shape), layer.mask)
    for expected in reversed(states[:-1]):
        inverse = layer.undo()
        replay[inverse.indices()] = inverse.pixel_values()
        assert np.array_equal(layer.mask, expected)
    assert layer.undo() is None
    for expected in states[1:]:
        layer.redo()
        assert np.array_equal(layer.mask, expected)
    assert np.array_equal(replay.reshape(layer.mask.shape), states[0])


def test_cancel_edit_reverts_without_history():
    layer = LabelLayer(np.zeros((30, 30), bool))
    layer.begin_edit("brush")
    layer.paint_segment((5, 5), (25, 25), 3)
    layer.cancel_edit()
    assert not layer.mask.any() and not layer.undo_stack


def test_dirty_rectangle_covers_exactly_the_change():
    layer = LabelLayer(np.zeros((200, 300), bool))
    layer.take_dirty()
    stroke(layer, [(100, 50), (140, 60)], radius=3)
    x0, y0, x1, y1 = layer.take_dirty()
    ys, xs = np.nonzero(layer.mask)
    assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert layer.take_dirty() is None


def test_set_and_add_mask_are_single_edits():
    layer = LabelLayer(np.zeros((10, 10), bool))
    proposal = np.zeros((10, 10), bool)
    proposal[2:5, 2:5] = True
    layer.begin_edit("prelabel")
    layer.set_mask(proposal)
    edit = layer.end_edit()
    assert edit.kind == "prelabel" and edit.size == 9
    other = np.zeros((10, 10), bool)
    other[7, 7] = True
    layer.begin_edit("segment")
    layer.add_mask(other)
    layer.end_edit()
    assert layer.mask.sum() == 10
    layer.undo()
    layer.undo()
    assert not layer.mask.any()


def test_edit_runs_round_trip():
    idx = np.array([5, 3, 4, 10, 11, 20])
    val = np.array([True, True, True, False, False, True])
    edit = Edit.from_pixels("x", idx, val)
    assert list(edit.indices()) == [3, 4, 5, 10, 11, 20]
    assert list(edit.pixel_values()) == [True, True, True, False, False, True]
    assert len(edit.starts) == 3


def test_pin_first_run_set_and_check(tmp_path):
    assert kiosk_settings.pin_is_default(tmp_path)
    assert kiosk_settings.check_pin("0000", tmp_path)
    kiosk_settings.set_pin("482915", tmp_path)
    text = (tmp_path / "kiosk.toml").read_text()
    assert "482915" not in text and "pin_hash" in text
    assert not kiosk_settings.pin_is_default(tmp_path)
    assert kiosk_settings.check_pin("482915", tmp_path)
    assert not kiosk_settings.check_pin("0000", tmp_path)
    with pytest.raises(ValueError):
        kiosk_settings.set_pin("12a4", tmp_path)
