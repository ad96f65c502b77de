"""Opening the next sample in the real kiosk app, from the tap on "Save & next" to the first frame.

Run under a display (a GL context is needed)::

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python bench/bench_ui_open.py [--quick] [--repeat N]

What is timed (the issue's target: <= 50 ms with a warm cache): a finger tap (``wm_touch`` down
and up, posted through Kivy's event loop like the platform provider does) on the Label screen's
"Save & next" button, until the end of the first frame after the new sample's image texture is on
the canvas (``Window.on_flip`` of the first frame drawn after ``LabelScreen.show`` returned).
Between the two the real app runs as the user gets it: Session.submit (inspection) and the
fsynced Session.save on the session worker, Session.next, the result delivered through
``Clock.schedule_once``, the textures created and uploaded, the canvas fitted, one frame drawn
and flipped; the app's clock at its default 60 frames per second (each hop from the worker back
to the UI waits for the next clock tick, as in the kiosk).

Since "Save & next" runs submit, save and next as one worker job when there is nothing to show
(no inspection warning, no post-processing suggestion), one result reaches the UI thread per tap
(printed as "worker-to-UI hops"; it was two: the submission, then the next sample), so the next
image is on the second frame drawn after the tap (it could be the third before). The frames per
tap are printed too: under llvmpipe each costs hundreds of ms and the machine's load moves them a
lot, so compare runs made back to back.

Figures, each the median of N taps on real 1022x1024 uint16 images (usiigaci_phase):

1. warm cache: the session prepared the next samples in the background (the normal case);
2. the alternative in the same run, cold cache: nothing prepared (``Session.lookahead = 0``),
   so reading, pre-processing and pre-labelling the image happen after the tap.

The selector weights are "in order" (sequential) so that the samples prepared ahead are the ones
the taps open; with the default weights the ranking can change after a save and a tap then
opens an unprepared sample (the cold figure).

Under Xvfb the GL is Mesa's software renderer (llvmpipe): texture uploads and the frame are done
by the CPU, so the frame part is an upper bound for a tablet's GPU. Nothing is asserted.
The last line, ``FIGURES [...]``, is read by ``bench/run.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_HOME", tempfile.mkdtemp(prefix="kivy-bench-"))
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("LABELASSIST_DATASETS", REPO.parent / "shared" / "datasets"))
sys.path.insert(0, str(REPO / "tests"))


def gl_renderer() -> str:
    try:
        from kivy.graphics.opengl import GL_RENDERER, glGetString

        value = glGetString(GL_RENDERER)
        return value.decode() if isinstance(value, bytes) else str(value)
    except Exception:  # noqa: BLE001 - only a label for the printout
        return "unknown"


class Probe:
    """Timestamps of one tap: when show() started and ended, the first flip after it,
    and how long the Session calls on the worker took."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.show_start = self.show_end = self.flip = None
        self.frames = 0  # frames drawn from the tap to the first one with the new image, included
        self.hops = 0    # results the session worker handed to the UI thread until show() ran
        self.worker_ms: dict[str, float] = {}


