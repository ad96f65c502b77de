"""Test driver: runs the real kiosk app in its own process and plays a script on it.

Used by tests/test_ui_kiosk.py for the crash test (a stroke, SIGKILL, restart) — the
product has no test hooks; this module drives it from outside with Kivy's own events. Its
helpers (touches, taps, waiting for a sample, passing the review screens) are shared by
tests/ui_crash_driver.py and tests/ui_soak_driver.py::

    python tests/ui_driver.py PROJECT --home HOME --script stroke --out OUT.npy
    python tests/ui_driver.py PROJECT --home HOME --script resume --out OUT.npy
    python tests/ui_driver.py PROJECT --home HOME --script teach --out OUT.npy

``stroke``: Continue labelling, draw one pen stroke, wait until it is journalled, write
``OUT.npy`` (the mask on screen) and print ``STROKE JOURNALLED``, then idle until killed.
``resume``: Continue labelling, write the mask on screen to ``OUT.npy``, exit.
``teach``: as ``stroke``, after strokes of object and of background with the teach tool (the
session proposes a pre-label from them; they are never part of the label).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def touch_args(x, y):
    """UTMotionEvent arguments for window pixel (x, y): Kivy scales by (size - 1)."""
    from kivy.base import EventLoop

    win = EventLoop.window
    return {"x": x / (win.width - 1), "y": y / (win.height - 1)}


def make_touch(device, uid, x, y, button=None, shape=None):
    """A contact like the platform providers make: ``device`` wm_pen / wm_touch / mouse."""
    from kivy.input.shape import ShapeRect
    from kivy.tests.common import UTMotionEvent

    touch = UTMotionEvent(device, uid, touch_args(x, y))
    if button is not None:
        touch.button = button
        touch.profile.append("button")
    if shape is not None:
        touch.shape = ShapeRect()
        touch.shape.width, touch.shape.height = shape
        touch.profile.append("shape")
    return touch


def post(action, touch, x=None, y=None):
    from kivy.base import EventLoop

    if x is not None:
        touch.move(touch_args(x, y))
    EventLoop.post_dispatch_input(action, touch)


def pen_stroke(points, uid=1000, device="wm_pen", button=None, shape=None):
    """Post a stroke through Kivy's event loop, like a real pen (window coordinates)."""
    touch = make_touch(device, uid, *points[0], button=button, shape=shape)
    post("begin", touch)
    for x, y in points[1:]:
        post("update", touch, x, y)
    post("end", touch)
    return touch


def tap_widget(widget, uid):
    """A finger's tap (down, up) on the middle of ``widget``, through Kivy's event loop."""
    x, y = widget.to_window(*widget.center)
    finger = make_touch("wm_touch", uid, x, y)
    post("begin", finger)
    post("end", finger)


def parse_args(argv, scripts=None, out=True):
    """``PROJECT --home HOME`` (and ``--script``, ``--out`` where the driver has them)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("project")
    parser.add_argument("--home", required=True)
    if scripts:
        parser.add_argument("--script", choices=scripts, required=True)
    if out:
        parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def launch(args):
    """The real kiosk app on ``args.project``, windowed, preparing samples on demand."""
    os.environ["LABELASSIST_HOME"] = args.home
    from labelassist.ui.app import LabelAssistApp

    return LabelAssistApp(args.project, windowed=True, home=args.home, background=False)


def sample_ready(label, t0: float, patience: float = 60.0) -> bool:
    """The sample is on screen and fitted to the canvas (scale leaves 1.0), however slow the
    machine is: a stroke sent before the layout settles would land elsewhere. After
    ``patience`` seconds from ``t0`` a scale of 1.0 is taken as the fit."""
    if label.assisted is None or label.busy:
        return False
    return label.canvas_widget.scale != 1.0 or time.monotonic() - t0 >= patience


def answer_review(app) -> bool:
    """Past the Inspection and Post-processing screens if they are up (save anyway / keep as
    drawn); True when one was answered (its result arrives with a later frame)."""
    current = app.root.current
    if current == "inspection":
        app.root.get_screen("inspection").save_anyway()
        return True
    if current == "postprocess":
        app.root.get_screen("postprocess").reject()
        return True
    return False


def next_sample_shown(app, label, saved_id: int) -> bool:
    """Save & next of ``saved_id`` is done: another sample is on the Label screen."""
    return app.root.current == "label" and not label.busy and label.assisted is not None \
        and label.assisted.sample.id != saved_id


def main(argv=None) -> int:
    args = parse_args(argv, scripts=("stroke", "resume", "teach"))
    from kivy.clock import Clock

    app = launch(args)
    state = {"t0": time.monotonic()}

    def step(dt):
        label = app.root.get_screen("label")
        if state.get("phase") is None:
            app.continue_labelling()
            state["phase"] = "opening"
            return
        if state["phase"] == "opening":
            if not sample_ready(label, state["t0"]):
                return
            if args.script == "resume":
                np.save(args.out, label.layer.mask)
                app.stop()
                return False
            canvas = label.canvas_widget
            h = label.layer.height
            if args.script == "teach":
                label.tool = "teach"
                pen_stroke([canvas.image_to_window(x, h * 0.25) for x in np.linspace(20, 120, 10)], uid=1001)
                label.teach_background = True
                pen_stroke([canvas.image_to_window(x, h * 0.75) for x in np.linspace(200, 300, 10)], uid=1002)
                label.tool = "brush"
            pts = [canvas.image_to_window(x, h * 0.5) for x in np.linspace(60, 200, 15)]
            pen_stroke(pts)
            state["phase"] = "stroked"
            return
        if state["phase"] == "stroked":
            label.wait_for_journal()
            app.worker.flush()
            np.save(args.out, label.layer.mask)
            print("STROKE JOURNALLED", flush=True)
            state["phase"] = "idle"

    Clock.schedule_interval(step, 0.2)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
