"""Queue: every sample as a thumbnail tile in the selector's order, and the selector's weights
(layout: queue_screen.kv)."""

from __future__ import annotations

import logging
import threading

import numpy as np
from kivy.app import App
from kivy.clock import Clock
from kivy.graphics.texture import Texture
from kivy.metrics import dp
from kivy.properties import ListProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.recycleview.views import RecycleDataViewBehavior

from labelassist import kiosk_settings
from labelassist.ui.screens import KioskScreen, screen_of
from labelassist.ui.textures import numpy_texture
from labelassist.workflow import preprocess

log = logging.getLogger(__name__)


class QueueTile(RecycleDataViewBehavior, BoxLayout):
    sample_id = NumericProperty(0)
    title = StringProperty("")
    badge = StringProperty("")
    badge_color = ListProperty([1, 1, 1, 1])
    flag = NumericProperty(-1)
    thumbnail = ObjectProperty(None, allownone=True)

    queue = ObjectProperty(None, allownone=True)  # the QueueScreen of the RecycleView showing this tile

    def refresh_view_attrs(self, rv, index, data):
        result = super().refresh_view_attrs(rv, index, data)
        self.queue = screen_of(rv)
        self.thumbnail = self.queue.thumbnail_for(self.sample_id, self)
        return result

    def open_sample(self):
        App.get_running_app().open_sample(self.sample_id)

    def set_flag(self, flag):
        self.queue.set_flag(self.sample_id, flag)


class WeightSlider(BoxLayout):
    name = StringProperty("")
    caption = StringProperty("")
    value = NumericProperty(0.0)

    def commit(self, value):
        self.value = value
        screen_of(self).set_weight(self.name, value)


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


__all__ = ["QueueScreen", "QueueTile", "WeightSlider", "BADGES"]
