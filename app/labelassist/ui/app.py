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

Where the code is: ``screens.py`` (behaviour of each screen), ``kiosk.kv`` (layout, and
the tool icons drawn with canvas instructions), ``label_canvas.py`` (the canvas and its
input), ``input_policy.py`` (pen / finger / palm / mouse), ``session_worker.py`` (Session
calls off the UI thread), ``projects.py`` (the projects on the tablet, read without
opening them, for Home), ``labelassist.annotate`` (the mask and its undo history, no GUI).
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
for _name in ("HomeScreen", "ProjectRow", "QueueScreen", "QueueTile", "WeightSlider", "LabelScreen",
              "InspectionScreen", "CheckRow", "PostprocessScreen", "CompareImage", "AdminScreen", "IconButton",
              "IconToggleButton", "IconView", "IconShape"):
    Factory.register(_name, cls=getattr(screens, _name))
_kv_loaded = False


def load_kv() -> None:
    global _kv_loaded
    if not _kv_loaded:
        Builder.load_file(str(KV_FILE))
        _kv_loaded = True


class LabelAssistApp(App):
    """Opens one project and shows the kiosk screens; Home lists every project on the tablet
    (the kiosk data folder, :func:`labelassist.kiosk_settings.data_folder`) and switches to
    another one (:meth:`switch_project`).

    Parameters
    ----------
    folder : path of the project
    windowed : a normal window (development) instead of the locked fullscreen kiosk
    home : where kiosk.toml is (default: ``labelassist.cli.data_home()``)
    background : prepare the next samples in a background thread (False in tests)

    The project chosen last on Home is remembered in the data folder
    (``DATA/.labelassist/last_project``, never in kiosk.toml, which is IT's): started again
    on the same folder (the tablet boots with the same command every time), the app opens
    the project chosen last if it still opens, else ``folder`` (no message on screen, a line
    in the log). Started on another folder, it opens that one.
    """

    kiosk = BooleanProperty(True)
    status = StringProperty("")

    def __init__(self, folder, windowed: bool = False, home: Path | None = None, background: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.title = "Label Assistant"
        self.folder = Path(folder)
        self.started_on = Path(folder)  # what the app was asked to open (the boot project)
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
        # Bumped at every project switch: results the old session's worker still delivers
        # to the UI thread are dropped (they belong to the project that was closed).
        self.generation = 0
        # Projects opened in this run: Home keeps listing them even when they are not in the
        # data folder (the one the app was started on may live anywhere).
        self.opened_folders: list[Path] = [self.folder]

    # -- life cycle -------------------------------------------------------------------------
    def build(self):
        from labelassist.project import Project
        from labelassist.session import Session

        load_kv()
        if not self._open_last_choice():
            self.project = Project.open(self.folder)
            self.session = Session(self.project, background=self.background)
        self.worker = self._make_worker(self.session)
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

    def _open_last_choice(self) -> bool:
        """Open the project chosen last on Home instead of ``folder``, when there is one for this
        start folder and it opens; False (logged, nothing on screen) otherwise."""
        from labelassist.session import Session
        from labelassist.ui.projects import remembered_choice, same_folder

        try:
            chosen = remembered_choice(self.data_folder(), self.started_on)
        except Exception:  # noqa: BLE001 - a start never fails on the remembered choice
            log.exception("the project chosen last could not be looked up")
            return False
        if chosen is None or same_folder(chosen, self.folder):
            return False
        project = self._open_locked(chosen)
        if isinstance(project, str):
            log.warning("the project chosen last on Home (%s) did not open (%s): opening %s", chosen, project,
                        self.folder)
            return False
        try:
            session = Session(project, background=self.background)
        except Exception:  # noqa: BLE001
            log.exception("the project chosen last on Home (%s) did not open: opening %s", chosen, self.folder)
            project.close()
            return False
        log.info("opening %s, the project chosen last on Home (started on %s)", chosen, self.started_on)
        self.folder, self.project, self.session = chosen, project, session
        self.opened_folders = [chosen, self.started_on]  # Home lists the start project too
        return True

    def _open_locked(self, folder: Path):
        """``Project`` opened and locked, or why not in plain words (logged)."""
        from labelassist.errors import LabelAssistError
        from labelassist.project import Project
        from labelassist.ui.projects import IN_USE, in_use

        if in_use(folder):  # before Project.open, which may migrate the store of an older version
            log.warning("project %s was not opened: its lock is held by another program", folder)
            return IN_USE
        try:
            project = Project.open(folder)
        except LabelAssistError as exc:
            log.warning("project %s was not opened: %s", folder, exc)
            return str(exc)[:1].upper() + str(exc)[1:]
        except Exception:  # noqa: BLE001 - the log has the details, the screen a sentence
            log.exception("project %s was not opened", folder)
            return "This project could not be opened. The details are in the log file."
        try:
            project.lock("the labelling app")
        except LabelAssistError as exc:
            project.close()
            log.warning("project %s was not opened: %s", folder, exc)
            return str(exc)[:1].upper() + str(exc)[1:]
        return project

    def _remember_choice(self, folder: Path) -> None:
        """Keep the project switched to for the next start (a failure is logged, never shown)."""
        from labelassist.ui.projects import remember_choice

        try:
            remember_choice(self.data_folder(), self.started_on, folder)
        except Exception:  # noqa: BLE001 - e.g. a read-only data folder: the switch itself worked
            log.warning("the project chosen on Home could not be remembered for the next start", exc_info=True)

    def _make_worker(self, session) -> SessionWorker:
        generation = self.generation

        def deliver(fn):
            Clock.schedule_once(lambda dt: fn() if self.generation == generation else None)

        return SessionWorker(session, deliver=deliver)

    def data_folder(self) -> Path:
        """Where the projects on this tablet are (kiosk.toml ``[data] folder``)."""
        from labelassist import kiosk_settings

        return kiosk_settings.data_folder(self.home)

    def switch_project(self, folder) -> str | None:
        """Close the open project cleanly and open ``folder`` in its place.

        The work of the open project is kept: queued journal writes and saves reach disk
        (the worker finishes its queue), its session backs up and its lock is released, so
        "Continue" there later resumes where it stopped. The new project is opened and locked
        *before* the old one is closed: a project that cannot be opened (in use elsewhere,
        damaged, made by a newer version) leaves the open one as it was. Returns None when
        switched, else the reason in plain words (also logged).
        """
        from labelassist.errors import LabelAssistError
        from labelassist.session import Session
        from labelassist.ui.projects import same_folder

        folder = Path(folder)
        if same_folder(folder, self.folder):
            return None
        project = self._open_locked(folder)
        if isinstance(project, str):
            return project
        log.info("switching from project %s to %s", self.folder, folder)
        self._close_project()
        try:
            session = Session(project, background=self.background)  # the lock is already held
        except Exception as exc:  # noqa: BLE001
            log.exception("project %s was not opened", folder)
            project.close()
            self._reopen_previous()
            return str(exc) if isinstance(exc, LabelAssistError) else \
                "This project could not be opened. The details are in the log file."
        self.folder, self.project, self.session = folder, project, session
        if not any(same_folder(folder, f) for f in self.opened_folders):
            self.opened_folders.append(folder)
        self.worker = self._make_worker(session)
        self._project_changed()
        self._remember_choice(folder)
        return None

    def _close_project(self) -> None:
        """The open project's work reaches disk, then its session, store and lock are closed."""
        self.generation += 1
        self.root.get_screen("label").leave_project()  # the view is remembered, the last stroke journalled
        if self.worker is not None:
            self.worker.close()  # queued journal writes and saves reach disk first
        if self.session is not None:
            self.session.close()
        if self.project is not None:
            self.project.close()  # releases the lock
        self.worker = self.session = self.project = None

    def _reopen_previous(self) -> None:
        from labelassist.project import Project
        from labelassist.session import Session

        self.project = Project.open(self.folder)
        self.session = Session(self.project, background=self.background)
        self.worker = self._make_worker(self.session)
        self._project_changed()

    def _project_changed(self) -> None:
        for name in ("label", "queue", "admin"):
            self.root.get_screen(name).project_changed()

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
