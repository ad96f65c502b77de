"""Canvas figures for the kiosk UI (prints numbers; no assertions).

Run under a display (a GL context is needed for the texture uploads)::

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python bench/bench_canvas.py

1. per stroke segment on a 4096x3072 image: mask rasterisation + dirty-rectangle texture
   update, against a full texture upload (target <= 1 ms);
2. frame time while drawing a long pen stroke through Kivy's event loop (4096x3072);
3. opening the next sample with a warm cache, from the tap on "Save & next" to the first
   frame (target <= 50 ms), on real 16-bit 1022x1024 images;
4. undo memory after 1000 strokes on 4096x4096 (target <= 50 MB).

``--with-learner``: figures 1 and 2 again in the same run while the instant learner trains
without pause on a thread of the same process, as in the kiosk after each save
(``labelassist.learning``: features, a held-out score and a new forest per round, on real
scratch_assay labels); the figures without it come first, for comparison.

``--with-trainer [SET]``: figures 1 and 2 again while a U-Net training round runs, started by the
kiosk's own :class:`~labelassist.session.training.SessionTrainer` on a project of 30 labelled
images of SET (default scratch_assay) in a process of its own (idle priority, one thread); then
the round's wall time, its stages and what it decided.
"""

from __future__ import annotations

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

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("LABELASSIST_DATASETS", REPO.parent / "shared" / "datasets"))
sys.path.insert(0, str(REPO / "tests"))


def ms(values):
    values = sorted(values)
    return (f"median {statistics.median(values) * 1000:.3f} ms, p95 {values[int(0.95 * (len(values) - 1))] * 1000:.3f} ms, "
            f"max {values[-1] * 1000:.3f} ms (n={len(values)})")


def random_walk(rng, start, steps, step_px):
    angle = rng.uniform(0, 2 * np.pi)
    points = [np.array(start, float)]
    for _ in range(steps):
        angle += rng.normal(0, 0.3)
        points.append(points[-1] + step_px * np.array([np.cos(angle), np.sin(angle)]))
    return [tuple(p) for p in points]


def bench_segments(canvas):
    from labelassist.label_layer import LabelLayer

    h, w = 3072, 4096
    rng = np.random.default_rng(0)
    display = (rng.random((h, w)) * 255).astype(np.uint8)
    canvas.set_image(display)
    layer = LabelLayer(np.zeros((h, w), bool))
    canvas.set_layer(layer)
    canvas.size = (1400, 1000)
    canvas.fit()
    pts = random_walk(rng, (w / 2, h / 2), 400, 6.0)
    times = []
    layer.begin_edit("brush")
    for a, b in zip(pts[:-1], pts[1:]):
        t0 = time.perf_counter()
        layer.paint_segment(a, b, 12.0)
        canvas.refresh_overlay()
        times.append(time.perf_counter() - t0)
    layer.end_edit()
    print(f"1. stroke segment 4096x3072 (rasterise + dirty upload, radius 12): {ms(times)}")
    full = []
    for _ in range(5):
        t0 = time.perf_counter()
        canvas.redraw_overlay()
        full.append(time.perf_counter() - t0)
    print(f"   full overlay upload 4096x3072 for comparison: {ms(full)}")


def bench_frames(test_window_root):
    from kivy.base import EventLoop

    from labelassist.label_layer import LabelLayer
    from labelassist.ui.label_canvas import LabelCanvas
    from ui_driver import make_touch, post

    canvas = LabelCanvas(size=(1600, 1100), pos=(160, 50), size_hint=(None, None))
    test_window_root.add_widget(canvas)
    h, w = 3072, 4096
    rng = np.random.default_rng(1)
    canvas.set_image((rng.random((h, w)) * 255).astype(np.uint8))
    canvas.set_layer(LabelLayer(np.zeros((h, w), bool)))
    canvas.fit()
    for _ in range(3):
        EventLoop.idle()
    pts = random_walk(rng, (w / 2, h / 2), 300, 8.0)
    win = [canvas.image_to_window(*p) for p in pts]
    touch = make_touch("wm_pen", 9000, *win[0])
    post("begin", touch)
    frames, handling = [], []
    for x, y in win[1:]:
        t0 = time.perf_counter()
        post("update", touch, x, y)
        t1 = time.perf_counter()
        EventLoop.idle()  # one frame: clock, input, canvas flush, draw, flip
        frames.append(time.perf_counter() - t0)
        handling.append(t1 - t0)
    post("end", touch)
    idle = []
    for _ in range(20):
        t0 = time.perf_counter()
        canvas.canvas.ask_update()
        EventLoop.idle()
        idle.append(time.perf_counter() - t0)
    print(f"2. frame while drawing a 300-segment pen stroke on 4096x3072: {ms(frames)}")
    print(f"   of which the pen event (rasterise + dirty upload): {ms(handling)}")
    print(f"   a frame with no input, same scene (the renderer's floor here): {ms(idle)}")
    test_window_root.remove_widget(canvas)


