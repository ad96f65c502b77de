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


__all__ = ["KioskScreen", "screen_of"]
