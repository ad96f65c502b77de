"""Who does what on the canvas: pen paints, fingers navigate, palms are ignored.

Kept free of widgets so the policy reads in one place and tests without a window.

========================  ==========================================================
contact                    what it does
========================  ==========================================================
pen                        paints with the current tool (``wm_pen`` on Windows,
                           ``button == 'pen'`` on Linux hidinput)
palm                       nothing (a contact wider or higher than ``palm_size`` pixels)
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


# Windows' TOUCHINPUT reports the contact area (cxContact, cyContact) in hundredths of a physical
# pixel, and Kivy's wm_touch provider passes those numbers on as the shape unchanged.
_SHAPE_UNITS_PER_PIXEL = {"wm_touch": 100.0}


def contact_size(touch) -> float | None:
    """The larger side of a contact's footprint in screen pixels, or None when it is not reported.

    Windows (``wm_touch``) reports hundredths of a pixel, converted here; 0 there means the
    driver gives no contact area. Linux ``hidinput`` reports ABS_MT_TOUCH_MAJOR in the panel's
    own surface units, taken as they are (``kiosk.toml``'s ``palm_size`` says how to set it).
    """
    shape = getattr(touch, "shape", None)
    if shape is None or "shape" not in getattr(touch, "profile", ()):
        return None
    size = max(getattr(shape, "width", 0) or 0, getattr(shape, "height", 0) or 0)
    if size <= 0:
        return None
    return float(size) / _SHAPE_UNITS_PER_PIXEL.get(getattr(touch, "device", ""), 1.0)


def is_palm(touch, palm_size: float) -> bool:
    """A contact with a large footprint (the side of a hand resting on the screen).

    ``palm_size`` in pixels: on the X12's 1920x1200 at 12.3 inches (184 dpi) a fingertip is 7-12 mm
    (50-90 px; a gloved one up to about 15 mm, 110 px) and the side of a palm 25 mm and more (180 px+),
    hence the default of 150.
    """
    size = contact_size(touch)
    return size is not None and size > palm_size


def classify(touch, palm_size: float = 150.0) -> str:
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
