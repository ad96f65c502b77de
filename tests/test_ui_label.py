"""The labelling canvas under real Kivy input events (run under xvfb-run).

Contacts are posted through Kivy's event loop as the platform providers make them:
``wm_pen`` for the pen, ``wm_touch`` for fingers (with a ShapeRect for a palm), ``mouse``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_HOME", tempfile.mkdtemp(prefix="kivy-home-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from kivy.tests.common import GraphicUnitTest  # noqa: E402

from ui_driver import make_touch, pen_stroke, post  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("LABELASSIST_DATASETS", REPO.parent / "shared" / "datasets"))
ARTIFACTS = REPO / "tests" / "artifacts"


def make_project(folder: Path, dataset: str = "scratch_assay", count: int = 3, priors=None,
                 masks: bool = False) -> Path:
    """A small project on real images (copies of the first ``count`` frames); with ``masks`` the
    dataset's masks of those frames are imported as labels."""
    from labelassist.importer import import_images
    from labelassist.project import Project

    images = folder / "images"
    images.mkdir(parents=True)
    for src in sorted((DATASETS / dataset / "images").iterdir())[:count]:
        shutil.copy2(src, images / src.name)
    with Project.create(folder / "project") as project:
        import_images(project, [images], masks=DATASETS / dataset / "masks" if masks else None)
        if priors:
            project.settings["priors"].update(priors)
            project.save_settings()
    return folder / "project"


class KioskTestCase(GraphicUnitTest):
    """Starts the real app (windowed, at 1920x1200) on a fresh small project for each test."""

    priors = None
    dataset = "scratch_assay"
    count = 3
    masks = False
    plugins: dict = {}  # file name -> source, dropped in the project's plugins/ folder before start

    def setUp(self):
        super().setUp()
        from kivy.core.window import Window

        from labelassist.ui.app import LabelAssistApp

        Window.size = (1920, 1200)
        self.tmp = Path(tempfile.mkdtemp(prefix="la-ui-"))
        folder = make_project(self.tmp, self.dataset, count=self.count, priors=self.priors, masks=self.masks)
        for name, source in self.plugins.items():
            (folder / "plugins").mkdir(exist_ok=True)
            (folder / "plugins" / name).write_text(source)
        self.app = LabelAssistApp(folder, windowed=True, home=self.tmp / "home", background=False)
        self.app.root = self.app.build()
        self.render(self.app.root)
        self.advance_frames(2)

    def tearDown(self):
        self.app.on_stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        super().tearDown()

    # helpers
    def pump(self, frames: int = 2):
        """Let the session worker finish and the UI receive its results."""
        for _ in range(3):
            self.app.worker.flush()
            self.advance_frames(frames)

    @property
    def label(self):
        return self.app.root.get_screen("label")

    @property
    def canvas(self):
        return self.label.canvas_widget

    def open_label(self):
        self.app.root.get_screen("home").continue_labelling()
        self.pump(3)
        assert self.label.assisted is not None
        return self.label

    def win(self, ix, iy):
        return self.canvas.image_to_window(ix, iy)

    def screenshot(self, name: str) -> Path:
        from kivy.core.window import Window

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.advance_frames(3)
        made = Window.screenshot(name=str(ARTIFACTS / f"{name}.png"))
        # Window.screenshot numbers its files (name0001.png): keep the plain name too
        target = ARTIFACTS / f"{name}.png"
        if made and Path(made) != target:
            os.replace(made, target)
        return target


