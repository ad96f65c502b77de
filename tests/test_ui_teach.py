"""The teach tool and the learner's fresher pre-label on the Label screen (run under xvfb-run).

The real kiosk app on real scratch_assay images: strokes of object and background are painted
with the pen through Kivy's event loop, the session learns from them on the worker, and the
proposal is the pre-label to accept. The strokes are never the label and never journalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from test_ui_label import DATASETS, KioskTestCase, make_project
from ui_driver import answer_review, make_touch, pen_stroke, post

HERE = Path(__file__).resolve().parent
needs_display = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under xvfb-run)")
TEACH_PROPOSAL = "Proposal from your strokes: accept it, or add strokes where it is wrong."


def true_mask(name: str) -> np.ndarray:
    from labelassist.images.decode import read_image

    return np.asarray(read_image(DATASETS / "scratch_assay" / "masks" / name)) > 0


def strokes_inside(mask: np.ndarray, rows: tuple[float, ...], margin: int, length: int = 90) -> list[list]:
    """Horizontal strokes (image points, x right, y down) at least ``margin`` pixels inside ``mask``:
    on each row (a fraction of the height) the middle ``length`` pixels of every run that long."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8)) > 0
    strokes = []
    for fraction in rows:
        y = int(fraction * mask.shape[0])
        edges = np.flatnonzero(np.diff(np.r_[0, inner[y].view(np.uint8), 0]))
        for start, end in zip(edges[::2], edges[1::2]):
            if end - start >= length:
                middle = (start + end) // 2
                strokes.append([(x + 0.5, y + 0.5) for x in np.linspace(middle - length / 2, middle + length / 2, 10)])
    return strokes


