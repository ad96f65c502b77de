"""The kiosk application: window, kiosk lock, screens, keyboard shortcuts.

``run(folder, windowed=False)`` is what ``labelassist kiosk`` and ``labelassist demo`` call.

Kiosk mode (the default): fullscreen, Escape and the window's close request are vetoed,
the screensaver is held off; only "Exit kiosk" on the Admin screen (behind the admin
PIN, see :mod:`labelassist.kiosk_settings`) leaves.

The lock is against people, not the operating system: SIGTERM, SIGHUP and SIGINT (a
shutdown, a logout, ``systemctl stop``; on Windows Ctrl+Break and the console's close,
log-off and shutdown events) save and close instead (:class:`SystemStop`): the session
worker's queue drains (the stroke journal, pending saves), the session, store and lock
are closed (the exit backup is taken) and the process exits 0 within 2 s.

Keyboard shortcuts on the Label screen (the detachable keyboard; never needed)::

    B brush   E eraser   L lasso   P polygon   F fill   T tap-to-segment   S teach
    X the teach tool paints object / background (swap)
    Z / Ctrl+Z undo      Y / Ctrl+Y / Shift+Z redo     A accept the pre-label
    [ ] brush size       O outline   R raw / enhanced image   0 fit the image
    C clear   Enter / Space save & next (or close the polygon)   Backspace previous
    Q queue   H home     Escape cancels a polygon (it never leaves the kiosk)

Where the code is: one module per screen (``home_screen.py``, ``queue_screen.py``,
``label_screen.py``, ``review_screens.py``, ``admin_screen.py``; what they share in
``screens.py``), each with its layout in the kv file of the same name; ``theme.py`` (the
palette) and ``theme.kv`` (type and the shared widget rules), ``widgets.py`` and ``icons.kv``
(the buttons and their icons drawn with canvas instructions), ``tools.py`` (the drawing tools:
one table; ``teach_strokes.py``, the teach tool's strokes beside the label), ``label_canvas.py``
(the canvas and its input), ``input_policy.py`` (pen / finger / palm / mouse),
``pin_policy.py`` (the admin PIN's back-off), ``session_worker.py`` (Session
calls off the UI thread), ``projects.py`` (the projects on the tablet, read without opening
them, for Home), ``labelassist.label_layer`` (the mask and its undo history, no GUI).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from pathlib import Path

log = logging.getLogger(__name__)

# The layout, in the order it is loaded: the palette and shared rules first (the screens' kv
# files use the names theme.kv sets), then the icons, then one file per screen.
KV_FILES = tuple(Path(__file__).with_name(name) for name in (
    "theme.kv", "icons.kv", "home_screen.kv", "queue_screen.kv", "label_screen.kv", "review_screens.kv",
    "admin_screen.kv"))


def configure_kivy() -> None:
    """Kivy settings that must be made before ``kivy.core.window`` is imported."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")           # Kivy must not parse our argv
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")     # our log setup owns the console
    # SDL turns SIGINT/SIGTERM into a window close request, which the kiosk vetoes: the
    # operating system's stop would be refused. The app handles those signals itself.
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
    from kivy.config import Config

    # Mouse without the red multitouch emulation dots; right button pans instead.
    Config.set("input", "mouse", "mouse,disable_multitouch")
    Config.set("kivy", "exit_on_escape", "0")
    Config.set("graphics", "allow_screensaver", "0")
    Config.set("kivy", "window_icon", "")


configure_kivy()

from kivy.app import App  # noqa: E402 - after the configuration above
from kivy.clock import Clock  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from kivy.factory import Factory  # noqa: E402
from kivy.lang import Builder  # noqa: E402
from kivy.properties import BooleanProperty, StringProperty  # noqa: E402
from kivy.uix.screenmanager import NoTransition, ScreenManager  # noqa: E402

