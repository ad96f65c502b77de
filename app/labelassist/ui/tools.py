"""The drawing tools of the label canvas: one table, each tool one function for its whole drag.

A tool is a generator function, as napari's mouse modes are: the canvas calls it with the
canvas and the contact that pressed, the code before the first ``yield`` handles the press,
each ``yield`` receives the next :class:`Contact` (a move, and at last the release), and
returning ends the drag. The canvas closes the layer's edit afterwards (one undo atom per drag)
and reports it. Adding a tool means one function and one row of :data:`TOOLS`; the tool rail,
the keyboard shortcuts and the resume of the last tool all read the table.

Tools report the user's intent, never a method: the segment tool says "a point here" or "a box
there" (``on_segment_request("point" | "box", prompt)``) and the session chooses how to segment;
the magic wand says "the region here" (``on_segment_request("wand", prompt)``). Neither changes
the mask: the screen shows what the session proposes, and adds it on Add.
The teach tool paints object or background strokes (the canvas's ``teach_background``) beside
the label, never in it, and says when a stroke ends (``on_teach_stroke``): the session learns
from them and proposes a pre-label.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
from kivy.metrics import dp

TAP_TRAVEL = dp(24)  # a segment drag shorter than this on screen is a tap: a point, not a box

Point = tuple[float, float]


@dataclass(frozen=True)
class Contact:
    """One moment of a painting contact, as a tool sees it.

    Attributes
    ----------
    phase : str
        ``"press"``, ``"move"`` or ``"release"``.
    point : tuple of float
        Where, in image pixels (x right, y down).
    screen : tuple of float
        Where, in the canvas parent's coordinates (like ``touch.pos``).
    radius : float
        The brush radius for this contact in image pixels (the pen's pressure applied).
    """

    phase: str
    point: Point
    screen: Point
    radius: float


Drag = Generator[None, Contact, None]


@dataclass(frozen=True)
class Tool:
    """A row of the tool table.

    Attributes
    ----------
    name : str
        The tool's name (``LabelCanvas.tool``, the remembered screen state).
    text : str
        Its words on the tool rail.
    icon : str
        Its icon (``IconView.name``).
    key : str
        Its keyboard shortcut.
    drag : callable
        ``drag(canvas, press) -> generator``: the tool's press, moves and release.
    """

    name: str
    text: str
    icon: str
    key: str
    drag: Callable[[Any, Contact], Drag]


def _paint(value: bool) -> Callable[[Any, Contact], Drag]:
    def paint(canvas, press: Contact) -> Drag:
        layer = canvas.layer
        layer.begin_edit("brush" if value else "eraser")
        layer.paint_segment(press.point, press.point, press.radius, value=value)
        canvas.refresh_overlay()
        last = press.point
        while (contact := (yield)).phase != "release":
            if layer.editing:  # a second finger may have cancelled the edit
                layer.paint_segment(last, contact.point, contact.radius, value=value)
                canvas.refresh_overlay()
            last = contact.point
    return paint


def lasso(canvas, press: Contact) -> Drag:
    """Draw round an area; it is filled on release."""
    path = [press.point]
    canvas.show_path(path)
    while (contact := (yield)).phase != "release":
        path.append(contact.point)
        canvas.show_path(path)
    if len(path) >= 3:
        canvas.layer.begin_edit("lasso")
        canvas.layer.fill_polygon(path)


def polygon(canvas, press: Contact) -> Drag:
    """Each tap a corner; a tap on the first corner (or Enter) fills it."""
    canvas.add_polygon_vertex(press.point, press.screen)
    return
    yield  # a generator that ends at its press


def bucket(canvas, press: Contact) -> Drag:
    """Fill the region of the mask (or of the background) under the tap."""
    canvas.layer.begin_edit("bucket")
    canvas.layer.bucket_fill(*press.point)
    canvas.refresh_overlay()
    return
    yield


def segment(canvas, press: Contact) -> Drag:
    """A tap asks for the object under it, a drag for the object in the box."""
    start = press.point
    canvas.show_path([start], box=True)
    while (contact := (yield)).phase != "release":
        canvas.show_path([start, contact.point], box=True)
    end = contact.point
    travel = float(np.hypot(end[0] - start[0], end[1] - start[1])) * canvas.scale
    if travel < TAP_TRAVEL:
        canvas.dispatch("on_segment_request", "point", {"points": [(int(start[0]), int(start[1]))]})
    else:
        box = (min(start[0], end[0]), min(start[1], end[1]), max(start[0], end[0]), max(start[1], end[1]))
        canvas.dispatch("on_segment_request", "box", {"box": tuple(int(round(v)) for v in box)})


def wand(canvas, press: Contact) -> Drag:
    """A tap asks the magic wand for the region under it (a flood fill that stops at edges)."""
    canvas.dispatch("on_segment_request", "wand", {"points": [(int(press.point[0]), int(press.point[1]))]})
    return
    yield


def teach(canvas, press: Contact) -> Drag:
    """Paint a stroke of object (or of background, the canvas's toggle) for the learner to learn from."""
    strokes, background = canvas.teach_strokes, canvas.teach_background
    if strokes is None:
        return
    strokes.paint_segment(press.point, press.point, press.radius, background=background)
    canvas.refresh_overlay()
    last = press.point
    while (contact := (yield)).phase != "release":
        strokes.paint_segment(last, contact.point, contact.radius, background=background)
        canvas.refresh_overlay()
        last = contact.point
    canvas.dispatch("on_teach_stroke")


TOOLS: dict[str, Tool] = {tool.name: tool for tool in (
    Tool("brush", "Brush", "brush", "b", _paint(True)),
    Tool("eraser", "Eraser", "eraser", "e", _paint(False)),
    Tool("lasso", "Lasso fill", "lasso", "l", lasso),
    Tool("polygon", "Polygon", "polygon", "p", polygon),
    Tool("bucket", "Bucket fill", "bucket", "f", bucket),
    Tool("segment", "Tap to segment", "segment", "t", segment),
    Tool("wand", "Magic wand", "wand", "w", wand),
    Tool("teach", "Teach", "teach", "s", teach),
)}
"""The tools in the order of the rail."""

TOOL_KEYS: dict[str, str] = {tool.key: tool.name for tool in TOOLS.values()}
"""Keyboard shortcut -> tool name."""