class TestTeach(KioskTestCase):

    def paint(self, strokes, uid: int):
        for i, points in enumerate(strokes):
            pen_stroke([self.win(x, y) for x, y in points], uid=uid + i)
            self.advance_frames(1)

    def tap(self, widget, uid: int):
        x, y = widget.to_window(*widget.center)
        finger = make_touch("wm_touch", uid, x, y)
        post("begin", finger)
        post("end", finger)
        self.advance_frames(1)

    def teach_tool(self):
        label = self.open_label()
        self.tap(label.ids.tool_teach, 5000)
        assert label.tool == "teach"
        assert label.ids.teach_controls.height > 0 and label.ids.teach_object_button.state == "down"
        return label

    def test_only_object_strokes_say_what_to_do_and_change_nothing(self):
        from labelassist.ui import theme

        label = self.teach_tool()
        sample_id = label.assisted.sample.id
        truth = true_mask(label.assisted.sample.name)
        prelabel, mask = label.assisted.prelabel, label.layer.mask.copy()
        self.paint(strokes_inside(truth, (0.3, 0.6), margin=12), uid=5100)
        self.pump()
        assert label.message.startswith("Paint some background too") and label.message_is_warning
        assert tuple(label.message_color) == theme.WARN_TEXT
        assert label.assisted.prelabel is prelabel and np.array_equal(self.canvas.proposal, prelabel.mask)
        assert np.array_equal(label.layer.mask, mask) and not label.layer.undo_stack
        assert self.app.session.current.prelabel is prelabel
        assert self.app.session.store.journal(sample_id) == []
        assert label.teach_strokes.has_object and label.has_teach_strokes

    def test_strokes_teach_a_proposal_better_than_otsu_which_accept_saves(self):
        from labelassist.ui import theme
        from labelassist.workflow.metrics import dice

        label = self.teach_tool()
        sample = label.assisted.sample
        truth = true_mask(sample.name)
        otsu = label.assisted.prelabel
        assert otsu.method == "otsu" and label.has_proposal
        before = label.layer.mask.copy()

        self.paint(strokes_inside(truth, (0.25, 0.75), margin=12), uid=5200)
        self.tap(label.ids.teach_background_button, 5300)
        assert label.teach_background and self.canvas.teach_background
        self.paint(strokes_inside(~truth, (0.2, 0.5, 0.8), margin=12), uid=5400)
        self.pump(3)

        proposal = label.assisted.prelabel
        assert proposal.method == "scribbles" and label.message == TEACH_PROPOSAL and not label.message_is_warning
        assert label.has_proposal and np.array_equal(self.canvas.proposal, proposal.mask)
        assert self.app.session.current.prelabel is proposal, "the session starts from the proposal"
        assert label.prelabel_words == "Pre-label: learned from your strokes on this image"
        taught, thresholded = dice(proposal.mask, truth), dice(otsu.mask, truth)
        assert taught > thresholded + 0.1, (taught, thresholded)
        # the strokes are their own overlay: the label is as it was and nothing was journalled
        assert np.array_equal(label.layer.mask, before) and not label.layer.undo_stack
        assert self.app.session.store.journal(sample.id) == []
        assert self.app.session.recover(sample.id) is None, "a crash now recovers no teach stroke"
        # in two colours of their own, over the pre-label, only while teaching
        strokes, whole = label.teach_strokes, (0, 0, truth.shape[1], truth.shape[0])
        colours = {name: tuple(round(255 * c) for c in getattr(theme, name))
                   for name in ("TEACH_OBJECT", "TEACH_BACKGROUND")}
        rgba = self.canvas.overlay_rgba(whole)
        assert (rgba[strokes.object] == colours["TEACH_OBJECT"]).all()
        assert (rgba[strokes.background] == colours["TEACH_BACKGROUND"]).all()
        others = {tuple(c) for c in np.unique(rgba[~(strokes.object | strokes.background)].reshape(-1, 4), axis=0)}
        assert not others & set(colours.values()), "the label and pre-label colours differ from the strokes'"
        self.screenshot("label_teach")
        label.tool = "brush"
        assert not (self.canvas.overlay_rgba(whole)[strokes.object] == colours["TEACH_OBJECT"]).all(axis=1).any()
        label.tool = "teach"

        # Clear strokes drops them and keeps the proposal
        self.tap(label.ids.clear_strokes_button, 5500)
        assert label.teach_strokes.empty and not label.has_teach_strokes
        assert label.assisted.prelabel is proposal and label.has_proposal

        self.tap(label.ids.accept_button, 5600)
        self.pump()
        assert np.array_equal(label.layer.mask, proposal.mask) and not label.has_proposal
        recovered = self.app.session.recover(sample.id)
        assert np.array_equal(recovered, proposal.mask), "the accepted proposal is journalled as the label"
        label.save_and_next()
        for _ in range(20):
            self.pump(3)
            if not answer_review(self.app) and label.assisted.sample.id != sample.id:
                break
        saved = self.app.session.store.latest_label(sample.id)
        assert saved is not None and np.array_equal(saved.mask, proposal.mask)
        event = [e for e in self.app.session.store.events("save_label") if e["sample_id"] == sample.id][-1]
        assert event["assistance"] == "prelabel:scribbles", event
        assert label.teach_strokes.empty, "the next sample starts with no strokes"

    def test_only_the_newest_teach_request_waits_behind_the_one_under_way(self):
        import threading

        label = self.teach_tool()
        truth = true_mask(label.assisted.sample.name)
        session, calls = self.app.session, []
        teach = session.teach
        session.teach = lambda sample_id, obj, bg: calls.append((obj.sum(), bg.sum())) or teach(sample_id, obj, bg)
        running = threading.Event()
        self.app.worker.submit(running.wait, 60)  # the worker is busy (a proposal under way)
        try:
            objects, backgrounds = strokes_inside(truth, (0.25, 0.75), 12), strokes_inside(~truth, (0.2, 0.5, 0.8), 12)
            self.paint(objects[:1], uid=6100)
            label.teach_background = True
            self.paint(backgrounds, uid=6200)  # three requests, each replacing the one waiting
        finally:
            running.set()
        self.pump(3)
        strokes = label.teach_strokes
        assert calls == [(strokes.object.sum(), strokes.background.sum())], "one request, with every stroke"
        assert label.assisted.prelabel.method == "scribbles" and label.message == TEACH_PROPOSAL
        del session.teach

    def test_a_stroke_while_saving_is_refused_and_a_new_sample_drops_the_strokes(self):
        label = self.teach_tool()
        truth = true_mask(label.assisted.sample.name)
        label.busy = True  # what Save & next sets until the flow's answer comes back
        self.advance_frames(1)
        self.paint(strokes_inside(truth, (0.5,), margin=12), uid=5700)
        assert label.teach_strokes.empty
        label.busy = False
        self.advance_frames(1)
        self.paint(strokes_inside(truth, (0.5,), margin=12), uid=5800)
        assert label.teach_strokes.has_object
        first = label.assisted.sample.id
        other = next(s.id for s in self.app.session.store.samples() if s.id != first)
        label.open_sample(other)
        self.pump(3)
        assert label.assisted.sample.id == other and label.teach_strokes.empty and not label.has_teach_strokes