def bench_open_next():
    from kivy.base import EventLoop
    from kivy.core.window import Window

    from labelassist.ui.app import LabelAssistApp
    from test_ui_label import make_project

    tmp = Path(tempfile.mkdtemp(prefix="la-bench-"))
    try:
        folder = make_project(tmp, "usiigaci_phase", count=8)
        app = LabelAssistApp(folder, windowed=True, home=tmp / "home", background=True)
        app.root = app.build()
        Window.add_widget(app.root)
        label = app.root.get_screen("label")
        app.go("label")
        label.next_sample()
        app.worker.flush()
        EventLoop.idle()
        EventLoop.idle()
        times, save_next, parts = [], [], []
        for _ in range(5):
            app.session.wait_prepared()             # the cache is warm
            # (a) open: Session.next on the worker, then the canvas shows it, then one frame
            t0 = time.perf_counter()
            future = app.worker.submit(app.session.next)
            assisted = future.result()
            t1 = time.perf_counter()
            label.show(assisted)
            t2 = time.perf_counter()
            EventLoop.idle()
            t3 = time.perf_counter()
            times.append(t3 - t0)
            parts.append((t1 - t0, t2 - t1, t3 - t2))
            # (b) the whole "Save & next" tap: save (fsync) + next + show + first frame
            app.session.wait_prepared()
            opened = label.assisted.sample.id
            t0 = time.perf_counter()
            label.commit()
            while label.assisted.sample.id == opened or label.busy:
                app.worker.flush()
                EventLoop.idle()
            save_next.append(time.perf_counter() - t0)
        print(f"3. open next sample, warm cache, 1022x1024 uint16 (tap to first frame): {ms(times)}")
        nxt, show, frame = (statistics.median(p[i] for p in parts) * 1000 for i in range(3))
        print(f"   medians: Session.next {nxt:.1f} ms, canvas show {show:.1f} ms, first frame {frame:.1f} ms")
        print(f"   'Save & next' incl. the fsynced save before it: {ms(save_next)}")
        bench_queue(app)
        app.on_stop()
        Window.remove_widget(app.root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_queue(app):
    """5. The queue's RecycleView with 10 000 tiles: frame time while scrolling through it."""
    from kivy.base import EventLoop

    queue = app.root.get_screen("queue")
    app.go("queue")
    app.worker.flush()
    for _ in range(3):
        EventLoop.idle()
    ids = [s.id for s in app.session.store.samples()]
    t0 = time.perf_counter()
    queue.tiles = [{"sample_id": ids[i % len(ids)], "title": f"sample {i:05d}", "badge": "to label",
                    "badge_color": [0.7, 0.7, 0.7, 1], "flag": -1} for i in range(10_000)]
    EventLoop.idle()
    fill = time.perf_counter() - t0
    grid = queue.ids.grid
    frames = []
    for k in range(1, 81):
        t0 = time.perf_counter()
        grid.scroll_y = 1 - k / 80
        EventLoop.idle()
        frames.append(time.perf_counter() - t0)
    idle = []
    for _ in range(10):
        t0 = time.perf_counter()
        app.root.canvas.ask_update()
        EventLoop.idle()
        idle.append(time.perf_counter() - t0)
    print(f"5. queue with 10 000 tiles: data set + first frame {fill * 1000:.0f} ms; frame while scrolling "
          f"top to bottom in 80 steps: {ms(frames)}; frame with no scrolling: {ms(idle)}")


def bench_huge(test_window_root):
    """6. An 8192x8192 image: opening it on the canvas and a frame."""
    from kivy.base import EventLoop

    from labelassist.label_layer import LabelLayer
    from labelassist.ui.label_canvas import LabelCanvas

    canvas = LabelCanvas(size=(1600, 1100), pos=(160, 50), size_hint=(None, None))
    test_window_root.add_widget(canvas)
    rng = np.random.default_rng(3)
    image = (rng.random((8192, 8192)) * 255).astype(np.uint8)
    mask = np.zeros((8192, 8192), bool)
    mask[1000:3000, 2000:6000] = True
    t0 = time.perf_counter()
    canvas.set_image(image)
    canvas.set_layer(LabelLayer(mask))
    canvas.fit()
    t1 = time.perf_counter()
    EventLoop.idle()
    t2 = time.perf_counter()
    x, y = canvas.image_to_window(4000, 2000)
    ok = canvas.window_to_image(x, y)
    print(f"6. 8192x8192 image: textures made and uploaded in {(t1 - t0) * 1000:.0f} ms, first frame "
          f"{(t2 - t1) * 1000:.0f} ms; image point (4000, 2000) maps back to ({ok[0]:.1f}, {ok[1]:.1f})")
    test_window_root.remove_widget(canvas)


def bench_undo_memory():
    from labelassist.label_layer import LabelLayer

    size = 4096
    layer = LabelLayer(np.zeros((size, size), bool))
    rng = np.random.default_rng(2)
    painted = 0
    for i in range(1000):
        pts = random_walk(rng, rng.uniform(200, size - 200, 2), 60, 8.0)
        layer.begin_edit("brush")
        for a, b in zip(pts[:-1], pts[1:]):
            layer.paint_segment(a, b, 8.0, value=bool(i % 4))
        edit = layer.end_edit()
        painted += edit.size if edit else 0
    mb = layer.history_bytes() / 1e6
    print(f"4. undo history after 1000 strokes (60 segments x 8 px, radius 8) on 4096x4096: {mb:.1f} MB "
          f"for {painted / 1e6:.1f} M changed pixels (a full mask copy per stroke would be "
          f"{1000 * size * size / 1e9:.1f} GB)")


class LearnerLoad:
    """The instant learner training round after round on a daemon thread (``--with-learner``)."""

    def __init__(self):
        import threading

        from labelassist.images import read_image, read_mask
        from labelassist.learning.instant import InstantLearner

        folder = DATASETS / "scratch_assay"
        names = sorted(p.name for p in (folder / "images").iterdir())[:12]
        self.samples = [(n, read_image(folder / "images" / n), read_mask(folder / "masks" / n)) for n in names]
        self.learner = InstantLearner()
        self.rounds = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        i = 0
        while not self.stop.is_set():
            name, image, mask = self.samples[i % len(self.samples)]
            self.learner.learn(i, name, image, mask)
            self.rounds += 1
            i += 1

    def __enter__(self):
        self.thread.start()
        time.sleep(1.0)  # into its first training
        return self

    def __exit__(self, *exc):
        self.stop.set()


class TrainerLoad:
    """A U-Net round on 30 labels, as the kiosk starts it (``--with-trainer``)."""

    def __init__(self, dataset: str = "scratch_assay", labels: int = 30):
        from labelassist.importer import import_images
        from labelassist.project import Project
        from labelassist.session import Session

        self.tmp = Path(tempfile.mkdtemp(prefix="bench-trainer-"))
        os.environ["LABELASSIST_HOME"] = str(self.tmp / "home")
        folder = DATASETS / dataset
        images, masks = self.tmp / "images", self.tmp / "masks"
        images.mkdir()
        masks.mkdir()
        for path in sorted((folder / "images").iterdir())[:labels]:
            shutil.copy(path, images)
            truth = next((folder / "masks").glob(path.stem + ".*"))
            shutil.copy(truth, masks / (path.stem + truth.suffix))
        self.project = Project.create(self.tmp / "project")
        import_images(self.project, [images], masks=masks)
        self.session = Session(self.project, author="bench", background=False, own=True, learn=False, train=True)
        self.outcome = None

    def __enter__(self):
        self.started = time.perf_counter()
        assert self.session.trainer.start_round(force=True), "the round did not start (torch missing?)"
        time.sleep(3.0)  # past the trainer's start-up, into its training
        return self

    def __exit__(self, *exc):
        self.outcome = self.session.trainer.wait(timeout=900)
        self.session.close()
        self.project.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    from kivy.base import EventLoop
    from kivy.core.window import Window
    from kivy.uix.floatlayout import FloatLayout

    from labelassist.ui.label_canvas import LabelCanvas

    Window.size = (1920, 1200)
    EventLoop.ensure_window()
    root = FloatLayout()
    Window.add_widget(root)
    EventLoop.idle()
    bench_segments(LabelCanvas())
    bench_frames(root)
    if "--with-learner" in sys.argv:
        with LearnerLoad() as load:
            print("-- the same while the instant learner trains on a thread of this process:")
            bench_segments(LabelCanvas())
            bench_frames(root)
            print(f"   (learner rounds meanwhile: {load.rounds})")
        return
    if "--with-trainer" in sys.argv:
        i = sys.argv.index("--with-trainer")
        dataset = sys.argv[i + 1] if len(sys.argv) > i + 1 else "scratch_assay"
        load = TrainerLoad(dataset)
        with load:
            print(f"-- the same while a U-Net round trains on 30 {dataset} labels in a process of its own:")
            bench_segments(LabelCanvas())
            bench_frames(root)
            during = time.perf_counter() - load.started
        o = load.outcome or {}
        print(f"   the round: {o.get('status')} after {o.get('wall_s')} s wall ({o.get('recipe')}, {o.get('steps')} "
              f"steps; stages {o.get('seconds')}); measured during its first {during:.0f} s: {o.get('reason')}")
        return
    bench_huge(root)
    Window.remove_widget(root)
    bench_open_next()
    bench_undo_memory()


if __name__ == "__main__":
    main()
