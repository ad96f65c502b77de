"""Behaviour of the kiosk screens (their layout is in kiosk.kv).

Every action calls the :class:`labelassist.session.Session` through the app's
:class:`labelassist.ui.session_worker.SessionWorker` (never SQL or ONNX here).

Save & next, step by step (``LabelScreen.save_and_next``)::

    SessionWorker.save_and_next        one job on the worker: Session.submit(mask), and when it
                                       has no warning and no suggestion, Session.save and
                                       Session.next there too -> LabelScreen.show (one hop)
    otherwise, with the submission     inspection γ(y) and post-processing suggestions:
    -> PostprocessScreen               each suggestion before/after: accept (an edit) or reject
    -> Session.inspect(mask)           again, when a suggestion was accepted
    -> InspectionScreen                when γ ≤ γ0: "fix it" or "save anyway" (logged in the note)
    -> SessionWorker.save              Session.save off the UI thread
    -> Session.next() -> LabelScreen.show
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
from kivy.app import App
from kivy.clock import Clock
from kivy.graphics.texture import Texture
from kivy.metrics import dp
from kivy.properties import (AliasProperty, BooleanProperty, ListProperty, NumericProperty, ObjectProperty,
                             StringProperty)
from kivy.uix.behaviors import ButtonBehavior, ToggleButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.image import Image
from kivy.uix.widget import Widget
from kivy.uix.recycleview.views import RecycleDataViewBehavior
from kivy.uix.screenmanager import Screen
from kivy.factory import Factory

from labelassist import eval_tables, kiosk_settings
from labelassist.annotate import LabelLayer
from labelassist.ui import projects as projects_mod
from labelassist.workflow import inspect as inspect_mod
from labelassist.workflow import preprocess
from labelassist.workflow.registry import REGISTRY

log = logging.getLogger(__name__)

OK_COLOR = (0.6, 1, 0.7, 1)
ERROR_COLOR = (1, 0.55, 0.45, 1)


def numpy_texture(rgb: np.ndarray) -> Texture:
    """A texture showing an (H, W[, 3]) uint8 array with row 0 at the top."""
    rgb = np.ascontiguousarray(rgb)
    fmt = "luminance" if rgb.ndim == 2 else "rgb"
    texture = Texture.create(size=(rgb.shape[1], rgb.shape[0]), colorfmt=fmt, mipmap=False)
    texture.flip_vertical()
    texture.blit_buffer(rgb.tobytes(), colorfmt=fmt, bufferfmt="ubyte")
    return texture


def composite(display: np.ndarray, mask: np.ndarray, max_side: int = 1024) -> np.ndarray:
    """The image with the mask tinted magenta, at most ``max_side`` pixels (before/after views)."""
    step = max(1, int(np.ceil(max(display.shape[:2]) / max_side)))
    grey = display[::step, ::step]
    rgb = np.repeat(grey[..., None], 3, axis=2) if grey.ndim == 2 else grey[..., :3].copy()
    m = mask[::step, ::step]
    tint = np.array([255, 40, 200], np.float32)
    rgb = rgb.astype(np.float32)
    rgb[m] = rgb[m] * 0.45 + tint * 0.55
    return rgb.astype(np.uint8)


class KioskScreen(Screen):
    """A screen of one app instance (kept, so that late callbacks never reach another app)."""

    def __init__(self, **kwargs):
        self._app = App.get_running_app()
        super().__init__(**kwargs)

    @property
    def app(self):
        return self._app


# -- Buttons with a drawn icon ----------------------------------------------------------------
class IconView(Widget):
    """Shows the vector icon ``name``: the kv rule ``<Icon_NAME@IconShape>`` in kiosk.kv
    (Kivy canvas instructions on a 24x24 grid; no image files, no third-party artwork)."""

    name = StringProperty("")
    color = ListProperty([1, 1, 1, 1])

    def on_name(self, *_):
        self.clear_widgets()
        if not self.name:
            return
        try:
            shape = Factory.get(f"Icon_{self.name}")()
        except Exception:  # noqa: BLE001 - an unknown icon leaves the text label alone
            log.warning("no icon named %r", self.name)
            return
        shape.color = self.color
        self.bind(pos=shape.setter("pos"), size=shape.setter("size"), color=shape.setter("color"))
        shape.pos, shape.size = self.pos, self.size
        self.add_widget(shape)


class IconShape(Widget):
    """Base of the drawn icons: ``u`` is one unit of the 24x24 grid, (``ox``, ``oy``) its origin
    (bottom left, y upwards); the kv rules draw in grid units under a Translate + Scale."""

    color = ListProperty([1, 1, 1, 1])
    u = NumericProperty(1.0)
    ox = NumericProperty(0.0)
    oy = NumericProperty(0.0)


class IconButton(ButtonBehavior, BoxLayout):
    """A big button: the icon, and under it a short text label readable at arm's length."""

    icon = StringProperty("")
    text = StringProperty("")
    font_size = StringProperty("20sp")
    background_color = ListProperty([0.24, 0.26, 0.30, 1])
    down_color = ListProperty([0.38, 0.41, 0.47, 1])  # while pressed


class IconToggleButton(ToggleButtonBehavior, IconButton):
    """A tool of the rail: one of a group is down (shown in the accent colour)."""

    down_color = ListProperty([0.0, 0.55, 0.85, 1])


# -- Home -------------------------------------------------------------------------------------
class ProjectRow(ButtonBehavior, BoxLayout):
    """One project on the tablet (a RecycleView row): tap to switch to it."""

    folder = StringProperty("")
    title = StringProperty("")
    detail = StringProperty("")
    reason = StringProperty("")
    fraction = NumericProperty(0.0)
    current = BooleanProperty(False)
    can_open = BooleanProperty(True)

    def on_release(self):
        App.get_running_app().root.get_screen("home").choose(self.folder)


