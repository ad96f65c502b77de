"""Kiosk escape attempts with fingers: long-press, edge swipes, 3-, 4- and 5-finger taps.

The real app (kiosk mode on, windowed under xvfb at 1920x1200) gets each gesture through
Kivy's event loop as ``wm_touch`` contacts, on the home, queue, label and admin screens.
After every gesture: the app has not started leaving, its root is still in the window, the
same kiosk screen is showing, and the stored labels (and the stroke journal) are unchanged.
On the label canvas, once a pen has been seen (fingers then navigate only, see the input
policy), the mask on screen stays bit for bit the same. Before a pen is seen one finger
paints: a held finger paints a dab under itself and nowhere else.

The OS-level lock (Shell Launcher v2, cage) is what stops the system's own edge gestures;
these tests hold the app's side: nothing a finger does inside the window leaves the app.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_HOME", tempfile.mkdtemp(prefix="kivy-home-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from test_ui_label import DATASETS, KioskTestCase  # noqa: E402
from ui_driver import make_touch, pen_stroke, post  # noqa: E402

pytestmark = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under xvfb-run)")

HOLD_S = 2.0
SCREENS = ("home", "queue", "label", "admin")
COUNTS: dict[str, int] = {}


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def _controls(widget):
    """Every widget a tap can act on, below ``widget``."""
    from kivy.uix.behaviors import ButtonBehavior, ToggleButtonBehavior
    from kivy.uix.slider import Slider
    from kivy.uix.textinput import TextInput

    from labelassist.ui.label_canvas import LabelCanvas

    found = []
    for w in widget.walk(restrict=True):
        if isinstance(w, (ButtonBehavior, ToggleButtonBehavior, Slider, TextInput, LabelCanvas)):
            found.append(w)
    return found


def _hits(w, x, y) -> bool:
    wx, wy = w.to_widget(x, y)
    return w.x - 12 <= wx <= w.right + 12 and w.y - 12 <= wy <= w.top + 12  # clearly outside: 12 px margin


def finger_spots(x, y, fingers=5):
    """Where the fingers of a multi-finger tap at (x, y) land."""
    return [(x + 40 * i, y + (15 if i % 2 else 0)) for i in range(fingers)]


def empty_point(screen, avoid=()):
    """A window point on ``screen`` that no control covers (scanning from the middle out)."""
    from kivy.core.window import Window

    controls = _controls(screen)
    W, H = Window.size
    candidates = [(x, y) for y in range(20, H - 40, 20) for x in range(20, W - 180, 20)]
    candidates.sort(key=lambda p: (p[0] - W / 2) ** 2 + (p[1] - H / 2) ** 2)
    for x, y in candidates:
        if any(abs(x - ax) < 300 and abs(y - ay) < 200 for ax, ay in avoid):
            continue
        if not any(_hits(w, fx, fy) for w in controls for fx, fy in finger_spots(x, y)):
            return x, y
    raise AssertionError(f"no empty space found on the {screen.name} screen")


class TestFingerEscapes(KioskTestCase):

    def setUp(self):
        # One label is stored before the app starts, so "stored labels unchanged" means something.
        import test_ui_label

        plain = test_ui_label.make_project

        def make_and_label(folder, *args, **kwargs):
            from labelassist.images import read_mask
            from labelassist.project import Project
            from labelassist.session import Session

            path = plain(folder, *args, **kwargs)
            with Project.open(path) as project, Session(project, background=False) as session:
                first = session.next()
                session.save(first.sample.id, read_mask(DATASETS / "scratch_assay" / "masks" / first.sample.name))
            return path

        test_ui_label.make_project = make_and_label
        try:
            super().setUp()
        finally:
            test_ui_label.make_project = plain
        self.app.kiosk = True
        self.stored = self._stored()
        assert len(self.stored[0]) == 1

    def _stored(self):
        self.app.worker.flush()
        conn = self.app.session.store.conn
        labels = conn.execute("SELECT id, sample_id, mask FROM labels ORDER BY id").fetchall()
        journal = conn.execute("SELECT * FROM journal ORDER BY rowid").fetchall()
        return labels, journal

    def still_in_the_kiosk(self, screen: str, what: str):
        self.app.worker.flush()
        self.advance_frames(2)
        assert not self.app._leaving, f"{what} on {screen}: the app started leaving"
        assert self.app.root.get_parent_window() is not None, f"{what} on {screen}: the window lost the app"
        assert self.app.root.current == screen, f"{what} on {screen}: now on {self.app.root.current}"
        labels, journal = self._stored()
        assert labels == self.stored[0], f"{what} on {screen}: the stored labels changed"
        return journal

    # gestures -------------------------------------------------------------------------------
    def long_press(self, x, y, uid):
        finger = make_touch("wm_touch", uid, x, y)
        post("begin", finger)
        end = time.monotonic() + HOLD_S
        while time.monotonic() < end:  # the frames keep coming while the finger rests
            self.advance_frames(1)
            time.sleep(0.05)
        post("end", finger)
        self.advance_frames(1)

    def edge_swipes(self, uid):
        from kivy.core.window import Window

        W, H = Window.size
        swipes = {  # from the middle of each edge, 400 px inward
            "left edge": ((0, H / 2), (400, H / 2)),
            "right edge": ((W - 1, H / 2), (W - 401, H / 2)),
            "top edge": ((W / 2, H - 1), (W / 2, H - 401)),
            "bottom edge": ((W / 2, 0), (W / 2, 400)),
        }
        for k, (name, ((x0, y0), (x1, y1))) in enumerate(swipes.items()):
            finger = make_touch("wm_touch", uid + k, x0, y0)
            post("begin", finger)
            for t in np.linspace(0, 1, 12)[1:]:
                post("update", finger, x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
            post("end", finger)
            self.advance_frames(1)
            yield name

    def multi_tap(self, x, y, fingers, uid):
        touches = [make_touch("wm_touch", uid + i, fx, fy) for i, (fx, fy) in enumerate(finger_spots(x, y, fingers))]
        for t in touches:
            post("begin", t)
        for t in touches:
            post("end", t)
        self.advance_frames(1)

    # tests ------------------------------------------------------------------------------------
    def test_finger_gestures_on_empty_space_of_every_screen_leave_nothing(self):
        label = self.open_label()
        # A pen dab first: fingers then navigate only (with no pen seen, a swipe that starts on
        # the canvas paints, as the input policy says; that case is the last test below).
        pen_stroke([self.win(30, 30), self.win(34, 30)], uid=4999)
        self.pump()
        uid = 5000
        for screen in SCREENS:
            self.app.go(screen)
            self.pump(2)
            target = self.app.root.get_screen(screen)
            mask = label.layer.mask.copy()
            x, y = empty_point(target)
            self.long_press(x, y, uid)
            uid += 1
            self.still_in_the_kiosk(screen, "a 2 s long-press on empty space")
            _count("long-press on empty space")
            for name in self.edge_swipes(uid):
                self.still_in_the_kiosk(screen, f"a swipe from the {name}")
                _count("edge swipes")
            uid += 10
            for fingers in (3, 4, 5):
                self.multi_tap(x, y, fingers, uid)
                uid += 10
                self.still_in_the_kiosk(screen, f"a {fingers}-finger tap on empty space")
                _count("multi-finger taps outside controls")
            assert np.array_equal(label.layer.mask, mask), f"gestures on {screen} changed the mask"

    def test_fingers_on_the_canvas_after_a_pen_change_no_pixel(self):
        label = self.open_label()
        canvas = self.canvas
        # A pen dab first: from now on fingers navigate only (input policy).
        pen_stroke([self.win(30, 30), self.win(34, 30)], uid=6000)
        self.pump()
        assert canvas.pen_seen
        after_pen = self.still_in_the_kiosk("label", "a pen dab")
        mask = label.layer.mask.copy()
        x, y = self.win(label.layer.width * 0.5, label.layer.height * 0.5)
        self.long_press(x, y, 6001)
        journal = self.still_in_the_kiosk("label", "a long-press on the canvas")
        assert np.array_equal(label.layer.mask, mask) and journal == after_pen
        _count("long-press on the canvas (pen seen)")
        for name in self.edge_swipes(6010):
            journal = self.still_in_the_kiosk("label", f"a swipe from the {name}")
            assert np.array_equal(label.layer.mask, mask), f"a swipe from the {name} painted"
            assert journal == after_pen
            _count("edge swipes")
        for k, fingers in enumerate((3, 4, 5)):
            self.multi_tap(*self.win(label.layer.width * 0.3, label.layer.height * 0.5), fingers, 6100 + 10 * k)
            journal = self.still_in_the_kiosk("label", f"a {fingers}-finger tap on the canvas")
            assert np.array_equal(label.layer.mask, mask), f"a {fingers}-finger tap changed the mask"
            assert journal == after_pen
            _count("multi-finger taps on the canvas (pen seen)")

    def test_before_a_pen_is_seen_a_held_finger_paints_only_under_itself(self):
        label = self.open_label()
        assert not self.canvas.pen_seen
        before = label.layer.mask.copy()
        ix, iy = label.layer.width * 0.5, label.layer.height * 0.5
        self.long_press(*self.win(ix, iy), 7000)
        self.still_in_the_kiosk("label", "a long-press before any pen")
        changed = np.argwhere(label.layer.mask != before)
        assert len(changed), "with no pen seen, one finger paints (input policy)"
        reach = self.canvas.brush_size + 2
        assert np.abs(changed[:, 0] - iy).max() <= reach and np.abs(changed[:, 1] - ix).max() <= reach
        _count("long-press on the canvas (no pen yet)")
        # Several fingers at once are a gesture, never paint, even before a pen is seen.
        painted = label.layer.mask.copy()
        for k, fingers in enumerate((3, 4, 5)):
            self.multi_tap(*self.win(ix * 0.5, iy), fingers, 7100 + 10 * k)
            self.still_in_the_kiosk("label", f"a {fingers}-finger tap before any pen")
            assert np.array_equal(label.layer.mask, painted)
            _count("multi-finger taps on the canvas (no pen yet)")


def test_report_escape_cases():
    """Runs last in this file: the counts go to tests/artifacts (and docs/reliability.md)."""
    artifacts = Path(__file__).with_name("artifacts")
    artifacts.mkdir(exist_ok=True)
    (artifacts / "escape_counts.json").write_text(json.dumps(COUNTS))
    print("kiosk escape cases:", COUNTS)
    assert sum(COUNTS.values()) >= 40, COUNTS
