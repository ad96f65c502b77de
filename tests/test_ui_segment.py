"""Tap-to-segment and the magic wand on the Label screen, under real Kivy input (run under xvfb-run).

A tap, a box or a wand tap proposes one object, drawn as an outline with Add and Discard; the
mask changes only on Add, as one undo atom. Real scratch_assay frames; LiteMedSAM is left out
(its image embedding takes seconds here), so GrabCut answers boxes and the seeded watershed taps.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from test_ui_label import KioskTestCase
from ui_driver import pen_stroke, tap_widget

needs_display = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under xvfb-run)")

CELL = (40, 194)        # in the cell-covered area left of the scratch (000.png)
NEIGHBOUR = (77, 194)   # the next cell to the right: its object touches CELL's
EMPTY_BOX = (230, 100, 280, 300)  # in the empty scratch: nothing to cut out


@needs_display
class TestTapToSegment(KioskTestCase):

    def setUp(self):
        super().setUp()
        self.app.worker.call_now(setattr, self.app.session, "_box_segmenter", None)

    # helpers
    def tap(self, ix, iy, uid=5000):
        """A pen's tap on image pixel (ix, iy) (at its centre: the tool reads the pixel under it)."""
        pen_stroke([self.win(ix + 0.5, iy + 0.5)] * 2, uid=uid)

    def drag_box(self, x0, y0, x1, y1, uid=5100):
        pen_stroke([self.win(x, y) for x, y in zip(np.linspace(x0, x1, 6), np.linspace(y0, y1, 6))], uid=uid)

    def press(self, button, uid=5200):
        tap_widget(button, uid)
        self.pump()

    def open_segment(self, tool="segment"):
        label = self.open_label()
        label.tool = tool
        self.advance_frames(2)
        return label

    def assert_words(self, label, warning=False):
        from labelassist.ui import theme

        assert label.message_is_warning == warning and not label.message_is_error, label.message
        assert list(label.message_color) == list(theme.WARN_TEXT if warning else theme.OK_TEXT)

    def journal(self, label):
        return self.app.session.store.journal(label.assisted.sample.id)

    # tests
    def test_a_tap_previews_an_outline_with_add_and_discard_and_discard_leaves_the_mask(self):
        from kivy.metrics import dp

        label = self.open_segment()
        before, journal = label.layer.mask.copy(), self.journal(label)
        add, discard = label.ids.add_object_button, label.ids.discard_object_button
        assert add.height == 0 and discard.height == 0 and add.disabled, "hidden while nothing is proposed"
        self.tap(*CELL)
        assert label.message == "Finding the object..."
        self.pump(3)
        proposal = label.prompting.proposal
        assert label.object_pending and proposal is not None and proposal.found, label.message
        assert proposal.mask[CELL[1], CELL[0]] and 500 < proposal.mask.sum() < 0.25 * proposal.mask.size
        assert label.message == proposal.words and label.message.startswith("Found an object of")
        self.assert_words(label)
        assert np.array_equal(label.layer.mask, before), "the preview changed the mask before Add"
        assert self.canvas.shows_object_preview
        for button in (add, discard):
            assert not button.disabled and button.opacity == 1
            assert button.height >= dp(64) and button.width >= dp(64), button.size
            assert button.y >= label.ids.tool_buttons.y - button.height - dp(300), "on the tool rail, under the tools"
        assert label.ids.tap_object_button.height >= dp(64), "the Object / Not object toggles show"
        self.screenshot("segment_preview")
        # zoomed in, the outline is placed again on the object's edge (lines, not overlay pixels)
        from kivy.graphics import Line

        from labelassist.ui.object_prompting import object_outline

        self.canvas.set_view(6.0, CELL)
        self.advance_frames(1)
        line = next(i for i in self.canvas.object_preview.group.children if isinstance(i, Line))
        assert line.points[:2] == pytest.approx(list(self.canvas.parent_point(*object_outline(proposal.mask)[0][0])))
        self.screenshot("segment_preview_zoomed")

        self.press(discard)
        assert not label.object_pending and label.prompting.proposal is None
        assert not self.canvas.shows_object_preview and add.height == 0
        assert np.array_equal(label.layer.mask, before), "Discard changed the mask"
        assert self.journal(label) == journal, "Discard journalled something"
        assert label.message.startswith("Discarded")

    def test_add_is_one_undo_atom_and_two_touching_objects_stay_two_segments(self):
        from labelassist.workflow.components import count_segments

        label = self.open_segment()
        layer = label.layer
        before = layer.mask.copy()
        self.tap(*CELL)
        self.pump(3)
        first = label.prompting.proposal.mask
        self.press(label.ids.add_object_button)
        assert not label.object_pending and not self.canvas.shows_object_preview
        assert layer.undo_stack[-1].kind == "segment"
        assert np.array_equal(layer.mask, before | first)
        assert label.message == "Added. 1 object on this image."
        self.assert_words(label)
        after_first = layer.mask.copy()
        self.press(label.ids.undo_button)
        assert np.array_equal(layer.mask, before), "Undo did not restore the mask bit for bit"
        self.press(label.ids.redo_button)
        assert np.array_equal(layer.mask, after_first)

        # the next cell, without leaving the tool: its object touches the first one
        self.tap(*NEIGHBOUR, uid=5001)
        self.pump(3)
        second = label.prompting.proposal.mask
        grown = cv2.dilate(first.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert (grown & second).any(), "the two proposals should touch (the test's premise)"
        self.press(label.ids.add_object_button)
        assert count_segments(layer.mask) == 2, "two touching objects added in a row became one segment"
        assert label.message == "Added. 2 objects on this image."
        assert np.array_equal(self.app.session.recover(label.assisted.sample.id), layer.mask), "journalled"
        self.press(label.ids.undo_button)
        assert np.array_equal(layer.mask, after_first), "Undo removes only the second object"

    def test_a_tap_on_the_proposal_refines_it_and_not_object_taps_correct_it(self):
        from labelassist.ui.object_prompting import taps_on

        label = self.open_segment()
        before = label.layer.mask.copy()
        self.tap(*CELL)
        self.pump(3)
        first = label.prompting.proposal
        x0, y0, x1, y1 = first.bounds()
        grow = (x1 - 2, CELL[1])  # on the object, near its right edge
        self.tap(*grow, uid=5001)
        self.pump(3)
        second = label.prompting.proposal
        assert second.prompt.points == first.prompt.points + (grow,), "the tap was added to the same prompt"
        assert not np.array_equal(second.mask, first.mask), "the proposal was replaced"

        self.press(label.ids.tap_not_object_button)
        assert label.object_negative
        not_object = (x0 + 3, CELL[1])
        self.tap(*not_object, uid=5002)
        self.pump(3)
        third = label.prompting.proposal
        assert third.prompt.points == second.prompt.points and third.prompt.negative == (not_object,)
        assert np.array_equal(label.layer.mask, before), "refining changed the mask"

        # (the watershed may answer a "not object" tap with much more: then the warning says so)
        assert label.message == (third.problem or third.words)

        # with nothing pending, a "Not object" tap says what to do
        self.press(label.ids.discard_object_button)
        self.tap(400, 300, uid=5003)
        self.pump(3)
        assert not label.object_pending and not self.canvas.shows_object_preview
        assert "tap 'Object'" in label.message
        self.assert_words(label, warning=True)

        # an object tap off the pending proposal starts a new prompt there
        self.press(label.ids.tap_object_button)
        self.tap(*CELL, uid=5004)
        self.pump(3)
        assert label.prompting.proposal.prompt.points == (CELL,)
        assert not taps_on(label.prompting.proposal, (400, 300))
        self.tap(400, 300, uid=5005)
        self.pump(3)
        assert label.prompting.proposal.prompt.points == ((400, 300),), "a new prompt where the tap was"
        assert np.array_equal(label.layer.mask, before)

    def test_a_box_on_empty_background_says_what_to_do_in_the_warning_colour(self):
        label = self.open_segment()
        before = label.layer.mask.copy()
        self.drag_box(*EMPTY_BOX)
        assert label.message == "Finding the object..."
        self.pump(3)
        assert label.message == "Nothing found in the box: draw it around the whole cell."
        self.assert_words(label, warning=True)
        assert not label.object_pending and np.array_equal(label.layer.mask, before)
        self.screenshot("segment_failed")
        self.tap(100, -8, uid=5101)  # on the canvas, above the image
        self.pump()
        assert label.message == "Tap on the image."
        self.assert_words(label, warning=True)

    def test_the_wand_previews_and_adds_and_a_pending_proposal_goes_with_another_tool(self):
        from labelassist.workflow.objects import add_object

        label = self.open_segment(tool="brush")
        label.handle_key("w", [])
        assert label.tool == "wand" and label.ids.tool_wand.text == "Magic wand"
        assert label.ids.tap_object_button.height == 0, "no Object / Not object for the wand"
        before = label.layer.mask.copy()
        self.tap(*CELL)
        self.pump(3)
        proposal = label.prompting.proposal
        assert label.object_pending and proposal.prompt.tool == "wand" and proposal.prompt.points == (CELL,)
        assert proposal.method == "flood" and proposal.mask[CELL[1], CELL[0]]
        assert np.array_equal(label.layer.mask, before)
        # a large share comes with its warning; the usual words otherwise
        assert label.message == (proposal.problem or proposal.words)
        self.assert_words(label, warning=bool(proposal.problem))
        label.handle_key("enter", [])  # Enter adds a pending proposal (as the Add button does)
        self.pump()
        assert np.array_equal(label.layer.mask, add_object(before, proposal.mask))

        # a proposal waiting when the tool changes goes away (never added); Save & next waits for
        # Add or Discard (an outlined object is never lost silently)
        added = label.layer.mask.copy()
        self.tap(400, 300, uid=5001)
        self.pump(3)
        assert label.object_pending
        label.tool = "brush"
        self.advance_frames(1)
        assert not label.object_pending and not self.canvas.shows_object_preview
        label.tool = "wand"
        self.tap(400, 300, uid=5002)
        self.pump(3)
        assert label.object_pending
        label.save_and_next()
        assert label.object_pending and not label.busy
        assert label.message.startswith("Add or Discard the outlined object first")
        self.assert_words(label, warning=True)
        label.prompting.discard()
        label.save_and_next()
        assert not label.object_pending and not self.canvas.shows_object_preview
        assert np.array_equal(label.layer.mask, added), "the proposal was not added to what is saved"
        self.pump(3)
