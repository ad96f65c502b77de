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

import sys
import time

import numpy as np

from ui_driver import (answer_review, launch, next_sample_shown, parse_args, pen_stroke, sample_ready,
                       tap_widget)


def main(argv=None) -> int:
    args = parse_args(argv, scripts=("savenext", "resume"))
    from kivy.clock import Clock

    app = launch(args)
    state = {"t0": time.monotonic(), "phase": None}

    def step(dt):
        label = app.root.get_screen("label")
        phase = state["phase"]
        if phase is None:
            app.continue_labelling()
            state["phase"] = "opening"
            return
        if phase == "opening":
            if not sample_ready(label, state["t0"]):
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
            if answer_review(app) or not next_sample_shown(app, label, state["first"]):
                return
            app.worker.flush()  # the next sample is remembered as the open one
            print(f"NEXT {state['first']} {label.assisted.sample.id}", flush=True)
            state["phase"] = "idle"

    Clock.schedule_interval(step, 0.2)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