class TestFresherPrelabel(KioskTestCase):
    """A training round of the instant learner while a sample is open and untouched."""

    count = 5

    def learn(self):
        """The learner's round: without threads (``background=False``) its jobs wait for
        ``wait()``; run on the worker, as the kiosk's learner thread runs them, its listeners then
        hear of the new model off the UI thread."""
        self.app.worker.submit(self.app.session.learner.wait)
        self.pump(3)

    def save_on_screen(self, label):
        """Save & next with the true mask of the sample on screen; the learner learns it."""
        sample = label.assisted.sample
        truth = true_mask(sample.name)
        self.canvas.apply_edit("test", lambda layer: layer.set_mask(truth))
        label.save_and_next()
        for _ in range(20):
            self.pump(3)
            if not answer_review(self.app) and label.assisted.sample.id != sample.id:
                self.learn()
                return
        raise AssertionError("Save & next did not open the next sample")

    def save_elsewhere(self, done: set[int]) -> int:
        """A label of a sample that is not open saved now: the learner learns it (a round ends)."""
        session = self.app.session
        sample = next(s for s in session.store.samples()
                      if s.id not in done and s.id != session.current.sample.id)
        self.app.worker.submit(session.save, sample.id, true_mask(sample.name))
        self.learn()
        return sample.id

    def test_the_fresher_prelabel_replaces_an_untouched_canvas_but_never_one_drawn_on(self):
        def only_learned(settings):
            settings["prelabel"]["shipped_models"] = False  # the shipped U-Net fits scratch_assay
        self.app.worker.call_now(self.app.session.update_settings, only_learned)
        label = self.open_label()
        assert "no labels yet" in label.prelabel_words
        done = {label.assisted.sample.id}
        self.save_on_screen(label)

        sample_id = label.assisted.sample.id
        done.add(sample_id)
        empty = label.layer.mask.copy()
        done.add(self.save_elsewhere(done))
        fresher = label.assisted.prelabel
        assert fresher.method == "learned" and "2 of your labels" in fresher.note, \
            (fresher.method, label.message, label.prelabel_words, self.app.session.assistance.current_choice())
        assert label.message == "Pre-label updated: learned from 2 of your labels."
        assert label.has_proposal and np.array_equal(self.canvas.proposal, fresher.mask)
        assert self.app.session.current.prelabel is fresher
        assert np.array_equal(label.layer.mask, empty) and not label.layer.undo_stack
        assert label.prelabel_words.startswith("Pre-label learned from 2 of your labels: matches your last")
        assert "DSC" not in label.prelabel_words
        self.screenshot("label_fresher_prelabel")

        # a stroke: the next round is not applied (the user's work is never replaced)
        pen_stroke([self.win(40, 100), self.win(120, 100)], uid=5900)
        self.pump()
        drawn = label.layer.mask.copy()
        assert drawn[100, 80]
        label.say("")  # the earlier update's words: a new one would say it again
        done.add(self.save_elsewhere(done))
        assert label.assisted.prelabel is fresher and self.app.session.current.prelabel is fresher
        assert np.array_equal(label.layer.mask, drawn) and label.message == ""
        assert label.prelabel_words.startswith("Pre-label learned from 3 of your labels")

    def test_teach_strokes_keep_the_fresher_prelabel_away(self):
        def only_learned(settings):
            settings["prelabel"]["shipped_models"] = False
        self.app.worker.call_now(self.app.session.update_settings, only_learned)
        label = self.open_label()
        done = {label.assisted.sample.id}
        self.save_on_screen(label)
        done.add(label.assisted.sample.id)
        prelabel = label.assisted.prelabel
        label.tool = "teach"
        truth = true_mask(label.assisted.sample.name)
        pen_stroke([self.win(x, y) for x, y in strokes_inside(truth, (0.5,), margin=12)[0]], uid=6000)
        self.pump()
        assert label.message_is_warning  # only object so far: nothing was asked
        self.save_elsewhere(done)
        assert label.assisted.prelabel is prelabel and self.app.session.current.prelabel is prelabel


@needs_display
def test_after_a_crash_the_restored_label_has_no_teach_stroke_in_it(tmp_path):
    """Teach strokes, a proposal and a brush stroke; SIGKILL; the restart restores the brush stroke only."""
    project = make_project(tmp_path, count=2)
    env = dict(os.environ, KIVY_NO_ARGS="1", KIVY_HOME=str(tmp_path / "kivy"))
    driver = [sys.executable, str(HERE / "ui_driver.py"), str(project), "--home", str(tmp_path / "home")]
    app = subprocess.Popen(driver + ["--script", "teach", "--out", str(tmp_path / "drawn.npy")],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline:
            line = app.stdout.readline()
            if "STROKE JOURNALLED" in line or not line and app.poll() is not None:
                break
        assert "STROKE JOURNALLED" in line, "the driven app did not report its strokes"
    finally:
        app.send_signal(signal.SIGKILL)  # a crash: no clean shutdown, no save
        app.wait(10)
    drawn = np.load(tmp_path / "drawn.npy")
    h = drawn.shape[0]
    assert drawn[h // 2, 60:200].all(), "the brush stroke is in the label"
    assert not drawn[h // 4, 20:120].any() and not drawn[3 * h // 4, 200:300].any(), \
        "the teach strokes are not in the label"

    restarted = subprocess.run(driver + ["--script", "resume", "--out", str(tmp_path / "restored.npy")],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=120)
    assert restarted.returncode == 0
    assert np.array_equal(np.load(tmp_path / "restored.npy"), drawn), "the restored label is the brush stroke only"
