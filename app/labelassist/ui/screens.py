"""What every kiosk screen shares: the screen of one app instance, and a widget's own screen.

The screens, one module each (their layout in the kv file of the same name):
``home_screen``, ``queue_screen``, ``label_screen``, ``review_screens`` (Inspection and
Post-processing) and ``admin_screen``. Every action calls the
:class:`labelassist.session.Session` through the app's
:class:`labelassist.ui.session_worker.SessionWorker` (never SQL or ONNX in a screen).

Which screen shows is decided by the app (``LabelAssistApp.go``, ``show_review``,
``show_opened``), never by a screen: widgets inside a screen (rows, tiles, sliders) reach
their own screen through their parents (:func:`screen_of`), never another screen.

Save & next is one GUI-free state machine, :class:`labelassist.session.save_flow.SaveFlow`,
that the session worker drives; the screens only render its state::

    LabelScreen.save_and_next   the mask, frozen (SubmitMask) -> the worker
    SaveFlow on the worker      submit; suggestions; re-inspect; warning; save; next
    App.show_review             SUGGESTION -> PostprocessScreen, WARNING -> InspectionScreen,
                                otherwise LabelScreen (the next sample, or the regions to fix)
    a screen's button           the user's choice, frozen (Answer) -> the worker -> App.show_review
"""

from __future__ import annotations

from kivy.app import App
from kivy.clock import Clock
from kivy.uix.screenmanager import Screen


def screen_of(widget):
    """The screen a widget is on (its nearest :class:`Screen` parent), or None when it is not on one."""
    while widget is not None and not isinstance(widget, Screen):
        parent = widget.parent
        widget = None if parent is widget else parent
    return widget


class KioskScreen(Screen):
    """A screen of one app instance (kept, so that late callbacks never reach another app)."""

    def __init__(self, **kwargs):
        self._app = App.get_running_app()
        super().__init__(**kwargs)

    @property
    def app(self):
        return self._app


class TrainerListening:
    """A screen hears the project's U-Net trainer while it shows it (its rounds, live).

    The trainer's listeners fire on its own thread; each event is handed to ``on_event(trainer,
    event)`` on the Kivy thread, and only while this screen still listens to the trainer of
    the session open now (a late event of another project, or after the screen left, is
    dropped).

    Parameters
    ----------
    screen : KioskScreen
        Whose app's session is listened to.
    on_event : callable
        ``on_event(trainer, event)``, on the Kivy thread.
    """

    def __init__(self, screen: "KioskScreen", on_event):
        self._screen = screen
        self._on_event = on_event
        self._listening = None  # (trainer, listener) while the screen listens

    def _session(self):
        app = self._screen.app
        return app.session if app is not None else None

    def start(self):
        """Listen to the open session's trainer; returns it when newly listened to, else None
        (no session, or listening to it already)."""
        session = self._session()
        if session is None or (self._listening and self._listening[0] is session.trainer):
            return None
        self.stop()
        trainer = session.trainer

        def heard(event, trainer=trainer):  # on the trainer's thread: over to the Kivy thread
            Clock.schedule_once(lambda dt: self._deliver(trainer, event))

        trainer.listeners.append(heard)
        self._listening = (trainer, heard)
        return trainer

    @property
    def listening(self):
        """(trainer, listener) while listening, else None."""
        return self._listening

    def stop(self) -> None:
        """Listen no more (events already on their way are dropped)."""
        trainer, heard = self._listening or (None, None)
        self._listening = None
        try:
            trainer.listeners.remove(heard)
        except (AttributeError, ValueError):  # none, or a closed session cleared them
            pass

    def _deliver(self, trainer, event: dict) -> None:
        session = self._session()
        if session is None or session.trainer is not trainer or self._listening is None:
            return  # another project, or the screen left meanwhile
        self._on_event(trainer, event)


__all__ = ["KioskScreen", "TrainerListening", "screen_of"]
