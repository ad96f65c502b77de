"""The input policy (pen / finger / palm / mouse) without a window."""

from types import SimpleNamespace

import pytest

pytest.importorskip("kivy")

from labelassist.ui import input_policy as policy  # noqa: E402


def contact(device, button=None, shape=None, pressure=None):
    profile = ["pos"]
    touch = SimpleNamespace(device=device, button=button, profile=profile)
    if shape is not None:
        touch.shape = SimpleNamespace(width=shape[0], height=shape[1])
        profile.append("shape")
    if pressure is not None:
        touch.pressure = pressure
        profile.append("pressure")
    return touch


def test_classify():
    assert policy.classify(contact("wm_pen")) == policy.PEN
    assert policy.classify(contact("hidinput", button="pen")) == policy.PEN
    assert policy.classify(contact("wm_touch")) == policy.FINGER
    # Windows reports the contact area in hundredths of a pixel: a 70 px fingertip, a 240 px palm
    assert policy.contact_size(contact("wm_touch", shape=(7000, 6500))) == pytest.approx(70.0)
    assert policy.classify(contact("wm_touch", shape=(7000, 6500))) == policy.FINGER
    assert policy.classify(contact("wm_touch", shape=(11000, 9000))) == policy.FINGER  # gloved
    assert policy.classify(contact("wm_touch", shape=(24000, 18000))) == policy.PALM
    assert policy.classify(contact("wm_touch", shape=(0, 0))) == policy.FINGER  # no contact area reported
    # Linux hidinput: the panel's units, taken as they are
    assert policy.classify(contact("hidinput", shape=(60, 50))) == policy.FINGER
    assert policy.classify(contact("hidinput", shape=(200, 160))) == policy.PALM
    assert policy.classify(contact("hidinput", shape=(60, 50)), palm_size=40) == policy.PALM
    assert policy.classify(contact("mouse", button="left")) == policy.MOUSE_PAINT
    assert policy.classify(contact("mouse", button="right")) == policy.MOUSE_PAN
    assert policy.classify(contact("mouse", button="middle")) == policy.MOUSE_PAN
    assert policy.classify(contact("mouse", button="scrolldown")) == policy.WHEEL_IN
    assert policy.classify(contact("mouse", button="scrollup")) == policy.WHEEL_OUT


def test_pressure_only_where_reported():
    assert policy.pen_pressure(contact("hidinput", button="pen", pressure=0.4)) == pytest.approx(0.4)
    assert policy.pen_pressure(contact("wm_pen")) is None
    assert policy.pen_pressure(contact("hidinput", button="pen", pressure=3.0)) == 1.0
