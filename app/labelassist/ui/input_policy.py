"""Who does what on the canvas: pen paints, fingers navigate, palms are ignored.

Kept free of widgets so the policy reads in one place and tests without a window.

========================  ==========================================================
contact                    what it does
========================  ==========================================================
pen                        paints with the current tool (``wm_pen`` on Windows,
                           ``button == 'pen'`` on Linux hidinput)
palm                       nothing (a contact wider or higher than ``palm_size``)
finger, pen seen           navigates: one finger pans, two pinch-zoom and pan;
                           ignored while a pen stroke is on
finger, no pen seen yet    one finger paints; a second finger turns it into navigation
mouse left                 paints
mouse right / middle       pans
mouse wheel                zooms around the pointer
========================  ==========================================================
"""

from __future__ import annotations

PEN = "pen"
FINGER = "finger"
PALM = "palm"
MOUSE_PAINT = "mouse_paint"
MOUSE_PAN = "mouse_pan"
WHEEL_IN = "wheel_in"
WHEEL_OUT = "wheel_out"

# Mouse buttons Kivy reports for the wheel (scrollup scrolls content up = zoom out).
_WHEEL = {"scrolldown": WHEEL_IN, "scrollup": WHEEL_OUT}


def is_pen(touch) -> bool:
    return getattr(touch, "device", "") == "wm_pen" or getattr(touch, "button", None) == "pen"


def is_palm(touch, palm_size: float) -> bool:
    """A contact with a large footprint (the side of a hand resting on the screen)."""
    shape = getattr(touch, "shape", None)
    if shape is None or "shape" not in getattr(touch, "profile", ()):
        return False
    return max(getattr(shape, "width", 0) or 0, getattr(shape, "height", 0) or 0) > palm_size


def classify(touch, palm_size: float = 60.0) -> str:
    """What kind of contact ``touch`` is: one of the constants of this module."""
    if is_pen(touch):
        return PEN
    if getattr(touch, "device", "") == "mouse":
        button = getattr(touch, "button", "left")
        if button in _WHEEL:
            return _WHEEL[button]
        return MOUSE_PAINT if button in (None, "left") else MOUSE_PAN
    if is_palm(touch, palm_size):
        return PALM
    return FINGER


def pen_pressure(touch) -> float | None:
    """Pressure in [0, 1] where the platform reports it (Linux hidinput), else None.

    Kivy 2.3's ``wm_pen`` provider carries no pressure, so on Windows the brush width is
    the slider's.
    """
    if "pressure" in getattr(touch, "profile", ()) and getattr(touch, "device", "") != "wm_pen":
        p = getattr(touch, "pressure", None)
        if p is not None:
            return min(1.0, max(0.0, float(p)))
    return None