from labelassist.paths import data_home  # noqa: E402
from labelassist.ui import theme  # noqa: E402
from labelassist.ui.admin_screen import AdminScreen  # noqa: E402
from labelassist.ui.home_screen import HomeScreen  # noqa: E402
from labelassist.ui.label_canvas import LabelCanvas  # noqa: E402
from labelassist.ui.label_screen import LabelScreen  # noqa: E402
from labelassist.ui.queue_screen import QueueScreen  # noqa: E402
from labelassist.ui.review_screens import InspectionScreen, PostprocessScreen  # noqa: E402
from labelassist.ui.session_worker import SessionWorker  # noqa: E402
from labelassist.ui.system_stop import (DISPLAY_LOST, SystemStop, install_display_lost_handler,  # noqa: E402
                                        uninstall_display_lost_handler)

# The classes the kv rules name register themselves with the Factory when their modules are
# imported (above: the screens import their widgets); the canvas is named here for clarity.
Factory.register("LabelCanvas", cls=LabelCanvas)
SCREENS = (HomeScreen, QueueScreen, LabelScreen, InspectionScreen, PostprocessScreen, AdminScreen)
_kv_loaded = False


def load_kv() -> None:
    """Load the kv files once per process, in the order of :data:`KV_FILES`."""
    global _kv_loaded
    if not _kv_loaded:
        for path in KV_FILES:
            Builder.load_file(str(path))
        _kv_loaded = True