class TestCanvasInput(KioskTestCase):

    def stroke_image(self, points, **kwargs):
        return pen_stroke([self.win(x, y) for x, y in points], **kwargs)

    def test_pen_stroke_paints_under_its_path_at_zoom_1_and_3(self):
        self.open_label()
        canvas, layer = self.canvas, self.label.layer
        layer_before = layer.mask.copy()
        canvas.set_view(1.0, (260, 194))
        self.advance_frames(1)
        ys = 100.5
        self.stroke_image([(x, ys) for x in np.linspace(100.5, 300.5, 11)])
        self.pump()
        radius = canvas.brush_size
        for x in (100, 150, 200, 250, 300):
            assert layer.mask[100, x], f"pixel ({x}, 100) under the pen path was not painted at zoom 1"
        assert not layer.mask[int(100 + radius + 3), 200]
        changed = layer.mask != layer_before
        assert changed[:, :int(100 - radius - 2)].sum() == 0

        # zoom 3 after a pan: the stroke still lands exactly under the pen
        canvas.set_view(3.0, (200, 250))
        canvas.pan(37.0, -21.0)
        self.advance_frames(1)
        before = layer.mask.copy()
        self.stroke_image([(x + 0.5, 250.5) for x in range(180, 221, 4)])
        self.pump()
        painted = layer.mask & ~before
        rows, cols = np.nonzero(painted)
        assert painted[250, 180] and painted[250, 220]
        assert abs(rows.mean() - 250) < 1.0 and abs(cols.mean() - 200) < 1.5
        assert rows.min() >= 250 - radius - 1 and rows.max() <= 250 + radius + 1

    def test_coordinate_transform_round_trips_at_several_zooms_and_offsets(self):
        self.open_label()
        canvas = self.canvas
        for scale, center, pan in [(1, (100, 100), (0, 0)), (0.5, (260, 194), (13, 7)),
                                   (3, (10, 300), (-40, 25)), (12.5, (387, 1), (5, -5))]:
            canvas.set_view(scale, center)
            canvas.pan(*pan)
            for ix, iy in [(0, 0), (10.25, 20.75), (387.5, 519.5)]:
                wx, wy = canvas.image_to_window(ix, iy)
                back = canvas.window_to_image(wx, wy)
                assert back == pytest.approx((ix, iy), abs=1e-9)
            # the screen point of an image pixel moves by scale per pixel, y downwards in the image
            a = canvas.image_to_window(5, 5)
            b = canvas.image_to_window(6, 6)
            assert b[0] - a[0] == pytest.approx(canvas.scale)
            assert a[1] - b[1] == pytest.approx(canvas.scale)

    def test_finger_drag_pans_and_does_not_paint(self):
        self.open_label()
        canvas, layer = self.canvas, self.label.layer
        self.stroke_image([(20, 20), (22, 20)])  # a pen was seen: fingers now navigate
        self.pump()
        before = layer.mask.copy()
        offset = list(canvas.offset)
        x, y = self.win(150, 150)
        finger = make_touch("wm_touch", 2001, x, y)
        post("begin", finger)
        for step in range(1, 11):
            post("update", finger, x + 12 * step, y - 5 * step)
        post("end", finger)
        self.advance_frames(1)
        assert (layer.mask == before).all()
        assert canvas.offset[0] - offset[0] == pytest.approx(120, abs=1.5)
        assert canvas.offset[1] - offset[1] == pytest.approx(-50, abs=1.5)

    def test_one_finger_paints_until_a_pen_is_seen(self):
        self.open_label()
        layer = self.label.layer
        x0, y0 = self.win(50, 50)
        x1, y1 = self.win(120, 50)
        finger = make_touch("wm_touch", 2101, x0, y0)
        post("begin", finger)
        post("update", finger, x1, y1)
        post("end", finger)
        self.pump()
        assert layer.mask[50, 80]

    def test_two_finger_pinch_zooms_and_does_not_paint(self):
        self.open_label()
        canvas, layer = self.canvas, self.label.layer
        before = layer.mask.copy()
        scale = canvas.scale
        cx, cy = self.win(200, 200)
        a = make_touch("wm_touch", 2201, cx - 50, cy)
        b = make_touch("wm_touch", 2202, cx + 50, cy)
        post("begin", a)
        post("begin", b)
        for step in range(1, 11):
            post("update", a, cx - 50 - 5 * step, cy)
            post("update", b, cx + 50 + 5 * step, cy)
        post("end", a)
        post("end", b)
        self.advance_frames(1)
        assert canvas.scale / scale == pytest.approx(2.0, rel=0.05)
        assert (layer.mask == before).all(), "a pinch must not paint (no pen seen: the first finger's dab is undone)"
        assert not layer.undo_stack

    def test_palm_sized_contact_does_nothing(self):
        self.open_label()
        canvas, layer = self.canvas, self.label.layer
        before, offset, scale = layer.mask.copy(), list(canvas.offset), canvas.scale
        x, y = self.win(150, 150)
        palm = make_touch("wm_touch", 2301, x, y, shape=(18000, 14000))  # 180x140 px, in 1/100 px
        post("begin", palm)
        for step in range(1, 6):
            post("update", palm, x + 20 * step, y)
        post("end", palm)
        self.advance_frames(1)
        assert (layer.mask == before).all()
        assert list(canvas.offset) == offset and canvas.scale == scale

    def test_finger_during_pen_stroke_is_ignored(self):
        self.open_label()
        canvas, layer = self.canvas, self.label.layer
        offset = list(canvas.offset)
        pen = make_touch("wm_pen", 2401, *self.win(60, 60))
        post("begin", pen)
        fx, fy = self.win(300, 300)
        finger = make_touch("wm_touch", 2402, fx, fy)
        post("begin", finger)
        post("update", finger, fx + 80, fy + 80)
        post("update", pen, *self.win(90, 60))
        post("end", finger)
        post("end", pen)
        self.pump()
        assert list(canvas.offset) == offset
        assert layer.mask[60, 75] and not layer.mask[300, 300]

    def test_mouse_left_paints_right_pans_wheel_zooms(self):
        self.open_label()
        canvas, layer = self.canvas, self.label.layer
        pen_stroke([self.win(40, 200), self.win(80, 200)], uid=2501, device="mouse", button="left")
        self.pump()
        assert layer.mask[200, 60]
        before, offset = layer.mask.copy(), list(canvas.offset)
        x, y = self.win(200, 300)
        pen_stroke([(x, y), (x + 30, y + 40)], uid=2502, device="mouse", button="right")
        self.advance_frames(1)
        assert (layer.mask == before).all()
        assert canvas.offset[0] - offset[0] == pytest.approx(30, abs=1.5)
        scale = canvas.scale
        wheel = make_touch("mouse", 2503, x, y, button="scrolldown")
        post("begin", wheel)
        post("end", wheel)
        self.advance_frames(1)
        assert canvas.scale > scale

    def test_undo_then_redo_restores_the_mask_bit_for_bit(self):
        label = self.open_label()
        layer = label.layer
        states = [layer.mask.copy()]
        for i, y in enumerate((80, 120, 160)):
            self.stroke_image([(50 + 10 * i, y), (250, y + 30)])
            self.pump()
            states.append(layer.mask.copy())
        label.tool = "eraser"
        self.stroke_image([(150, 60), (150, 220)])
        self.pump()
        states.append(layer.mask.copy())
        for expected in reversed(states[:-1]):
            label.undo()
            assert np.array_equal(layer.mask, expected)
        for expected in states[1:]:
            label.redo()
            assert np.array_equal(layer.mask, expected)
        # the journal followed every step: the recovered mask is the one on screen
        self.pump()
        recovered = self.app.session.recover(label.assisted.sample.id)
        assert np.array_equal(recovered, layer.mask)

    def test_two_finger_tap_undoes_three_finger_tap_redoes(self):
        label = self.open_label()
        layer = label.layer
        before = layer.mask.copy()
        self.stroke_image([(60, 100), (200, 100)])
        self.pump()
        painted = layer.mask.copy()
        assert not np.array_equal(painted, before), "the stroke painted something"
        cx, cy = self.win(250, 250)
        fingers = [make_touch("wm_touch", 2600 + i, cx + 60 * i, cy) for i in range(2)]
        for f in fingers:
            post("begin", f)
        for f in fingers:
            post("end", f)
        self.pump()
        assert np.array_equal(layer.mask, before), "two fingers undo the stroke: the mask before it"
        fingers = [make_touch("wm_touch", 2700 + i, cx + 60 * i, cy) for i in range(3)]
        for f in fingers:
            post("begin", f)
        for f in fingers:
            post("end", f)
        self.pump()
        assert np.array_equal(layer.mask, painted)

    def test_tap_to_segment_on_a_scratch_assay_image_produces_a_mask(self):
        # the seeded watershed answers a tap (LiteMedSAM's seconds-long embedding left out)
        self.app.worker.call_now(setattr, self.app.session, "_box_segmenter", None)
        label = self.open_label()
        label.tool = "segment"
        layer = label.layer
        layer_before = layer.mask.copy()
        # a tap in the cell-covered area on the left of the scratch: a proposal, the mask as it was
        self.stroke_image([(40, 194), (40, 194)])
        self.pump(3)
        assert label.object_pending, label.message
        assert np.array_equal(layer.mask, layer_before), "the proposal changed the mask before Add"
        label.prompting.add()  # the Add button
        self.pump()
        added = layer.mask & ~layer_before
        assert added.sum() > 500, "tap-to-segment added no object"
        assert layer.undo_stack[-1].kind == "segment"

    def test_the_mask_being_saved_cannot_change_and_a_result_mid_stroke_keeps_the_stroke(self):
        label = self.open_label()
        layer = label.layer
        label.busy = True  # what Save & next sets until the flow's answer comes back
        self.advance_frames(1)
        before = layer.mask.copy()
        self.stroke_image([(60, 100), (200, 100)])
        label.undo()
        label.clear()
        self.pump()
        assert np.array_equal(layer.mask, before), "a stroke, undo or clear changed the mask being saved"
        assert self.app.session.store.journal(label.assisted.sample.id) == [], "nothing was journalled"
        label.busy = False
        self.advance_frames(1)

        # A whole-mask change arriving in the middle of a stroke (a tap-to-segment result): the
        # stroke so far is its own edit, journalled; the rest of that drag paints nothing.
        before = layer.mask.copy()
        points = [self.win(x, 150) for x in (60, 120, 180)]
        touch = make_touch("wm_pen", 3100, *points[0])
        post("begin", touch)
        post("update", touch, *points[1])
        found = np.zeros_like(layer.mask)
        found[300:310, 300:310] = True
        self.canvas.apply_edit("segment", lambda layer_: layer_.add_mask(found))
        post("update", touch, *points[2])
        post("end", touch)
        self.pump()
        assert [e.kind for e in layer.undo_stack[-2:]] == ["brush", "segment"]
        changed = layer.mask & ~before
        assert changed[150, 90] and changed[305, 305]
        assert not changed[150, 160], "the drag after the result painted"
        recovered = self.app.session.recover(label.assisted.sample.id)
        assert np.array_equal(recovered, layer.mask), "the stroke before the result was journalled"

    def test_label_screen_with_prelabel_screenshot(self):
        label = self.open_label()
        assert label.has_proposal, "the Otsu pre-label is offered on a fresh project"
        path = self.screenshot("label_prelabel")
        assert path.stat().st_size > 10_000
        label.accept_prelabel()
        self.pump()
        assert np.array_equal(label.layer.mask, label.assisted.prelabel.mask)
        assert not label.has_proposal
