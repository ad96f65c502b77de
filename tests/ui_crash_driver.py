"""Test driver for tests/test_crash.py: the real kiosk app, killed right after "Save & next".

    python tests/ui_crash_driver.py PROJECT --home HOME --script savenext --out DRAWN.npy
    python tests/ui_crash_driver.py PROJECT --home HOME --script resume --out SHOWN.npy

``savenext``: Continue labelling, draw one pen stroke, write the mask on screen to ``--out``,
tap the "Save & next" button (a touch down/up on it through Kivy's event loop), pass the
inspection/post-processing screens if they come up (save anyway / keep as drawn), wait until
the next sample is on screen, then print ``NEXT <saved sample id> <next sample id>`` and idle
until killed. ``resume``: Continue labelling, print ``RESUMED <sample id>``, write the mask on
screen to ``--out`` and exit. Built on tests/ui_driver.py's touch helpers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from ui_driver import make_touch, pen_stroke, post


def tap_widget(widget, uid):
    x, y = widget.to_window(*widget.center)
    finger = make_touch("wm_touch", uid, x, y)
    post("begin", finger)
    post("end", finger)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("project")
    parser.add_argument("--home", required=True)
    parser.add_argument("--script", choices=("savenext", "resume"), required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    os.environ["LABELASSIST_HOME"] = args.home
    from kivy.clock import Clock

    from labelassist.ui.app import LabelAssistApp

    app = LabelAssistApp(args.project, windowed=True, home=args.home, background=False)
    state = {"t0": time.monotonic(), "phase": None}

    def step(dt):
        label = app.root.get_screen("label")
        phase = state["phase"]
        if phase is None:
            app.root.get_screen("home").continue_labelling()
            state["phase"] = "opening"
            return
        if phase == "opening":
            if label.assisted is None or label.busy or label.canvas_widget.scale == 1.0 and \
                    time.monotonic() - state["t0"] < 60:
                return
            if args.script == "resume":
                print(f"RESUMED {label.assisted.sample.id}", flush=True)
                np.save(args.out, label.layer.mask)
                app.stop()
                return False
            h = label.layer.height
            canvas = label.canvas_widget
            pen_stroke([canvas.image_to_window(x, h * 0.5) for x in np.linspace(60, 300, 25)], uid=3000)
            state["phase"] = "stroked"
            return
        if phase == "stroked":
            label.wait_for_journal()
            app.worker.flush()
            state["first"] = label.assisted.sample.id
            np.save(args.out, label.layer.mask)
            tap_widget(label.ids.save_next_button, 3001)
            state["phase"] = "saving"
            return
        if phase == "saving":
            app.worker.flush()
            current = app.root.current
            if current == "inspection":
                app.root.get_screen("inspection").save_anyway()
                return
            if current == "postprocess":
                app.root.get_screen("postprocess").reject()
                return
            if current != "label" or label.busy or label.assisted is None \
                    or label.assisted.sample.id == state["first"]:
                return
            app.worker.flush()  # the next sample is remembered as the open one
            print(f"NEXT {state['first']} {label.assisted.sample.id}", flush=True)
            state["phase"] = "idle"

    Clock.schedule_interval(step, 0.2)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
