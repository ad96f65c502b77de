"""The operating system's stop for the kiosk: signals, the display server going away, and
Windows' console events, each turned into "save, close, exit within 2 s".

GUI-free (no Kivy): :class:`SystemStop` only sets an event from a signal handler and, as a
fallback, closes the app's project from a helper thread; ``LabelAssistApp`` does the closing.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import weakref

log = logging.getLogger(__name__)


STOP_SIGNALS = ("SIGTERM", "SIGHUP", "SIGINT", "SIGBREAK")
# systemd, logind and Windows give a stopping app a few seconds before they kill it: the
# worker's queue and the closing of the session and store get this long after the signal...
CLOSE_BUDGET_S = 1.5
# ...a UI thread that has not begun to close by then (stuck in a long call) is not waited for:
# a helper thread closes instead...
UI_GRACE_S = 0.4
# ...and the process ends by this time at the latest, whatever still runs (the database is
# crash-safe: what was committed stays, and every finished stroke was committed)...
EXIT_DEADLINE_S = 1.9
# ...or this long after the work was put away, when the UI thread has not left its loop by then.
EXIT_GRACE_S = 0.5


def signal_names(names=STOP_SIGNALS) -> list[str]:
    """The stop signals this platform has (SIGHUP is POSIX only, SIGBREAK Windows only)."""
    return [name for name in names if hasattr(signal, name)]


class SystemStop:
    """The operating system asked the kiosk to stop: save, close and exit within 2 s.

    :meth:`request` is all a signal handler does (it sets an event: no locks the interrupted
    code could hold, no Kivy calls). The UI thread notices within a frame (:meth:`LabelAssistApp.
    _poll_system_stop`) and closes the project (:meth:`LabelAssistApp.close_work`) with a
    deadline; a watcher thread is the fallback when the UI thread is stuck and ends the process
    at :data:`EXIT_DEADLINE_S` if it is still there.

    Parameters
    ----------
    app : labelassist.ui.app.LabelAssistApp
    """

    def __init__(self, app):
        # A weak reference: the app owns this object, and an app that ended must be freed as
        # before (its widgets with it), not kept by a reference cycle until the next collection.
        self._app = weakref.ref(app)
        self.reason = ""
        self.started = 0.0  # time.monotonic() of the request
        self.requested = threading.Event()
        self.signals: list[str] = []  # every stop signal received, the first request's or not
        self._previous: dict[int, object] = {}
        self._console_handler = None
        self._watcher: threading.Thread | None = None

    # -- asking ----------------------------------------------------------------------------
    def request(self, reason: str) -> None:
        """Ask for a clean stop (safe in a signal handler and from any thread); later requests are ignored."""
        if self.requested.is_set():
            return
        self.reason = reason
        self.started = time.monotonic()
        self.requested.set()

    def deadline(self) -> float:
        """When the closing must be done (monotonic seconds)."""
        return self.started + CLOSE_BUDGET_S

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        self.signals.append(name)
        self.request(name)

    def signalled(self, wait_s: float = 0.0) -> bool:
        """Whether a stop signal came, waiting up to ``wait_s`` for one still on its way (UI thread:
        a signal's Python handler runs there, between two steps of this wait)."""
        end = time.monotonic() + wait_s
        while not self.signals and time.monotonic() < end:
            time.sleep(0.01)
        return bool(self.signals)

    # -- installing ------------------------------------------------------------------------
    def install(self) -> list[str]:
        """Handle the stop signals (main thread only) and start the watcher; the names installed."""
        installed = []
        if threading.current_thread() is threading.main_thread():
            for name in signal_names():
                number = getattr(signal, name)
                try:
                    self._previous[number] = signal.signal(number, self._on_signal)
                    installed.append(name)
                except (OSError, ValueError, RuntimeError):  # a signal this process may not handle
                    log.warning("%s cannot be handled here: a stop by it will not save first", name)
        self._console_handler = windows_console_handler(self.request, self._app().closed)
        if self._console_handler is not None:
            installed.append("console close/logoff/shutdown")
        self._watcher = threading.Thread(target=self._watch, name="system-stop", daemon=True)
        self._watcher.start()
        log.info("a stop by %s saves and closes first", ", ".join(installed) or "the system")
        return installed

    def uninstall(self) -> None:
        """Give the signals back to their previous handlers (the app ended without a system stop)."""
        if self.requested.is_set() or threading.current_thread() is not threading.main_thread():
            return  # the process is on its way out: a second signal must not kill it mid-way
        for number, previous in self._previous.items():
            try:
                signal.signal(number, previous if previous is not None else signal.SIG_DFL)
            except (OSError, ValueError, TypeError):
                pass
        self._previous.clear()

    # -- the fallback ----------------------------------------------------------------------
    def _watch(self) -> None:
        """Wait for a request; close when the UI thread does not, and end the process at the deadline."""
        self.requested.wait()
        app = self._app()
        if app is None:
            return
        # Before the event loop runs (the project still opening) there is nothing to close from
        # here: build() is still making the session; the deadline below still holds.
        if not app.closed.wait(UI_GRACE_S) and app.loop_started and not app.closing_started:
            log.warning("%s: the screen is busy; closing the project from a helper thread", self.reason)
            app.close_work(self.deadline())
        deadline = self.started + EXIT_DEADLINE_S
        app.closed.wait(max(0.0, deadline - time.monotonic()))
        time.sleep(max(0.0, min(time.monotonic() + EXIT_GRACE_S, deadline) - time.monotonic()))
        # Still here: the UI thread did not leave its loop (stuck in a long call, or a plug-in
        # thread keeps the process alive). End it: everything that could be closed is closed.
        code = 0 if app.closed_cleanly else 1
        log.warning("%s: the app did not end by itself %.1f s after the signal; ending it (exit %d)", self.reason,
                    time.monotonic() - self.started, code)
        logging.shutdown()
        os._exit(code)


DISPLAY_LOST = "the display server went away"
# Xlib keeps one connection-lost handler per process: the current one (a ctypes callback must
# stay referenced while installed) and the one it replaced.
_X_HANDLER: list = []


def _x11_loaded() -> bool:
    """Whether this process talks to an X server through libX11 (SDL's x11 driver; under cage it is
    Xwayland). Read from the process's own memory map, so nothing is loaded only to ask."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            return any("libX11.so" in line for line in maps)
    except OSError:
        return False


def install_display_lost_handler(on_lost) -> bool:
    """Linux: when the X server goes away, call ``on_lost()`` (which must end the process) instead
    of Xlib's default, which ends it at once with exit(1).

    At a shutdown or "systemctl stop" every process of the kiosk's unit gets SIGTERM at once:
    the display server (Xwayland under cage) is gone within milliseconds, and Xlib's default
    would end the app before it closed the project. True when installed.
    """
    if not sys.platform.startswith("linux") or not _x11_loaded():
        return False
    try:
        import ctypes

        lib = ctypes.CDLL("libX11.so.6")  # already loaded by SDL: the same library, the same handler
        prototype = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)

        @prototype
        def handler(display):
            try:
                on_lost()
            except BaseException:  # noqa: BLE001 - an error here must still end the process below
                log.exception("closing after the display server went away failed")
            os._exit(1)  # never return into Xlib: it would exit(1) without closing anything
            return 0

        lib.XSetIOErrorHandler.restype = ctypes.c_void_p
        lib.XSetIOErrorHandler.argtypes = [prototype]
        previous = lib.XSetIOErrorHandler(handler)
        if not _X_HANDLER:
            _X_HANDLER.append(previous)  # Xlib's own, given back by uninstall_display_lost_handler
        _X_HANDLER[1:] = [handler]
        return True
    except (OSError, AttributeError):
        log.warning("the X server's going away cannot be handled: a shutdown may not save first", exc_info=True)
        return False


def uninstall_display_lost_handler() -> None:
    """Give Xlib its default connection-lost handler back (the app ended normally)."""
    if len(_X_HANDLER) < 2:
        return
    try:
        import ctypes

        lib = ctypes.CDLL("libX11.so.6")
        lib.XSetIOErrorHandler.argtypes = [ctypes.c_void_p]
        lib.XSetIOErrorHandler(_X_HANDLER[0])
    except (OSError, AttributeError):
        return
    del _X_HANDLER[1:]  # the callback may be freed now that Xlib no longer holds it


def windows_console_handler(request, closed: threading.Event):
    """Windows: the console window closed, the user logging off, the system shutting down.

    Windows ends the process when the handler returns (or after about 5 s), so the handler
    waits for the project to be closed. Returns the registered callback (it must stay
    referenced), or None elsewhere or when it cannot be registered. Ctrl+C and Ctrl+Break
    are left to Python's SIGINT and SIGBREAK handlers.
    """
    if os.name != "nt":
        return None
    try:
        import ctypes
        from ctypes import wintypes

        events = {2: "CTRL_CLOSE_EVENT", 5: "CTRL_LOGOFF_EVENT", 6: "CTRL_SHUTDOWN_EVENT"}

        @ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)
        def handler(event):
            name = events.get(int(event))
            if name is None:
                return False  # Ctrl+C / Ctrl+Break: the next handler (Python's signals)
            request(name)
            closed.wait(EXIT_DEADLINE_S)
            return True

        if not ctypes.windll.kernel32.SetConsoleCtrlHandler(handler, True):
            return None
        return handler
    except Exception:  # noqa: BLE001 - a missing console API leaves the signals only
        log.warning("the Windows console stop events cannot be handled", exc_info=True)
        return None
