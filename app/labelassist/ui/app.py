"""The kiosk application: window, kiosk lock, screens, keyboard shortcuts.

``run(folder, windowed=False)`` is what ``labelassist kiosk`` and ``labelassist demo`` call.

Kiosk mode (the default): fullscreen, Escape and the window's close request are vetoed,
the screensaver is held off; only "Exit kiosk" on the Admin screen (behind the admin
PIN, see :mod:`labelassist.kiosk_settings`) leaves.

Keyboard shortcuts on the Label screen (the detachable keyboard; never needed)::

    B brush   E eraser   L lasso   P polygon   F fill   T tap-to-segment
    Z / Ctrl+Z undo      Y / Ctrl+Y / Shift+Z redo     A accept the pre-label
    [ ] brush size       O outline   R raw / enhanced image   0 fit the image
    C clear   Enter / Space save & next (or close the polygon)   Backspace previous
    Q queue   H home     Escape cancels a polygon (it never leaves the kiosk)

Where the code is: ``screens.py`` (behaviour of each screen), ``kiosk.kv`` (layout),
``label_canvas.py`` (the canvas and its input), ``input_policy.py`` (pen / finger /
palm / mouse), ``session_worker.py`` (Session calls off the UI thread),
``labelassist.annotate`` (the mask and its undo history, no GUI).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

KV_FILE = Path(__file__).with_name("kiosk.kv")


def configure_kivy(windowed: bool) -> None:
    """Kivy settings that must be made before ``kivy.core.window`` is imported."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")           # Kivy must not parse our argv
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")     # our log setup owns the console
    from kivy.config import Config

    # Mouse without the red multitouch emulation dots; right button pans instead.
    Config.set("input", "mouse", "mouse,disable_multitouch")
    Config.set("kivy", "exit_on_escape", "0")
    Config.set("graphics", "allow_screensaver", "0")
    Config.set("kivy", "window_icon", "")


configure_kivy(windowed=os.environ.get("LABELASSIST_WINDOWED") == "1")

from kivy.app import App  # noqa: E402 - after the configuration above
from kivy.clock import Clock  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from kivy.factory import Factory  # noqa: E402
from kivy.lang import Builder  # noqa: E402
from kivy.properties import BooleanProperty, StringProperty  # noqa: E402
from kivy.uix.label import Label  # noqa: E402
from kivy.uix.popup import Popup  # noqa: E402
from kivy.uix.screenmanager import NoTransition, ScreenManager  # noqa: E402

from labelassist.ui import screens  # noqa: E402
from labelassist.ui.label_canvas import LabelCanvas  # noqa: E402
from labelassist.ui.session_worker import SessionWorker  # noqa: E402

Factory.register("LabelCanvas", cls=LabelCanvas)
for _name in ("HomeScreen", "QueueScreen", "QueueTile", "WeightSlider", "LabelScreen", "InspectionScreen",
              "CheckRow", "PostprocessScreen", "CompareImage", "AdminScreen"):
    Factory.register(_name, cls=getattr(screens, _name))
_kv_loaded = False


def load_kv() -> None:
    global _kv_loaded
    if not _kv_loaded:
        Builder.load_file(str(KV_FILE))
        _kv_loaded = True


