"""Nothing is lost: kill the kiosk after a stroke, start it again, the stroke is back.

The app runs in a subprocess on the same (xvfb) display, driven by tests/ui_driver.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_ui_label import make_project

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under xvfb-run)")
def test_killing_the_process_after_a_stroke_and_restarting_restores_it(tmp_path):
    project = make_project(tmp_path, count=2)
    env = dict(os.environ, KIVY_NO_ARGS="1", KIVY_HOME=str(tmp_path / "kivy"), LABELASSIST_WINDOWED="1")
    driver = [sys.executable, str(HERE / "ui_driver.py"), str(project), "--home", str(tmp_path / "home")]

    app = subprocess.Popen(driver + ["--script", "stroke", "--out", str(tmp_path / "drawn.npy")],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 90
        line = ""
        while time.monotonic() < deadline:
            line = app.stdout.readline()
            if "STROKE JOURNALLED" in line or not line and app.poll() is not None:
                break
        assert "STROKE JOURNALLED" in line, "the driven app did not report its stroke"
    finally:
        app.send_signal(signal.SIGKILL)  # a crash: no clean shutdown, no save
        app.wait(10)
    drawn = np.load(tmp_path / "drawn.npy")
    assert drawn.sum() > 500

    restarted = subprocess.run(driver + ["--script", "resume", "--out", str(tmp_path / "restored.npy")],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=90)
    assert restarted.returncode == 0
    restored = np.load(tmp_path / "restored.npy")
    assert np.array_equal(restored, drawn), "the stroke drawn before the crash was not restored"
