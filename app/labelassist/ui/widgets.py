"""The kiosk's own widgets shared by the screens: big buttons with a drawn icon.

Their look is in theme.kv (the buttons) and icons.kv (the icons); the colours in
:mod:`labelassist.ui.theme`.
"""

from __future__ import annotations

import logging

from kivy.factory import Factory
from kivy.properties import ListProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior, ToggleButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from labelassist.ui import theme

log = logging.getLogger(__name__)


class IconView(Widget):
    """Shows the vector icon ``name``: the kv rule ``<Icon_NAME@IconShape>`` in icons.kv
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
    background_color = ListProperty(list(theme.BUTTON))
    down_color = ListProperty(list(theme.BUTTON_DOWN))  # while pressed


class IconToggleButton(ToggleButtonBehavior, IconButton):
    """A tool of the rail: one of a group is down (shown in the accent colour)."""

    down_color = ListProperty(list(theme.ACCENT))


__all__ = ["IconView", "IconShape", "IconButton", "IconToggleButton"]