# The operating system's requests to stop (shutdown, logout, "systemctl stop", a closed
# terminal): never vetoed, unlike a person's close request. SIGBREAK is Windows' Ctrl+Break.
class LabelAssistApp(App):
    """Opens one project and shows the kiosk screens; Home lists every project on the tablet
    (the kiosk data folder, :func:`labelassist.kiosk_settings.data_folder`) and switches to
    another one (:meth:`switch_project`).

    Parameters
    ----------
    folder : path of the project
    windowed : a normal window (development) instead of the locked fullscreen kiosk
    home : where kiosk.toml is (default: ``labelassist.paths.data_home()``)
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
            home = data_home()
        self.home = Path(home)
        self.background = background
        self.project = None
        self.session = None
        self.worker: SessionWorker | None = None
        self._leaving = False
        # Closing the open project happens once, whoever gets there first (the UI thread at
        # on_stop, or the system-stop watcher when the UI thread is stuck).
        self.closed = threading.Event()
        self.closing_started = False
        self.closed_cleanly = False
        self._close_lock = threading.Lock()
        self.system_stop = SystemStop(self)
        self._message_popup = None
        self._stop_noticed = False
        self.loop_started = False  # on_start ran: the project is open, the event loop runs
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
        for cls in SCREENS:
            manager.add_widget(cls())
        palm = float(self._kiosk_settings()["input"]["palm_size"])
        manager.get_screen("label").canvas_widget.palm_size = palm
        Window.bind(on_request_close=self.on_request_close, on_key_down=self.on_key_down)
        if self.kiosk:
            Window.fullscreen = "auto"
        Window.clearcolor = theme.BG
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
        """The session's worker; the instant learner's rounds are heard here too (both deliver to
        the UI thread only while this project is open)."""
        generation = self.generation

        def deliver(fn):
            Clock.schedule_once(lambda dt: fn() if self.generation == generation else None)

        # Called on the learner's thread (or the worker's, without threads) after each round.
        session.learner.listeners.append(lambda model: deliver(self._learner_trained))
        return SessionWorker(session, deliver=deliver)

    def _learner_trained(self) -> None:
        """The instant learner has a new model: the Label screen says so and may offer it (UI thread)."""
        if self.root is not None:
            self.root.get_screen("label").learner_trained()

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

    def run(self):
        """Run the kiosk until it is left from Admin or the operating system stops it."""
        self.system_stop.install()
        try:
            super().run()
        finally:
            self.system_stop.uninstall()
            if getattr(self, "_display_handler", False) and not self.system_stop.requested.is_set():
                uninstall_display_lost_handler()

    def on_start(self):
        # A frame is 1/60 s: a stop signal is acted on well within the 2 s the system gives.
        Clock.schedule_interval(self._poll_system_stop, 0.05)
        app = weakref.ref(self)
        self._display_handler = install_display_lost_handler(
            lambda: app() is not None and app()._display_lost())  # the window exists now: so does libX11
        self.loop_started = True

    def _display_lost(self) -> None:
        """The X server went away (stopping with the system, or crashed): no screen any more. Close
        the project within the stop budget and end the process (called on the UI thread, inside
        Xlib: nothing here may draw). Exit 0 when the system asked the app to stop first."""
        stop = self.system_stop
        stop.request(DISPLAY_LOST)  # a stop signal that came first keeps its name
        log.warning("%s%s: closing the project", DISPLAY_LOST,
                    "" if stop.reason == DISPLAY_LOST else f" after {stop.reason}")
        self._stop_noticed = self._leaving = True
        self.close_work(stop.deadline())
        # At a shutdown the display server and the app are signalled together: the display may be
        # gone a moment before the app's own SIGTERM arrives. Without any signal it crashed: exit 1.
        code = 0 if self.closed_cleanly and stop.signalled(wait_s=0.2) else 1
        log.info("%s: closed %s after %.2f s; ending (exit %d)", stop.reason,
                 "cleanly" if self.closed_cleanly else "in part", time.monotonic() - stop.started, code)
        logging.shutdown()
        os._exit(code)

    def _poll_system_stop(self, dt) -> None:
        stop = self.system_stop
        if not stop.requested.is_set() or self._stop_noticed:
            return
        self._stop_noticed = True
        log.info("%s received: saving and closing (the kiosk lock is against people, not the system)",
                 stop.reason)
        if self.root is not None:
            self.root.disabled = True  # no new strokes or taps while the work is put away
        self._leaving = True
        self.close_work(stop.deadline())
        log.info("%s: closed %s after %.2f s", stop.reason, "cleanly" if self.closed_cleanly else "in part",
                 time.monotonic() - stop.started)
        self.stop()

    def on_stop(self):
        Window.unbind(on_request_close=self.on_request_close, on_key_down=self.on_key_down)
        stop = self.system_stop
        self.close_work(stop.deadline() if stop.requested.is_set() else None)

    def close_work(self, deadline: float | None = None) -> None:
        """The open project's work reaches disk, then its session, store and lock are closed.

        Once per app, whoever calls first (later calls wait for the first to end). In order: the
        last stroke's journal write, the session worker's queue (journal writes, saves), the
        session (its exit backup), the store, the lock.

        Parameters
        ----------
        deadline : float, optional
            ``time.monotonic()`` by which to be done (a system stop): work not done by then is
            left (logged); what was committed stays, as after a power cut. None: as long as it takes.
        """
        with self._close_lock:
            first, self.closing_started = not self.closing_started, True
        if not first:
            self.closed.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            return
        if self.root is not None and threading.current_thread() is threading.main_thread():
            self._put_label_screen_away(wait=deadline is None)
        if deadline is None:
            self._close_now()
            return
        # In a helper thread, so that a long step (a pre-label still being prepared, a big exit
        # backup) cannot hold this thread past the deadline. The worker's queue holds the last
        # stroke's journal write: it drains first.
        closer = threading.Thread(target=self._close_now, name="close-project", daemon=True)
        closer.start()
        closer.join(max(0.0, deadline - time.monotonic()))
        if closer.is_alive():
            log.warning("closing the project took longer than the system allows; what was committed is kept "
                        "(every finished stroke is in the journal)")

    def _put_label_screen_away(self, wait: bool) -> None:
        """No more delayed writes from the Label screen; with ``wait`` its view is remembered and
        the last stroke's journal write waited for (UI thread only)."""
        try:
            label = self.root.get_screen("label")
            label.stop()
            if wait and self.worker is not None and not self.worker.closed:
                label.leave_project()
        except Exception:  # noqa: BLE001 - the worker's queue still drains below
            log.exception("the Label screen could not be put away")

    def _close_now(self) -> None:
        try:
            if self.worker is not None:
                self.worker.close()  # queued journal writes and saves reach disk first
            if self.session is not None:
                self.session.close()  # the exit backup
            if self.project is not None:
                self.project.close()  # closes the store, releases the lock
            self.closed_cleanly = True
        except Exception:  # noqa: BLE001 - stopping must go on; the details are in the log
            log.exception("the project was not closed cleanly")
        finally:
            self.closed.set()

    def go(self, name: str) -> None:
        self.root.current = name

    # -- which screen shows: decided here, never by one screen calling another -----------------
    def continue_labelling(self) -> None:
        """Home's "Continue labelling": the Label screen, where the last session stopped."""
        self.go("label")
        self.root.get_screen("label").resume()

    def show_opened(self, assisted) -> None:
        """A sample opened (or the next one) on the Label screen; None, every sample is
        labelled: Home (UI thread)."""
        self.root.get_screen("label").show(assisted)
        if assisted is None:
            self.go("home")

    def open_sample(self, sample_id: int) -> None:
        """A tile tapped in the queue: that sample on the Label screen."""
        self.go("label")
        self.root.get_screen("label").open_sample(sample_id)

    def review(self, request) -> None:
        """A step of Save & next (a :class:`~labelassist.session.save_flow.SubmitMask` or an
        :class:`~labelassist.session.save_flow.Answer`) to the worker; its state comes back to
        :meth:`show_review`."""
        self.worker.review(request, on_done=self.show_review, on_error=self.review_failed)

    def show_review(self, review) -> None:
        """Show the screen for the flow's state, and that screen renders it (UI thread).

        SUGGESTION: Post-processing; WARNING: Inspection; anything else ends the flow on the
        Label screen (the next sample, the regions to fix, or what went wrong)."""
        if review is None:
            return  # the answer changed nothing (a second tap)
        from labelassist.session.save_flow import Step

        label = self.root.get_screen("label")
        if review.step is Step.SUGGESTION:
            postprocess = self.root.get_screen("postprocess")
            postprocess.display = label.assisted.display
            postprocess.review = review
            self.go("postprocess")
            return
        label.render_review(review)
        if review.step is Step.WARNING:
            self.root.get_screen("inspection").review = review
            self.go("inspection")
            return
        self.go("label")
        if review.step is Step.SAVED:
            self.show_opened(review.next)

    def review_failed(self, message: str) -> None:
        """The flow raised (submit, inspection or highlight): nothing was saved; back to labelling."""
        self.go("label")
        self.root.get_screen("label").review_failed(message)

    # -- kiosk lock -------------------------------------------------------------------------
    def on_request_close(self, *args, **kwargs):
        """Vetoes closing the window in kiosk mode (returns True) unless the admin chose to leave.

        A close request comes from a person (the window's close button, Alt+F4); the operating
        system's stop comes as a signal (:class:`SystemStop`) and is never vetoed.
        """
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
        """A plain sentence in big type with an OK button (theme.kv ``MessagePopup``); details
        went to the log. One message box at a time: a new message replaces the one shown."""
        popup = self._message_popup
        if popup is None or popup.parent is None:
            popup = Factory.MessagePopup(title="Label Assistant")
            self._message_popup = popup
            popup.open()
        popup.message = message
        self.status = message

    # -- keyboard ---------------------------------------------------------------------------
    def on_key_down(self, window, key, scancode, codepoint, modifiers):
        if self.system_stop.requested.is_set():
            return True  # closing: no new edits
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

    ExceptionManager.add_handler(KeepRunning())
    try:
        app = LabelAssistApp(folder, windowed=windowed)
        app.run()
    except Exception:  # noqa: BLE001 - the log has the details, the caller an exit code
        log.exception("the kiosk stopped on an error")
        print("The kiosk stopped on an error; see the log file.", file=sys.stderr)
        return 1
    if app.system_stop.requested.is_set() and not app.closed_cleanly:
        return 1  # stopped by the system before everything was closed (the log says what)
    return 0


__all__ = ["LabelAssistApp", "SystemStop", "run", "configure_kivy"]