def wrap_timed(obj, name, probe: Probe, key: str):
    original = getattr(obj, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            probe.worker_ms[key] = probe.worker_ms.get(key, 0.0) + (time.perf_counter() - t0) * 1000

    setattr(obj, name, timed)


def tap_save_and_next(app, label, probe: Probe, timeout: float = 60.0) -> dict:
    """One tap on "Save & next"; returns its times in ms (total and parts)."""
    from kivy.base import EventLoop

    from ui_driver import make_touch, post

    button = label.ids.save_next_button
    x, y = button.to_window(*button.center)
    opened = label.assisted.sample.id
    probe.reset()
    touch = make_touch("wm_touch", 7000 + int(time.perf_counter() * 1000) % 100000, x, y)
    t0 = time.perf_counter()
    post("begin", touch)
    post("end", touch)            # on_release: LabelScreen.save_and_next
    while True:
        EventLoop.idle()
        if probe.flip is not None:
            break
        if app.root.current in ("inspection", "postprocess"):
            raise RuntimeError(f"the bench label went to the {app.root.current} screen; it should not")
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError("the next sample did not open")
    t_end = time.perf_counter()
    assert label.assisted.sample.id != opened
    return {"total": (t_end - t0) * 1000, "to_show": (probe.show_start - t0) * 1000,
            "show": (probe.show_end - probe.show_start) * 1000, "frame": (t_end - probe.show_end) * 1000,
            "frames": probe.frames, "hops": probe.hops,
            **{k: v for k, v in probe.worker_ms.items()}}


def make_project(folder: Path, count: int) -> Path:
    """A project on ``count`` real usiigaci_phase images: the 12 frames, then copies with one
    pixel changed (a project refuses the same file content twice)."""
    import cv2

    from labelassist.importer import import_images
    from labelassist.project import Project

    sources = sorted((DATASETS / "usiigaci_phase" / "images").iterdir())
    images = folder / "images"
    images.mkdir(parents=True)
    for i in range(count):
        src = sources[i % len(sources)]
        if i < len(sources):
            shutil.copy2(src, images / src.name)
        else:
            pixels = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
            pixels[0, 0] = pixels[0, 0] + 1 + i
            cv2.imwrite(str(images / f"{src.stem}_copy{i}.tif"), pixels)
    with Project.create(folder / "project") as project:
        import_images(project, [images])
        project.settings["postprocess"]["suggest"] = []   # straight to the next sample:
        project.settings["inspection"]["gamma0"] = 0.0    # no suggestion or warning screens
        # "In order": the ranking after a save is the one before it minus the saved sample, so
        # the samples prepared ahead are the ones opened (with the default weights the
        # sequence-aware strategy can reorder the rest after a save: the prepared ones miss)
        weights = project.settings["selector"]["weights"]
        for name in weights:
            weights[name] = 0.0
        weights["sequential"] = 1.0
        project.save_settings()
    return folder / "project"


def prepare_label(app, label):
    """Put a label on the open sample (the pre-label, accepted) so that "Save & next" saves one."""
    from kivy.base import EventLoop

    if label.has_proposal:
        label.accept_prelabel()
    else:
        import numpy as np

        def blob(layer):
            mask = np.zeros_like(layer.mask)
            mask[100:200, 100:260] = True
            layer.set_mask(mask)

        label.canvas_widget.apply_edit("brush", blob)
    label.wait_for_journal()
    app.worker.flush()
    for _ in range(3):
        EventLoop.idle()


def run(quick: bool = False, repeat: int | None = None) -> list[dict]:
    from kivy.base import EventLoop
    from kivy.core.window import Window

    from labelassist.ui.app import LabelAssistApp

    repeat = repeat or (3 if quick else 9)
    Window.size = (1920, 1200)
    EventLoop.ensure_window()
    tmp = Path(tempfile.mkdtemp(prefix="la-bench-open-"))
    try:
        # enough images for warm + cold taps and the warm-up ones
        folder = make_project(tmp, count=2 * repeat + 6)
        app = LabelAssistApp(folder, windowed=True, home=tmp / "home", background=True)
        app.root = app.build()
        Window.add_widget(app.root)
        label = app.root.get_screen("label")
        probe = Probe()
        original_show = label.show

        def show(assisted):
            probe.show_start = time.perf_counter()
            original_show(assisted)
            probe.show_end = time.perf_counter()

        label.show = show  # the worker's on_done is looked up at submit time: this one is called

        def on_flip(*_):
            if probe.flip is None:
                probe.frames += 1
            if probe.show_end is not None and probe.flip is None:
                probe.flip = time.perf_counter()

        Window.bind(on_flip=on_flip)
        deliver = app.worker._deliver

        def counted(fn):  # each hop from the worker to the UI thread waits for a clock tick
            def run():
                if probe.show_start is None:
                    probe.hops += 1
                fn()
            deliver(run)

        app.worker._deliver = counted
        session = app.session
        for name, key in (("submit", "submit"), ("save", "save"), ("next", "next")):
            wrap_timed(session, name, probe, key)
        app.go("label")
        label.next_sample()
        for _ in range(200):
            app.worker.flush()
            EventLoop.idle()
            if label.assisted is not None and not label.busy:
                break
        rows = {"warm": [], "cold": []}
        for kind in ("warm", "cold"):
            if kind == "cold":
                session.lookahead = 0  # nothing is prepared ahead any more...
                prepare_label(app, label)
                tap_save_and_next(app, label, probe)  # ...and this tap drops what was (not timed)
            for i in range(repeat + 1):
                prepare_label(app, label)
                session.wait_prepared()
                app.worker.flush()
                for _ in range(3):
                    EventLoop.idle()
                times = tap_save_and_next(app, label, probe)
                if i > 0 or kind == "cold":  # the first warm tap pays one-time costs: not counted
                    rows[kind].append(times)
                if len(rows[kind]) >= repeat:
                    break
        idle = []
        for _ in range(10):  # the renderer's floor: a frame of the same screen with nothing changed
            t0 = time.perf_counter()
            app.root.canvas.ask_update()
            EventLoop.idle()
            idle.append((time.perf_counter() - t0) * 1000)
        Window.unbind(on_flip=on_flip)
        app.on_stop()
        Window.remove_widget(app.root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(kind, key):
        values = [r.get(key, 0.0) for r in rows[kind]]
        return statistics.median(values) if values else float("nan")

    renderer = gl_renderer()
    software = any(word in renderer.lower() for word in ("llvmpipe", "softpipe", "software", "swrast"))
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"GL renderer: {renderer}" + ("  (software GL: frame and upload times are an upper bound)"
                                         if software else ""))
    for kind, title in (("warm", "warm cache"), ("cold", "cold cache (alternative)")):
        values = sorted(r["total"] for r in rows[kind])
        print(f"open next, {title}, tap on 'Save & next' to first frame, 1022x1024 uint16: median "
              f"{med(kind, 'total'):.1f} ms, min {values[0]:.1f}, max {values[-1]:.1f} (n={len(values)}); "
              f"frames drawn from the tap to the first with the new image: median {med(kind, 'frames'):.0f}")
        frames = [r["frames"] for r in rows[kind]]
        print(f"   frames per tap: {', '.join(str(f) for f in frames)} (mean {statistics.mean(frames):.2f}); "
              f"worker-to-UI hops per tap until the new sample is shown: median {med(kind, 'hops'):.0f}")
        print(f"   medians: tap to show() {med(kind, 'to_show'):.1f} ms [on the worker: submit "
              f"{med(kind, 'submit'):.1f}, save {med(kind, 'save'):.1f}, next {med(kind, 'next'):.1f}], "
              f"show() {med(kind, 'show'):.1f} ms, show() to end of first frame {med(kind, 'frame'):.1f} ms")
    print(f"a frame of the Label screen with nothing changed (the renderer's floor here): median "
          f"{statistics.median(idle):.1f} ms")
    print("   the app's own part with a warm cache (worker calls + show()): "
          f"{sum(med('warm', k) for k in ('submit', 'save', 'next', 'show')):.1f} ms; the rest is waiting for and "
          "drawing frames (each result from the session worker reaches the UI at the next clock tick)")
    note = ("Xvfb + llvmpipe (software GL): an upper bound" if software else f"GL: {renderer}")
    warm, cold = med("warm", "total"), med("cold", "total")
    figures = [
        {"name": "open next sample, warm cache: tap 'Save & next' to first frame (1022x1024 u16)",
         "median_ms": warm, "alternative": "cold cache (nothing prepared ahead)", "alternative_ms": cold,
         "ratio": warm / cold, "n": len(rows["warm"]), "note": note},
        {"name": "  of which tap to the new sample on the canvas (save + next + Clock hops)",
         "median_ms": med("warm", "to_show") + med("warm", "show"),
         "alternative": "cold cache", "alternative_ms": med("cold", "to_show") + med("cold", "show"),
         "ratio": (med("warm", "to_show") + med("warm", "show")) / (med("cold", "to_show") + med("cold", "show")),
         "n": len(rows["warm"]), "note": note},
    ]
    print("FIGURES " + json.dumps(figures))
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 taps of each kind instead of 9")
    parser.add_argument("--repeat", type=int, default=None, help="taps of each kind")
    args = parser.parse_args(argv)
    run(args.quick, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