class LabelAssistApp(App):
    """Opens one project and shows the kiosk screens.

    Parameters
    ----------
    folder : path of the project
    windowed : a normal window (development) instead of the locked fullscreen kiosk
    home : where kiosk.toml is (default: ``labelassist.cli.data_home()``)
    background : prepare the next samples in a background thread (False in tests)
    """

    kiosk = BooleanProperty(True)
    status = StringProperty("")

    def __init__(self, folder, windowed: bool = False, home: Path | None = None, background: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.title = "Label Assistant"
        self.folder = Path(folder)
        self.kiosk = not windowed
        if home is None:
            from labelassist.cli import data_home

            home = data_home()
        self.home = Path(home)
        self.background = background
        self.project = None
        self.session = None
        self.worker: SessionWorker | None = None
        self._leaving = False

    # -- life cycle -------------------------------------------------------------------------
    def build(self):
        from labelassist.project import Project
        from labelassist.session import Session

        load_kv()
        self.project = Project.open(self.folder)
        self.session = Session(self.project, background=self.background)
        self.worker = SessionWorker(self.session, deliver=lambda fn: Clock.schedule_once(lambda dt: fn()))
        manager = ScreenManager(transition=NoTransition())
        for cls in (screens.HomeScreen, screens.QueueScreen, screens.LabelScreen, screens.InspectionScreen,
                    screens.PostprocessScreen, screens.AdminScreen):
            manager.add_widget(cls())
        palm = float(self._kiosk_settings()["input"]["palm_size"])
        manager.get_screen("label").canvas_widget.palm_size = palm
        Window.bind(on_request_close=self.on_request_close, on_key_down=self.on_key_down)
        if self.kiosk:
            Window.fullscreen = "auto"
        Window.clearcolor = (0.06, 0.07, 0.08, 1)
        return manager

    def _kiosk_settings(self):
        from labelassist import kiosk_settings

        return kiosk_settings.load(self.home)

    def on_stop(self):
        Window.unbind(on_request_close=self.on_request_close, on_key_down=self.on_key_down)
        if self.root is not None:
            self.root.get_screen("label").stop()
        if self.worker is not None:
            self.worker.close()  # queued saves reach disk first
        if self.session is not None:
            self.session.close()
        if self.project is not None:
            self.project.close()

    def go(self, name: str) -> None:
        self.root.current = name

    # -- kiosk lock -------------------------------------------------------------------------
    def on_request_close(self, *args, **kwargs):
        """Vetoes closing the window in kiosk mode (returns True) unless the admin chose to leave."""
        if self.kiosk and not self._leaving:
            log.info("close request vetoed (kiosk mode)")
            self.show_error("To leave the kiosk, open Admin and enter the PIN.")
            return True
        return False

    def leave_kiosk(self):
        """Exit (only reachable from the unlocked Admin screen)."""
        log.info("leaving the kiosk")
        self._leaving = True
        self.stop()

    def show_error(self, message: str) -> None:
        """A plain sentence in big type; details went to the log."""
        label = Label(text=message, font_size="28sp", halign="center", valign="middle")
        label.bind(size=lambda w, s: setattr(w, "text_size", s))
        popup = Popup(title="Label Assistant", title_size="28sp", content=label, size_hint=(0.6, 0.4))
        popup.open()
        self.status = message

    # -- keyboard ---------------------------------------------------------------------------
    def on_key_down(self, window, key, scancode, codepoint, modifiers):
        if key == 27:  # Escape: never leaves the app; cancels a polygon being drawn
            if self.root.current == "label":
                canvas = self.root.get_screen("label").canvas_widget
                canvas.polygon = []
                canvas._update_path_line()
            return True
        names = {13: "enter", 32: "spacebar", 8: "backspace"}
        name = names.get(key) or (codepoint.lower() if codepoint else "")
        if "ctrl" in modifiers and name in ("z", "y"):
            modifiers = [m for m in modifiers if m != "ctrl"]
        if self.root.current == "label" and name:
            return self.root.get_screen("label").handle_key(name, modifiers)
        return False


class KeepRunning:
    """Kivy exception handler for the kiosk: an error in one action is logged and shown in
    plain words, and the kiosk stays up (the stroke journal already holds the work)."""

    def handle_exception(self, exc):
        from kivy.base import ExceptionManager

        log.error("unexpected error in the kiosk", exc_info=exc)
        app = App.get_running_app()
        if app is not None and app.root is not None:
            try:
                app.show_error("Something went wrong. Your work is kept. The details are in the log file.")
            except Exception:  # noqa: BLE001 - never fail while reporting a failure
                pass
        return ExceptionManager.PASS


def run(folder, windowed: bool = False) -> int:
    """Open the kiosk UI on a project folder; returns the exit code."""
    from kivy.base import ExceptionManager

    if windowed:
        os.environ["LABELASSIST_WINDOWED"] = "1"
    ExceptionManager.add_handler(KeepRunning())
    try:
        LabelAssistApp(folder, windowed=windowed).run()
    except Exception:  # noqa: BLE001 - the log has the details, the caller an exit code
        log.exception("the kiosk stopped on an error")
        print("The kiosk stopped on an error; see the log file.", file=sys.stderr)
        return 1
    return 0


__all__ = ["LabelAssistApp", "run", "configure_kivy"]