class HomeScreen(KioskScreen):
    """The open project (progress, Continue) and every project on the tablet (tap to switch).

    The list is read in a background thread straight from each project folder, read-only and
    without taking any lock (:mod:`labelassist.ui.projects`); the open project's numbers come
    from its session."""

    project_name = StringProperty("")
    progress_text = StringProperty("")
    notice = StringProperty("")
    labelled = NumericProperty(0)
    total = NumericProperty(0)
    projects = ListProperty([])
    scanning = BooleanProperty(False)
    switching = BooleanProperty(False)
    projects_heading = StringProperty("Projects on this tablet")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._summaries: list = []
        self._scan_token = 0
        self._scan_thread: threading.Thread | None = None

    def on_pre_enter(self, *_):
        self.refresh()

    def refresh(self):
        app = self.app
        if app is None or app.session is None:
            return
        session = app.session
        self.project_name = f"Project: {session.project.name}"
        app.worker.submit(lambda: (session.store.counts(), session.unsaved_samples()),
                          on_done=self._show_progress, on_error=app.show_error)
        self.scan_projects()

    def _show_progress(self, result):
        counts, unsaved = result
        self.labelled, self.total = counts["labelled"], counts["samples"]
        pct = 100 * self.labelled / self.total if self.total else 0
        self.progress_text = f"{self.labelled} of {self.total} images labelled ({pct:.0f} %)"
        self.notice = (f"Unsaved work on {len(unsaved)} image{'s' * (len(unsaved) != 1)} "
                       "will be restored when you continue." if unsaved else "")
        self._show_rows()

    # the projects on the tablet
    def scan_projects(self):
        """Read every project's progress in the background (never on the UI thread: a slow USB
        drive or a big database must not freeze the screen)."""
        app = self.app
        data, opened = app.data_folder(), list(getattr(app, "opened_folders", [app.folder]))
        self._scan_token += 1
        token = self._scan_token
        self.scanning = True

        def work():
            try:
                found = projects_mod.scan(data, also=opened)
            except Exception:  # noqa: BLE001 - the list stays as it was; the log says why
                log.exception("the projects in %s could not be listed", data)
                found = None
            Clock.schedule_once(lambda dt: self._scanned(token, found))

        self._scan_thread = threading.Thread(target=work, name="project-scan", daemon=True)
        self._scan_thread.start()

    def wait_scanned(self, timeout: float = 10.0) -> None:
        """Block until the background scan is done (tests, benchmarks); its result arrives
        with the next frame."""
        if self._scan_thread is not None:
            self._scan_thread.join(timeout)

    def _scanned(self, token, found):
        if token != self._scan_token:
            return  # a newer scan was started
        self.scanning = False
        if found is not None:
            self._summaries = found
        self._show_rows()

    def _show_rows(self):
        app = self.app
        rows = []
        names = [summary.name for summary in self._summaries]
        for summary in self._summaries:
            current = projects_mod.same_folder(summary.folder, app.folder)
            if current:  # the open project: its session's numbers (our own lock is not "another instance")
                detail = self.progress_text or summary.progress_text()
                fraction = self.labelled / self.total if self.total else 0.0
                reason, can_open = "", True
            else:
                detail, fraction = summary.progress_text(), summary.fraction
                reason, can_open = summary.reason, summary.can_open
            # copies of a project share its name: the folder tells them apart
            title = summary.name
            if names.count(summary.name) > 1:
                title = f"{summary.name}   (folder {summary.folder.name})"
            rows.append({"folder": str(summary.folder), "title": title, "detail": detail,
                         "reason": reason, "fraction": float(fraction), "current": current,
                         "can_open": can_open})
        self.projects = rows
        others = len(rows) - 1
        self.projects_heading = ("Projects on this tablet: tap one to switch to it" if others > 0
                                 else "Projects on this tablet")

    def choose(self, folder: str):
        """A tap on a project row: switch to it (after one frame that says so)."""
        app = self.app
        if self.switching:
            return
        if projects_mod.same_folder(Path(folder), app.folder):
            self.notice = "This project is open: tap 'Continue labelling'."
            return
        row = next((r for r in self.projects if r["folder"] == folder), None)
        if row is not None and not row["can_open"]:
            self.notice = f"{row['title']}: {row['reason']}"
            return
        self.switching = True
        self.notice = f"Opening {row['title'] if row else Path(folder).name}..."
        Clock.schedule_once(lambda dt: self._switch(folder), 0.05)

    def _switch(self, folder: str):
        app = self.app
        try:
            error = app.switch_project(folder)
        except Exception:  # noqa: BLE001 - the kiosk stays up; the log has the details
            log.exception("switching to %s failed", folder)
            error = "This project could not be opened. The details are in the log file."
        self.switching = False
        self.notice = ""
        if error:
            app.show_error(error)  # the open project stays open
        self.refresh()

    def continue_labelling(self):
        if self.switching:
            return
        self.app.go("label")
        self.app.root.get_screen("label").resume()

    def open_queue(self):
        if kiosk_settings.is_locked("queue", self.app.home):
            self.notice = "The queue is locked on this tablet: tap 'Continue labelling'."
            return
        self.app.go("queue")

    def open_admin(self):
        self.app.go("admin")


# -- Queue ------------------------------------------------------------------------------------
class QueueTile(RecycleDataViewBehavior, BoxLayout):
    sample_id = NumericProperty(0)
    title = StringProperty("")
    badge = StringProperty("")
    badge_color = ListProperty([1, 1, 1, 1])
    flag = NumericProperty(-1)
    thumbnail = ObjectProperty(None, allownone=True)

    def refresh_view_attrs(self, rv, index, data):
        result = super().refresh_view_attrs(rv, index, data)
        screen = App.get_running_app().root.get_screen("queue")
        self.thumbnail = screen.thumbnail_for(self.sample_id, self)
        return result

    def open_sample(self):
        App.get_running_app().root.get_screen("label").open_sample(self.sample_id)

    def set_flag(self, flag):
        App.get_running_app().root.get_screen("queue").set_flag(self.sample_id, flag)


class WeightSlider(BoxLayout):
    name = StringProperty("")
    caption = StringProperty("")
    value = NumericProperty(0.0)

    def commit(self, value):
        self.value = value
        App.get_running_app().root.get_screen("queue").set_weight(self.name, value)


BADGES = {
    "unlabelled": ("to label", (0.7, 0.7, 0.7, 1)),
    "relevant": ("cherry-picked", (0.3, 0.9, 0.4, 1)),
    "not_now": ("not now", (0.6, 0.6, 0.6, 1)),
    "labelled": ("labelled", (0.3, 0.7, 1.0, 1)),
    "warning": ("saved with warning", (1.0, 0.6, 0.1, 1)),
}


