"""Test driver for tests/test_soak.py's UI case: the real kiosk app labelling in a loop.

    python tests/ui_soak_driver.py PROJECT --home HOME

Continue labelling; then, again and again: one pen stroke, a tap on "Save & next" (through Kivy's
event loop), past the inspection/post-processing screens if they come up (save anyway / keep as
drawn), and once the next sample is on screen print, flushed,

    ACK <saved sample id> <label id> <sha1 of the mask drawn>

after listing the projects on the tablet the way Home does, in this same process. Runs until killed.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from ui_driver import (answer_review, launch, next_sample_shown, parse_args, pen_stroke, sample_ready,
                       tap_widget)


def digest(mask: np.ndarray) -> str:
    return hashlib.sha1(np.packbits(mask).tobytes()).hexdigest()


def main(argv=None) -> int:
    args = parse_args(argv, out=False)
    from kivy.clock import Clock

    from labelassist.ui import projects

    app = launch(args)
    state = {"t0": time.monotonic(), "phase": None, "round": 0}

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
            h = label.layer.height
            y = h * (0.2 + 0.6 * ((state["round"] * 0.37) % 1.0))
            canvas = label.canvas_widget
            pen_stroke([canvas.image_to_window(x, y) for x in np.linspace(40, 260, 20)], uid=4000 + 2 * state["round"])
            state["phase"] = "stroked"
            return
        if phase == "stroked":
            label.wait_for_journal()
            app.worker.flush()
            state["first"] = label.assisted.sample.id
            state["digest"] = digest(label.layer.mask)
            tap_widget(label.ids.save_next_button, 4001 + 2 * state["round"])
            state["phase"] = "saving"
            return
        if phase == "saving":
            app.worker.flush()
            if answer_review(app) or not next_sample_shown(app, label, state["first"]):
                return
            app.worker.flush()
            latest = app.session.store.latest_label(state["first"])
            print(f"ACK {state['first']} {latest.id} {state['digest']}", flush=True)
            projects.scan(Path(args.project).parent)  # Home's listing, in the same process
            state["round"] += 1
            state["phase"] = "opening"

    Clock.schedule_interval(step, 0.1)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