class QueueScreen(KioskScreen):
    """Every sample as a thumbnail tile in the selector's order (virtualised: a RecycleView)."""

    tiles = ListProperty([])
    summary = StringProperty("")
    columns = NumericProperty(5)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._textures: dict[int, Texture] = {}
        self._loading: set[int] = set()
        self._waiting_views: dict[int, object] = {}
        self._requests: list[int] = []
        self._loader: threading.Thread | None = None
        self._lock = threading.Lock()

    def on_pre_enter(self, *_):
        self.reload()
        self._build_weight_sliders()

    def project_changed(self):
        """Another project was opened: its sample ids mean other images."""
        with self._lock:
            self._requests.clear()
            self._loading.clear()
        self._waiting_views.clear()
        self._textures.clear()
        self.tiles = []
        self.summary = ""

    def on_size(self, *_):
        self.columns = max(2, int((self.width - dp(440)) // dp(260)))

    def reload(self):
        app = self.app
        app.worker.submit(self._collect, on_done=self._show, on_error=app.show_error)

    def _collect(self):
        # runs on the session worker (holds the Session lock)
        session = self.app.session
        ranked = session.ranking()
        states = session.sample_states()  # no mask is decoded: stays quick at 10 000 samples
        flags = session.store.flags()
        rows = [(r.sample, states[r.sample.id], -1 if r.sample.id not in flags else int(flags[r.sample.id]))
                for r in ranked]
        ranked_ids = {r.sample.id for r in ranked}
        for s in session.store.samples():
            if s.id not in ranked_ids:
                rows.append((s, states[s.id], -1 if s.id not in flags else int(flags[s.id])))
        return rows

    def _show(self, rows):
        tiles = []
        for sample, state, flag in rows:
            text, color = BADGES[state]
            tiles.append({"sample_id": sample.id, "title": sample.name, "badge": text,
                          "badge_color": list(color), "flag": flag})
        self.tiles = tiles
        todo = sum(1 for _, state, _ in rows if state in ("unlabelled", "relevant", "not_now"))
        self.summary = f"{len(rows)} images, {todo} to label, best first. Tap a picture to label it."

    def thumbnail_for(self, sample_id: int, view) -> Texture | None:
        """The tile's texture if loaded; else ask the loader (newest request first) for it."""
        texture = self._textures.get(sample_id)
        if texture is not None:
            return texture
        self._waiting_views[sample_id] = view
        with self._lock:
            if sample_id in self._loading:
                return None
            self._loading.add(sample_id)
            self._requests.append(sample_id)
            if self._loader is None or not self._loader.is_alive():
                self._loader = threading.Thread(target=self._load_thumbnails, name="thumbnails", daemon=True)
                self._loader.start()
        return None

    def _load_thumbnails(self):
        """One background thread: the tiles scrolled to last are loaded first (LIFO)."""
        app = self.app
        while True:
            with self._lock:
                if not self._requests:
                    self._loader = None
                    return
                sample_id = self._requests.pop()
            view = self._waiting_views.get(sample_id)
            if view is None or getattr(view, "sample_id", None) != sample_id:
                with self._lock:
                    self._loading.discard(sample_id)  # scrolled away: load it when it is back
                continue
            try:
                sample = app.worker.call_now(app.session.store.sample, sample_id)
                thumb = app.session.project.thumbnail(sample, 256)  # file cache: no database access
                thumb = preprocess.to_uint8(thumb) if thumb.dtype != np.uint8 else thumb
            except Exception:  # noqa: BLE001 - a missing image shows an empty tile
                log.warning("no thumbnail for sample %s", sample_id, exc_info=True)
                continue
            Clock.schedule_once(lambda dt, sid=sample_id, t=thumb: self._thumbnail_ready(sid, t))

    def _thumbnail_ready(self, sample_id, thumb):
        texture = numpy_texture(thumb if thumb.ndim == 2 else thumb[..., :3])
        self._textures[sample_id] = texture
        with self._lock:
            self._loading.discard(sample_id)
        view = self._waiting_views.pop(sample_id, None)
        if view is not None and getattr(view, "sample_id", None) == sample_id:
            view.thumbnail = texture

    def set_flag(self, sample_id: int, flag: int):
        relevant = None if flag < 0 else bool(flag)
        for tile in self.tiles:
            if tile["sample_id"] == sample_id:
                tile["flag"] = flag
        self.app.worker.submit(self.app.session.set_flag, sample_id, relevant, on_error=self.app.show_error)
        self.app.worker.submit(lambda: None, on_done=lambda _: self.reload())

    def _build_weight_sliders(self):
        box = self.ids.weights
        box.clear_widgets()
        weights = self.app.worker.call_now(lambda: dict(self.app.session.settings["selector"]["weights"]))
        captions = {"sequential": "In order", "random": "Random", "cherry_pick": "Cherry-picked first",
                    "sequence_aware": "Spread over sequences", "uncertainty": "Model unsure",
                    "diversity": "Different from labelled"}
        for name, value in weights.items():
            box.add_widget(WeightSlider(name=name, caption=captions.get(name, name.replace("_", " ")),
                                        value=float(value)))

    def set_weight(self, name: str, value: float):
        session = self.app.session
        if kiosk_settings.is_locked("settings", self.app.home):
            self.app.show_error("The selector settings are locked on this tablet.")
            self.reload()
            return

        def change(settings):
            weights = settings["selector"]["weights"]
            weights[name] = round(float(value), 2)
            if not any(w > 0 for w in weights.values()):
                weights[name] = 0.1  # the selector needs one strategy with weight > 0

        self.app.worker.submit(session.update_settings, change, on_done=lambda _: self.reload(),
                               on_error=self.app.show_error)


# -- Label ------------------------------------------------------------------------------------
def _if_alive(call) -> None:
    """Run a call scheduled for the next frame unless its widget went away meanwhile (the app
    closed or switched projects in between: Kivy's weak references then raise ReferenceError)."""
    try:
        call()
    except ReferenceError:
        log.debug("a scheduled view change was dropped: its screen is gone")


class LabelScreen(KioskScreen):
    """The canvas with its tool rail; owns the open sample and its label layer."""

    canvas_widget = ObjectProperty(None)
    tool = StringProperty("brush")
    brush_size = NumericProperty(8.0)
    overlay_opacity = NumericProperty(0.55)
    outline = BooleanProperty(False)
    show_raw = BooleanProperty(False)
    has_proposal = BooleanProperty(False)
    sample_title = StringProperty("")
    message = StringProperty("")
    # The error state is a property of its own (the smoke test and any caller read it); the
    # colour only shows it.
    message_is_error = BooleanProperty(False)
    message_color = AliasProperty(lambda self: list(ERROR_COLOR if self.message_is_error else OK_COLOR),
                                  bind=["message_is_error"], cache=True)
    busy = BooleanProperty(False)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.assisted = None
        self.layer: LabelLayer | None = None
        self.history: list[int] = []
        self._journal_future = None
        self._prelabel_journaled = True
        self._pending_view = None
        self._raw_display = None
        self._submission = None
        self._remember_trigger = Clock.create_trigger(self._remember_view, 0.5)

    def leave_project(self):
        """The project is about to close: the view waiting to be remembered is remembered now
        and the last stroke's journal write is waited for."""
        if self._remember_trigger.is_triggered:
            self._remember_trigger.cancel()
            self._remember_view()
        self.wait_for_journal()

    def project_changed(self):
        """Another project was opened: nothing of the old one stays on this screen."""
        self.assisted = None
        self.layer = None
        self.history = []
        self._pending_view = None
        self._raw_display = None
        self._submission = None
        self.has_proposal = False
        self.busy = False
        self.sample_title = ""
        self.say("")

    # opening samples
    def resume(self):
        """Continue where the last session stopped: same sample, same view, unsaved strokes."""
        app = self.app
        state = app.worker.call_now(app.session.resume_state)
        sample_id = state.get("sample_id")
        if sample_id is not None:
            self._pending_view = state
            self.tool = state.get("tool", self.tool) if state.get("tool") in (
                "brush", "eraser", "lasso", "polygon", "bucket", "segment") else self.tool
            self.open_sample(int(sample_id), keep_view=True)
        else:
            self.next_sample()

    def open_sample(self, sample_id: int, keep_view: bool = False):
        app = self.app
        if app.root.current != "label":
            app.go("label")
        self.busy = True
        self.say("Opening...")
        if not keep_view:
            self._pending_view = None
        app.worker.submit(app.session.open, sample_id, on_done=self.show, on_error=self._open_failed)

    def next_sample(self):
        self.busy = True
        self.say("Opening the next image...")
        self.app.worker.submit(self.app.session.next, on_done=self.show, on_error=self._open_failed)

    def _open_failed(self, message):
        self.busy = False
        self.say(message, error=True)

    def show(self, assisted):
        """Put an opened sample on the canvas (UI thread)."""
        self.busy = False
        if assisted is None:
            self.say("Every image is labelled. Well done!")
            self.app.go("home")
            return
        self.assisted = assisted
        self._raw_display = None
        prelabel = assisted.prelabel
        offer = (assisted.recovered is None and assisted.label is None and prelabel is not None
                 and not prelabel.is_placeholder)
        if offer:
            self.layer = LabelLayer(np.zeros(assisted.image.shape[:2], bool))
        else:
            self.layer = LabelLayer(assisted.start_mask)
        canvas = self.canvas_widget
        canvas.set_image(self._raw() if self.show_raw else assisted.display)
        canvas.set_layer(self.layer, proposal=prelabel.mask if offer else None)
        self.has_proposal = offer
        sample = assisted.sample
        if not self.history or self.history[-1] != sample.id:
            self.history.append(sample.id)
        self.sample_title = f"{sample.name}  ({sample.width}x{sample.height})"
        if assisted.recovered is not None:
            self.say("Your unsaved strokes were restored.")
        elif offer:
            self.say(f"Pre-label ready ({prelabel.method}): tap 'Accept pre-label' or draw.")
        elif assisted.label is not None:
            self.say("Labelled before: you are editing the saved label.")
        else:
            self.say(prelabel.note if prelabel is not None and prelabel.note else "Draw the objects.")
        view = self._pending_view
        self._pending_view = None
        if view and view.get("sample_id") == sample.id and view.get("zoom"):
            Clock.schedule_once(lambda dt: _if_alive(lambda: canvas.set_view(view["zoom"], view.get("center", (0, 0)))))
        else:
            Clock.schedule_once(lambda dt: _if_alive(lambda: canvas.fit()))
        self.app.worker.remember(sample_id=sample.id, screen="label")

    def _raw(self):
        if self._raw_display is None and self.assisted is not None:
            self._raw_display = preprocess.to_uint8(self.assisted.image)
        return self._raw_display

    def on_show_raw(self, *_):
        if self.assisted is not None:
            self.canvas_widget.set_image(self._raw() if self.show_raw else self.assisted.display)

    def _can_remember(self) -> bool:
        app = self.app
        return app is not None and app.worker is not None and not app.worker.closed

    def on_tool(self, *_):
        if self._can_remember():
            self.app.worker.remember(tool=self.tool)

    def view_changed(self):
        if self._can_remember():
            self._remember_trigger()

    def _remember_view(self, *_):
        # a fit or zoom scheduled just before the app stopped must not reach a closed worker
        if self.assisted is None or not self._can_remember():
            return
        c = self.canvas_widget
        self.app.worker.remember(sample_id=self.assisted.sample.id, zoom=c.scale,
                                 center=[float(v) for v in c.view_center()])

    def say(self, text: str, error: bool = False):
        self.message = text
        self.message_is_error = bool(error)

    # edits: each finished edit is journalled before the next one starts
    def wait_for_journal(self, timeout: float = 5.0) -> None:
        """Wait for the previous edit's journal write (at most ``timeout`` seconds).

        A failed write was reported by the worker already (``on_error``). A write still
        running after ``timeout`` is logged here, where it happens: it stays queued, and the
        worker's FIFO order still puts it before the next edit's write and any save.
        """
        future, self._journal_future = self._journal_future, None
        if future is None:
            return
        try:
            future.result(timeout=timeout)
        except TimeoutError:  # concurrent.futures.TimeoutError is this class since Python 3.11
            log.warning("the last edit's journal write was not done after %.1f s; it stays queued", timeout)
        except Exception:  # noqa: BLE001 - reported by the worker already
            pass

    def on_canvas_edit(self, edit):
        self.journal(edit.kind, edit.indices(), edit.pixel_values())
        if edit.kind == "prelabel":
            self.has_proposal = False

    def journal(self, kind, indices, values):
        if self.assisted is None:
            return
        self.wait_for_journal()
        self._journal_future = self.app.worker.journal(
            self.assisted.sample.id, kind, indices, values,
            on_error=lambda m: self.say("The last stroke could not be stored: " + m, error=True))

    def undo(self):
        if self.layer is None:
            return
        change = self.layer.undo()
        self.canvas_widget.refresh_overlay()
        if change is not None:
            self.journal("undo", change.indices(), change.pixel_values())
            if change.kind == "prelabel" and self.assisted is not None and self.assisted.prelabel is not None:
                self.canvas_widget.set_proposal(self.assisted.prelabel.mask)
                self.has_proposal = True

    def redo(self):
        if self.layer is None:
            return
        change = self.layer.redo()
        self.canvas_widget.refresh_overlay()
        if change is not None:
            self.journal("redo", change.indices(), change.pixel_values())
            if change.kind == "prelabel":
                self.canvas_widget.set_proposal(None)
                self.has_proposal = False

    def accept_prelabel(self):
        if not self.has_proposal or self.assisted is None:
            return
        proposal = self.assisted.prelabel.mask
        self.canvas_widget.set_proposal(None)
        self.has_proposal = False
        self.canvas_widget.apply_edit("prelabel", lambda layer: layer.set_mask(proposal))
        self.say("Pre-label accepted: correct it, then Save & next.")

    def clear(self):
        if self.layer is not None:
            self.canvas_widget.apply_edit("clear", lambda layer: layer.set_mask(np.zeros_like(layer.mask)))

    def previous(self):
        if len(self.history) >= 2:
            self.history.pop()
            self.open_sample(self.history.pop())

    def segment(self, method: str, prompt: dict):
        """Tap-to-segment: the engine's interactive pre-label, added to the mask as one edit."""
        if self.assisted is None:
            return
        self.say("Finding the object..." if method == "flood" else "Cutting out the boxed object...")
        sample_id = self.assisted.sample.id

        def done(prelabel):
            if self.assisted is None or self.assisted.sample.id != sample_id:
                return
            edit = self.canvas_widget.apply_edit("segment", lambda layer: layer.add_mask(prelabel.mask))
            self.say("Added the object." if edit is not None else "Nothing new was found there.")

        session = self.app.session
        if "box" in prompt:  # the box-prompt model when one is installed, GrabCut otherwise
            self.app.worker.submit(session.segment_box, sample_id, prompt["box"], on_done=done,
                                   on_error=lambda m: self.say(m, error=True))
        else:
            self.app.worker.submit(session.prelabel, sample_id, method, on_done=done,
                                   on_error=lambda m: self.say(m, error=True), **prompt)

    def close_polygon(self):
        self.canvas_widget.close_polygon()

    # save & next
    def save_and_next(self):
        if self.assisted is None or self.busy:
            return
        self.wait_for_journal()
        self.busy = True
        self.say("Checking the label...")
        self.canvas_widget.set_highlight(None)
        # One worker job: when the label needs nothing from the user (no warning, no
        # suggestion) it is saved and the next sample opened there, and that sample reaches
        # this thread in one hop; otherwise the submission comes back to be shown.
        self.app.worker.save_and_next(self.assisted.sample.id, self.layer.mask, strokes=self.layer.strokes,
                                      on_done=self._saved_or_submitted, on_error=self._open_failed)

    def _saved_or_submitted(self, result):
        if result.needs_user:
            self._submitted(result.submission)
        elif result.save_error:
            self.busy = False
            self.say("The label was NOT saved: " + result.save_error, error=True)
        elif result.open_error:
            self._open_failed(result.open_error)
        else:
            self.show(result.assisted)

    def _submitted(self, submission):
        self._submission = submission
        self._accepted_any = False
        if submission.suggestions:
            self.app.go("postprocess")
            self.app.root.get_screen("postprocess").present(submission.suggestions, self.assisted.display,
                                                             self.layer.mask.copy())
        else:
            self._after_postprocess(submission.report)

    def suggestions_done(self, accepted_masks):
        """The post-processing screen is done; accepted suggestions become edits."""
        self.app.go("label")
        for step, mask in accepted_masks:
            self.canvas_widget.apply_edit("suggestion", lambda layer, m=mask: layer.set_mask(m))
        if accepted_masks:
            self.wait_for_journal()
            prelabel = None
            if self.assisted.prelabel is not None and not self.assisted.prelabel.is_placeholder:
                prelabel = self.assisted.prelabel.mask
            self.app.worker.submit(self.app.session.inspect, self.layer.mask.copy(), prelabel,
                                   on_done=self._after_postprocess, on_error=self._open_failed)
        else:
            self._after_postprocess(self._submission.report)

    def _after_postprocess(self, report):
        if report is not None and report.warning:
            self.app.go("inspection")
            self.app.root.get_screen("inspection").present(report)
            self.busy = False
        else:
            self.commit()

    def commit(self, note: str | None = None, report=None):
        """Save this label off the UI thread, then open the next sample.

        ``report`` is the inspection the user saw; saving with its warning standing
        is recorded by the session as "save anyway"."""
        app = self.app
        sample_id = self.assisted.sample.id
        self.wait_for_journal()
        self.busy = True
        if app.root.current != "label":
            app.go("label")
        self.say("Saved. Opening the next image...")
        app.worker.save(sample_id, self.layer.mask, strokes=self.layer.strokes, note=note, report=report,
                        on_error=lambda m: self.say("The label was NOT saved: " + m, error=True))
        self.next_sample()

    def fix(self, check_names):
        """Back to the canvas with what the failed checks object to highlighted."""
        self.app.go("label")
        self.busy = False
        session = self.app.session
        prelabel = None
        if self.assisted.prelabel is not None and not self.assisted.prelabel.is_placeholder:
            prelabel = self.assisted.prelabel.mask
        context = inspect_mod.InspectionContext(priors=session.settings["priors"], prelabel=prelabel)
        highlight = np.zeros_like(self.layer.mask)
        for name in check_names:
            try:
                highlight |= inspect_mod.highlight(self.layer.mask, name, context)
            except Exception:  # noqa: BLE001 - a plug-in metric without highlight
                log.warning("no highlight for %s", name, exc_info=True)
        self.canvas_widget.set_highlight(highlight)
        self.say("Fix the highlighted parts, then Save & next." if highlight.any()
                 else "Look at the label again, then Save & next.")

    # keyboard
    def handle_key(self, key: str, modifiers) -> bool:
        tools = {"b": "brush", "e": "eraser", "l": "lasso", "p": "polygon", "f": "bucket", "t": "segment"}
        if key in tools:
            self.tool = tools[key]
        elif key == "z" and "shift" in modifiers or key == "y":
            self.redo()
        elif key == "z":
            self.undo()
        elif key == "a":
            self.accept_prelabel()
        elif key == "o":
            self.outline = not self.outline
        elif key == "r":
            self.show_raw = not self.show_raw
        elif key in ("[", "-"):
            self.brush_size = max(1, self.brush_size - 2)
        elif key in ("]", "+", "="):
            self.brush_size = min(80, self.brush_size + 2)
        elif key in ("enter", "spacebar"):
            if self.tool == "polygon" and self.canvas_widget.polygon:
                self.close_polygon()
            else:
                self.save_and_next()
        elif key == "backspace":
            self.previous()
        elif key == "0":
            self.canvas_widget.fit()
        elif key == "c":
            self.clear()
        elif key == "q":
            self.go_queue()
        elif key == "h":
            self.go_home()
        else:
            return False
        return True

    def go_home(self):
        self.app.go("home")

    def stop(self):
        """The app is closing: no more delayed writes."""
        self._remember_trigger.cancel()

    def go_queue(self):
        if kiosk_settings.is_locked("queue", self.app.home):
            self.say("The queue is locked on this tablet.", error=True)
            return
        self.app.go("queue")


# -- Inspection -------------------------------------------------------------------------------
class CheckRow(BoxLayout):
    text = StringProperty("")
    name = StringProperty("")

    def fix(self):
        App.get_running_app().root.get_screen("label").fix([self.name])


class InspectionScreen(KioskScreen):
    verdict = StringProperty("")

    def present(self, report):
        self.report = report
        self.verdict = (f"Label quality {report.score:.2f} is at or below the warning level "
                        f"{report.gamma0:.2f}. What looks wrong:")
        box = self.ids.checks
        box.clear_widgets()
        for check in report.failed:
            box.add_widget(CheckRow(text=check.message[:1].upper() + check.message[1:], name=check.name))

    def fix(self):
        # Checks that point at segments or holes first: "differs from the pre-label" would
        # highlight most of a label that was redrawn by hand.
        names = [c.name for c in self.report.failed]
        pointed = [n for n in names if n not in ("prelabel_change", "model_disagreement")]
        self.app.root.get_screen("label").fix(pointed or names)

    def save_anyway(self):
        messages = "; ".join(c.message for c in self.report.failed)
        log.info("saved despite the inspection warning (γ=%.2f): %s", self.report.score, messages)
        self.app.root.get_screen("label").commit(report=self.report)


# -- Post-processing --------------------------------------------------------------------------
class CompareImage(Image):
    """Hold (press) the picture to see the label before the change."""

    __events__ = ("on_hold",)

    def on_touch_down(self, touch):
        if self.collide_point(*touch.pos):
            touch.grab(self)
            self.dispatch("on_hold", True)
            return True
        return super().on_touch_down(touch)

    def on_touch_up(self, touch):
        if touch.grab_current is self:
            touch.ungrab(self)
            self.dispatch("on_hold", False)
            return True
        return super().on_touch_up(touch)

    def on_hold(self, holding):
        pass


class PostprocessScreen(KioskScreen):
    heading = StringProperty("")
    summary = StringProperty("")
    before_texture = ObjectProperty(None, allownone=True)
    after_texture = ObjectProperty(None, allownone=True)
    showing_before = BooleanProperty(False)

    def present(self, suggestions, display, mask):
        self.suggestions = list(suggestions)
        self.display = display
        self.mask = mask
        self.accepted = []
        self.index = 0
        self.before_texture = numpy_texture(composite(display, mask))
        self._show_current()

    def _show_current(self):
        s = self.suggestions[self.index]
        self.heading = (f"Suggestion {self.index + 1} of {len(self.suggestions)}: "
                        f"{s.step.replace('_', ' ')}")
        self.summary = s.change.describe().capitalize()
        self.after_texture = numpy_texture(composite(self.display, s.mask))
        self.showing_before = False

    def accept(self):
        s = self.suggestions[self.index]
        self.accepted.append((s.step, s.mask))
        self._advance()

    def reject(self):
        self._advance()

    def _advance(self):
        self.index += 1
        if self.index < len(self.suggestions):
            self._show_current()
        else:
            self.app.root.get_screen("label").suggestions_done(self.accepted)


# -- Admin ------------------------------------------------------------------------------------
PIPELINE_PRESETS = {
    "Normalised": [{"step": "percentile_normalise", "low": 0.5, "high": 99.5}],
    "Contrast (CLAHE)": [{"step": "percentile_normalise", "low": 0.5, "high": 99.5}, {"step": "clahe"}],
    "Raw": [],
}


BOX_METHOD_NAMES = {"auto": "Automatic", "box_model": "LiteMedSAM model", "grabcut": "GrabCut"}


def plain_box_words(text: str) -> str:
    """The session's reasons name the methods by their setting: say them as the buttons do."""
    return text.replace("box_model", BOX_METHOD_NAMES["box_model"]).replace("grabcut", BOX_METHOD_NAMES["grabcut"])


def box_table(evaluation) -> str:
    """A BoxEvaluation as the Admin screen's small table, the methods named as the buttons name them."""
    return eval_tables.box_table(evaluation, detailed=False, name=lambda m: BOX_METHOD_NAMES.get(m, m))


class AdminScreen(KioskScreen):
    unlocked = BooleanProperty(False)
    keypad_for_new_pin = BooleanProperty(False)
    entered = StringProperty("")
    message = StringProperty("")
    pin_warning = StringProperty("")
    pipeline_text = StringProperty("")
    prelabel_text = StringProperty("")
    evaluation_table = StringProperty("")
    gamma0 = NumericProperty(0.75)
    segments_text = StringProperty("any")
    models_text = StringProperty("")
    plugins_text = StringProperty("")  # plug-ins that were skipped, and why ("" when none)
    # tap-to-segment with a box: what a drawn box runs (prelabel.box_method), and why
    box_method = StringProperty("auto")
    box_choice_text = StringProperty("")
    box_model_installed = BooleanProperty(True)
    box_note = StringProperty("")
    box_table = StringProperty("")

    def project_changed(self):
        """Another project was opened: the figures shown were the old project's."""
        self.evaluation_table = ""
        self.box_choice_text = self.box_note = self.box_table = ""
        self._box_poll.cancel()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # while a measurement of the box methods runs in the background, look again now and then
        self._box_poll = Clock.create_trigger(lambda dt: self.refresh_box_choice(), 2.0)

    def on_pre_enter(self, *_):
        self.entered = ""
        self.message = "Enter the admin PIN to change settings or leave the kiosk."
        if self.unlocked:
            self.refresh()

    def key(self, text):
        if text == "Del":
            self.entered = self.entered[:-1]
        elif text == "OK":
            if self.unlocked:
                self.new_pin_entered(self.entered)
            else:
                self.try_unlock(self.entered)
        elif len(self.entered) < kiosk_settings.PIN_MAX_DIGITS:
            self.entered += text

    def change_pin(self):
        """Show the keypad to type a new PIN twice (the keypad page, while unlocked)."""
        self._new_pin = None
        self.entered = ""
        self.keypad_for_new_pin = True
        self.message = f"Type the new PIN ({kiosk_settings.PIN_MIN_DIGITS} to {kiosk_settings.PIN_MAX_DIGITS} digits), then OK."

    def new_pin_entered(self, pin: str) -> None:
        self.entered = ""
        if not kiosk_settings.valid_pin(pin):
            self.message = f"A PIN is {kiosk_settings.PIN_MIN_DIGITS} to {kiosk_settings.PIN_MAX_DIGITS} digits. Type the new PIN again."
            return
        if self._new_pin is None:
            self._new_pin = pin
            self.message = "Type the same new PIN once more, then OK."
            return
        if pin != self._new_pin:
            self._new_pin = None
            self.message = "The two PINs differ. Type the new PIN again."
            return
        try:
            kiosk_settings.set_pin(pin, self.app.home)
        except kiosk_settings.SettingsError as exc:  # e.g. kiosk.toml cannot be read: it is left as it is
            self._new_pin = None
            self.message = f"The PIN was not changed: {exc}"
            return
        self.keypad_for_new_pin = False
        self.message = "The new admin PIN is saved."
        self.refresh()

    # After FREE_TRIES wrong PINs in a row every further try waits twice as long (capped):
    # guessing a 4-digit PIN by hand becomes hopeless, a user who mistyped waits seconds.
    FREE_TRIES = 3
    MAX_WAIT_S = 300.0
    _wrong = 0
    _blocked_until = 0.0
    _clock = staticmethod(time.monotonic)

    def try_unlock(self, pin: str) -> bool:
        self.entered = ""
        now = self._clock()
        if now < self._blocked_until:
            self.message = f"Too many wrong PINs: wait {self._blocked_until - now:.0f} seconds, then try again."
            return False
        if kiosk_settings.check_pin(pin, self.app.home):
            self._wrong = 0
            self.unlocked = True
            self.message = "Admin settings. Changes are saved at once and logged."
            self.refresh()
            return True
        self._wrong += 1
        log.warning("wrong admin PIN (%d in a row)", self._wrong)
        if self._wrong >= self.FREE_TRIES:
            wait = min(self.MAX_WAIT_S, 2.0 ** (self._wrong - self.FREE_TRIES + 1))
            self._blocked_until = now + wait
            self.message = f"Wrong PIN. Too many wrong PINs: wait {wait:.0f} seconds, then try again."
        else:
            self.message = "Wrong PIN. Try again."
        return False

    def on_leave(self, *_):
        self._box_poll.cancel()

    def lock_and_leave(self):
        self.unlocked = False
        self.keypad_for_new_pin = False
        self.app.go("home")

    def refresh(self):
        app = self.app
        session = app.session
        settings = app.worker.call_now(lambda: session.settings)
        self.pin_warning = ("The admin PIN is still the first-run PIN 0000: set your own with "
                            "'Change the PIN' below." if kiosk_settings.pin_is_default(app.home) else "")
        pipeline = settings["preprocess"]["pipeline"]
        self.pipeline_text = " > ".join(s["step"].replace("_", " ") for s in pipeline) or "none (raw)"
        self.prelabel_text = settings["prelabel"]["method"]
        self.box_method = settings["prelabel"]["box_method"]
        self.property("box_method").dispatch(self)  # the three buttons show the setting again
        self.gamma0 = float(settings["inspection"]["gamma0"])
        segments = settings["priors"].get("segments")
        self.segments_text = "any" if segments is None else str(segments)
        model = app.worker.call_now(session.model)
        self.models_text = ("none installed" if model is None else
                            f"{model.card.name} {model.card.version} (held-out DSC "
                            f"{model.card.held_out_dsc if model.card.held_out_dsc is not None else 'not reported'})")
        errors = app.worker.call_now(lambda: dict(session.plugin_errors))
        self.plugins_text = ("Plug-ins not loaded: " + "; ".join(f"{name} ({why})" for name, why in
                                                                sorted(errors.items()))) if errors else ""
        self._fill_choices()
        self.refresh_box_choice()

    # tap-to-segment with a box
    def refresh_box_choice(self):
        """What a drawn box runs and why, asked on the worker: finding the box-prompt model loads
        it, and with "Automatic" a due measurement is started there (never on this thread)."""
        app = self.app
        if app is None or app.session is None or app.worker is None or app.worker.closed:
            return
        session = app.session

        def work():
            installed = session.box_segmenter() is not None
            return installed, session.box_choice(wait=False)

        app.worker.submit(work, on_done=self._show_box_choice,
                          on_error=lambda m: setattr(self, "box_choice_text", "Tap-to-segment with a box: " + m))

    def _show_box_choice(self, result):
        installed, choice = result
        self.box_model_installed = installed
        self.box_choice_text = (f"Tap-to-segment with a box: {BOX_METHOD_NAMES.get(choice.method, choice.method)} "
                                f"({plain_box_words(choice.reason)})")
        self.box_note = ("" if installed else
                         "No box-prompt model (LiteMedSAM) is installed on this tablet: a box drawn with "
                         "'Tap to segment' is cut out with GrabCut.")
        if choice.evaluation is not None:
            self.box_table = box_table(choice.evaluation)
        if choice.reason.startswith("measuring") and self.unlocked and self.manager is not None \
                and self.manager.current == self.name:
            self._box_poll()

    def set_box_method(self, method: str):
        """Automatic / LiteMedSAM model / GrabCut: written to the project's settings (logged)."""
        if method == self.box_method:
            return
        self._change_settings(lambda s: s["prelabel"].__setitem__("box_method", method), "Tap-to-segment method")

    def evaluate_box_prompts(self):
        """The box-prompt model against GrabCut on the objects of the newest labels (on the worker)."""
        self.box_table = "Measuring... (this can take a minute)"

        def failed(message):
            self.box_table = message[:1].upper() + message[1:]

        self.app.worker.submit(self.app.session.evaluate_box_prompts,
                               on_done=lambda e: setattr(self, "box_table", box_table(e)), on_error=failed)

    def _fill_choices(self):
        button = Factory.BigButton
        toggle = Factory.ToolButton
        settings = self.app.session.settings
        box = self.ids.pipelines
        box.clear_widgets()
        for name, pipeline in PIPELINE_PRESETS.items():
            b = toggle(text=name, allow_no_selection=True,
                       state="down" if settings["preprocess"]["pipeline"] == pipeline else "normal")
            b.bind(on_release=lambda _, p=pipeline: self.set_pipeline(p))
            box.add_widget(b)
        box = self.ids.prelabel_methods
        box.clear_widgets()
        for method in ["auto", "none"] + [m for m in ("otsu", "previous", "onnx") if m in REGISTRY.names("prelabel")]:
            b = toggle(text=method, allow_no_selection=True,
                       state="down" if settings["prelabel"]["method"] == method else "normal")
            b.bind(on_release=lambda _, m=method: self.set_prelabel(m))
            box.add_widget(b)
        box = self.ids.postprocess_steps
        box.clear_widgets()
        chosen = {c["step"] for c in settings["postprocess"]["suggest"]}
        for step in REGISTRY.names("postprocess"):
            b = toggle(text=step.replace("_", " "), allow_no_selection=True,
                       state="down" if step in chosen else "normal", font_size="18sp")
            b.bind(on_release=lambda w, s=step: self.toggle_postprocess(s, w.state == "down"))
            box.add_widget(b)
        box = self.ids.model_files
        box.clear_widgets()
        offered = [p for folder in kiosk_settings.export_destinations(self.app.home)
                   for p in sorted(folder.glob("*.onnx"))][:3]
        if not offered:
            box.add_widget(Factory.Body(text="To install a model, plug in a USB drive with the .onnx file "
                                             "and its .json card at the top level."))
        for path in offered:
            b = button(text=f"Install {path.name}", font_size="18sp")
            b.bind(on_release=lambda _, p=path: self.import_model(p))
            box.add_widget(b)
        box = self.ids.export_targets
        box.clear_widgets()
        folders = kiosk_settings.export_destinations(self.app.home)  # only where kiosk.toml allows
        if not folders:
            box.add_widget(Factory.Body(text="No USB drive found. Plug one in and open this page again."))
        for folder in folders:
            b = button(text=f"Export to {folder}", font_size="18sp")
            b.bind(on_release=lambda _, f=folder: self.export_to(f))
            box.add_widget(b)

    def _change_settings(self, change, what):
        session = self.app.session

        def failed(message):
            self.app.show_error(message)
            self.refresh()  # the choices show the settings as they are

        self.app.worker.submit(session.update_settings, change,
                               on_done=lambda _: (self.refresh(), setattr(self, "message", what + " saved.")),
                               on_error=failed)

    def set_gamma0(self, value):
        self._change_settings(lambda s: s["inspection"].__setitem__("gamma0", round(float(value), 2)),
                              "Warning level")

    def change_segments(self, delta):
        def change(s):
            current = s["priors"].get("segments")
            if delta is None:
                s["priors"]["segments"] = None
            else:
                s["priors"]["segments"] = max(0, (current if current is not None else 0) + delta)
        self._change_settings(change, "Expected segments")

    def set_prelabel(self, method):
        self._change_settings(lambda s: s["prelabel"].__setitem__("method", method), "Pre-label method")

    def toggle_postprocess(self, step, on):
        def change(s):
            kept = [c for c in s["postprocess"]["suggest"] if c["step"] != step]
            if on:
                kept.append({"step": step})
            s["postprocess"]["suggest"] = kept
        self._change_settings(change, "Post-processing")

    def set_pipeline(self, pipeline):
        session = self.app.session
        self.app.worker.submit(session.set_pipeline, [dict(p) for p in pipeline], confirm=True,
                               on_done=lambda _: (self.refresh(), setattr(self, "message", "Pre-processing saved.")),
                               on_error=self.app.show_error)

    def evaluate_prelabels(self):
        self.evaluation_table = "Measuring... (this can take a minute)"

        def done(evaluation):
            self.evaluation_table = eval_tables.prelabel_table(evaluation, detailed=False)

        self.app.worker.submit(self.app.session.evaluate_prelabels, on_done=done,
                               on_error=lambda m: setattr(self, "evaluation_table", m))

    def import_model(self, path: Path):
        """Check the model against its card and install it; a model that does not fit is refused."""
        self.message = f"Checking {path.name}..."

        def done(report):
            self.message = f"Installed: {report.message}"
            self.refresh()

        self.app.worker.submit(self.app.session.import_model, path, on_done=done, on_error=self.app.show_error)

    def export_to(self, folder: Path):
        from labelassist.export import export_png

        target = folder / f"labelassist-{self.app.session.project.name}".replace(" ", "_").replace(":", "")
        self.message = f"Exporting to {target}..."
        self.app.worker.submit(export_png, self.app.session.project, target,
                               on_done=lambda r: setattr(self, "message", self.export_message(r, target)),
                               on_error=self.app.show_error)

    @staticmethod
    def export_message(report, target: Path) -> str:
        """What an export did, in plain words: damaged labels are named, never hidden behind a count."""
        text = f"Exported {report.labels} labels to {target}."
        if report.damaged:
            names = ", ".join(d.sample.name for d in report.damaged[:3])
            more = f" and {len(report.damaged) - 3} more" if len(report.damaged) > 3 else ""
            text += (f" {len(report.damaged)} label(s) could not be read and were left out ({names}{more});"
                     " earlier versions are kept, and an administrator can put a backup back.")
        return text


__all__ = ["HomeScreen", "ProjectRow", "IconButton", "IconToggleButton", "IconView", "IconShape", "QueueScreen",
           "LabelScreen", "InspectionScreen", "PostprocessScreen", "AdminScreen"]
