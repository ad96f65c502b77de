"""The labelling canvas: the image, the mask overlay, the tools, pen/finger/mouse input.

The numpy mask in :class:`labelassist.label_layer.LabelLayer` is the truth. The screen shows
it through an RGBA overlay texture of the image's size; after every change only the
layer's dirty rectangle is recomputed and uploaded (``blit_buffer`` with ``pos``/``size``,
no mipmaps), so a stroke segment costs well under a millisecond even on 4096x3072.

Coordinates: the image is drawn at ``offset`` (its bottom-left corner, in the parent's
coordinates, like ``self.pos``) scaled by ``scale`` screen pixels per image pixel. Image
pixels have x to the right and y downwards (numpy rows). :meth:`image_point` and
:meth:`parent_point` convert between the two; :meth:`window_to_image` is for tests.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
from kivy.graphics import Color, Line, Rectangle
from kivy.graphics.texture import Texture
from kivy.metrics import dp
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.stencilview import StencilView

from labelassist.label_layer import Edit, LabelLayer
from labelassist.ui import input_policy, theme
from labelassist.ui.object_prompting import ObjectPreview
from labelassist.ui.teach_strokes import TeachStrokes
from labelassist.ui.tools import TAP_TRAVEL, TOOLS, Contact

log = logging.getLogger(__name__)

MIN_SCALE = 0.02
MAX_SCALE = 40.0
TAP_SECONDS = 0.35       # a multi-finger tap is shorter than this and moves less than TAP_TRAVEL
WHEEL_STEP = 1.2
OVERLAY_BAND_PIXELS = 4 * 1024 * 1024  # full overlay uploads go in bands of this many pixels


def _rgba8(colour) -> tuple[int, ...]:
    return tuple(int(round(255 * c)) for c in colour)


# Overlay colours (RGBA) by pixel code: bit 0 mask, bit 1 proposal (pre-label), bit 2 highlight;
# bits 3 and 4 the teach tool's object and background strokes (ui/teach_strokes.py), drawn over
# everything while the teach tool is picked.
_LUT = np.array([
    (0, 0, 0, 0),          # nothing
    (255, 40, 200, 255),   # mask: magenta (high contrast on grey microscopy)
    (0, 230, 255, 150),    # pre-label proposal: cyan
    (255, 40, 200, 255),   # mask over proposal
    (255, 200, 0, 255),    # highlight (inspection "fix it"): amber
    (255, 140, 0, 255),    # highlight on mask
    (255, 200, 0, 255),
    (255, 140, 0, 255),
] + [_rgba8(theme.TEACH_OBJECT)] * 8 + [_rgba8(theme.TEACH_BACKGROUND)] * 16, dtype=np.uint8)
_LUT32 = _LUT.view(np.uint32).ravel()  # one 32-bit RGBA word per code: a 4x cheaper gather


class LabelCanvas(StencilView):
    """Shows one image with its mask and turns contacts into edits of a :class:`LabelLayer`.

    Events
    ------
    on_edit(edit)
        A finished edit (stroke, fill...): the screen journals it.
    on_segment_request(intent, prompt)
        Tap-to-segment, the user's intent: ``("point", {"points": [(x, y)]})`` or
        ``("box", {"box": (x0, y0, x1, y1)})``; the session chooses the method. The magic
        wand's tap: ``("wand", {"points": [(x, y)]})``.
    on_undo_gesture, on_redo_gesture
        Two-finger tap, three-finger tap.
    on_view_changed
        Zoom or pan changed (the screen remembers it).
    on_teach_stroke
        A teach stroke ended (:attr:`teach_strokes` holds all of them): the screen asks for a proposal.

    A proposed object (tap-to-segment, the wand) is not in the overlay: it is drawn as lines
    in ``canvas.after`` (:meth:`set_object_preview`), placed again on every zoom and pan, so
    its outline stays one thin line at any zoom.
    """

    tool = StringProperty("brush")
    brush_size = NumericProperty(8.0)      # radius, image pixels
    overlay_opacity = NumericProperty(0.55)
    outline = BooleanProperty(False)
    scale = NumericProperty(1.0)
    offset = ListProperty([0.0, 0.0])
    pen_seen = BooleanProperty(False)
    palm_size = NumericProperty(150.0)  # pixels (input_policy.is_palm)
    layer = ObjectProperty(None, allownone=True)
    has_proposal = BooleanProperty(False)
    image_size = ListProperty([0, 0])
    # True while the mask on screen is being saved or another sample opens: a stroke then would
    # be journalled after the save, on top of a version it is not part of. Navigation still works.
    paint_locked = BooleanProperty(False)
    # The teach tool paints background strokes instead of object strokes.
    teach_background = BooleanProperty(False)

    __events__ = ("on_edit", "on_segment_request", "on_undo_gesture", "on_redo_gesture", "on_view_changed",
                  "on_teach_stroke")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._image_texture: Texture | None = None
        self._overlay_texture: Texture | None = None
        self.proposal: np.ndarray | None = None
        self.highlight: np.ndarray | None = None
        self.teach_strokes: TeachStrokes | None = None  # the open image's, shown while teaching
        self._painter = None          # uid of the contact that paints now
        self._painter_kind = None
        self._drag = None              # the tool's generator for the contact that paints now
        self._path: list[tuple[float, float]] = []     # lasso / box outline drawn now, image pixels
        self._path_is_box = False
        self.polygon: list[tuple[float, float]] = []
        self._fingers: dict = {}       # uid -> last position, fingers that navigate
        self._finger_paint = False
        self._pen_active = False
        self._pans: dict = {}          # uid -> last position, mouse right/middle drags
        self._gesture = None           # multi-finger tap being watched
        with self.canvas:
            Color(0.08, 0.08, 0.08, 1)
            self._background = Rectangle(pos=self.pos, size=self.size)
            Color(1, 1, 1, 1)
            self._image_rect = Rectangle()
            self._overlay_color = Color(1, 1, 1, self.overlay_opacity)
            self._overlay_rect = Rectangle()
        self.object_preview = ObjectPreview()  # a proposed object (tap-to-segment, the wand)
        self.canvas.after.add(self.object_preview.group)
        with self.canvas.after:
            Color(1, 0.85, 0, 1)
            self._path_line = Line(width=dp(2))
        self.bind(pos=self._on_geometry, size=self._on_geometry, scale=self._place, offset=self._place,
                  overlay_opacity=self._on_opacity, outline=lambda *_: self.redraw_overlay())

    # -- content ----------------------------------------------------------------------------
    def set_image(self, display: np.ndarray) -> None:
        """Show ``display`` (uint8, grey or RGB, (H, W[, 3])) as the background."""
        display = np.ascontiguousarray(display)
        h, w = display.shape[:2]
        fmt = "luminance" if display.ndim == 2 else ("rgb" if display.shape[2] == 3 else "rgba")
        texture = Texture.create(size=(w, h), colorfmt=fmt, mipmap=False)
        texture.flip_vertical()       # numpy row 0 at the top of the screen
        texture.mag_filter = "nearest"  # see pixels when zoomed in
        texture.blit_buffer(display.tobytes(), colorfmt=fmt, bufferfmt="ubyte")
        self._image_texture = texture
        self._image_rect.texture = texture
        self.image_size = [w, h]

    def set_layer(self, layer: LabelLayer, proposal: np.ndarray | None = None,
                  highlight: np.ndarray | None = None) -> None:
        """Edit ``layer`` (same size as the image); ``proposal`` is the pre-label shown to accept."""
        self.layer = layer
        self.proposal = proposal
        self.highlight = highlight
        self.has_proposal = proposal is not None
        self._cancel_paint()
        self.polygon = []
        self._path = []
        self._update_path_line()
        texture = Texture.create(size=(layer.width, layer.height), colorfmt="rgba", mipmap=False)
        texture.flip_vertical()
        texture.mag_filter = "nearest"
        self._overlay_texture = texture
        self._overlay_rect.texture = texture
        self.redraw_overlay()

    def set_proposal(self, proposal: np.ndarray | None) -> None:
        self.proposal = proposal
        self.has_proposal = proposal is not None
        self.redraw_overlay()

    def set_object_preview(self, mask: np.ndarray | None, points=(), negative=(), box=None) -> None:
        """Show a proposed object as an outline in its own colour (:data:`theme.OBJECT_PROPOSAL`),
        with the taps and the box that asked for it (``negative``: "not object" taps, a cross).
        ``mask`` None: no object; a ``box`` given alone is one where nothing was found, drawn in
        the warning colour until the next prompt. The mask does not change."""
        self.object_preview.show(mask, points, negative, box)
        self.object_preview.place(self)
        self.canvas.ask_update()

    @property
    def shows_object_preview(self) -> bool:
        return self.object_preview.shows_object

    def set_teach_strokes(self, strokes: TeachStrokes | None) -> None:
        """The teach strokes of the open image, of the layer's size (drawn while the teach tool is
        picked). Call it after :meth:`set_layer` for a new image; new strokes are empty."""
        shown = self._teaching and not self.teach_strokes.empty
        self.teach_strokes = strokes
        if shown:  # only then does the overlay change (a sample opens without a second upload)
            self.redraw_overlay()

    @property
    def _teaching(self) -> bool:
        return self.teach_strokes is not None and self.tool == "teach"

    def set_highlight(self, highlight: np.ndarray | None) -> None:
        self.highlight = highlight if highlight is not None and highlight.any() else None
        self.redraw_overlay()

    def redraw_overlay(self) -> None:
        """Upload the whole overlay (new sample, outline toggled, proposal changed).

        In bands of rows, so that an 8192x8192 image never needs its 256 MB RGBA at once.
        """
        if self.layer is None:
            return
        self.layer.take_dirty()
        if self.teach_strokes is not None:
            self.teach_strokes.take_dirty()
        w, h = self.layer.width, self.layer.height
        band = max(1, OVERLAY_BAND_PIXELS // max(1, w))
        for y0 in range(0, h, band):
            self._upload((0, y0, w, min(h, y0 + band)))

    def refresh_overlay(self) -> None:
        """Upload only what changed since the last upload (the dirty rectangle)."""
        if self.layer is None:
            return
        dirty = self.layer.take_dirty()
        if dirty is not None:
            self._upload(dirty)
        if self.teach_strokes is not None:
            dirty = self.teach_strokes.take_dirty()
            if dirty is not None and self.tool == "teach":
                self._upload(dirty)

    def overlay_rgba(self, rect) -> np.ndarray:
        """The overlay pixels of ``rect`` (x0, y0, x1, y1), RGBA uint8."""
        x0, y0, x1, y1 = rect
        mask = self.layer.mask
        if self.outline:
            # an outline pixel is a mask pixel with a background 4-neighbour: erode a 1-pixel border
            h, w = mask.shape
            px0, py0, px1, py1 = max(0, x0 - 1), max(0, y0 - 1), min(w, x1 + 1), min(h, y1 + 1)
            region = mask[py0:py1, px0:px1].view(np.uint8)
            eroded = cv2.erode(region, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
            edge = (region > 0) & (eroded == 0)
            code = edge[y0 - py0:y1 - py0, x0 - px0:x1 - px0].astype(np.uint8)
        else:
            code = mask[y0:y1, x0:x1].view(np.uint8).copy()
        if self.proposal is not None:
            np.bitwise_or(code, self.proposal[y0:y1, x0:x1].view(np.uint8) * np.uint8(2), out=code)
        if self.highlight is not None:
            np.bitwise_or(code, self.highlight[y0:y1, x0:x1].view(np.uint8) * np.uint8(4), out=code)
        if self._teaching:
            np.bitwise_or(code, self.teach_strokes.codes(rect), out=code)
        return _LUT32[code].view(np.uint8).reshape(code.shape + (4,))

    def _upload(self, rect) -> None:
        x0, y0, x1, y1 = rect
        if x1 <= x0 or y1 <= y0 or self._overlay_texture is None:
            return
        rgba = self.overlay_rgba(rect)
        self._overlay_texture.blit_buffer(rgba.tobytes(), pos=(x0, y0), size=(x1 - x0, y1 - y0),
                                          colorfmt="rgba", bufferfmt="ubyte")
        self.canvas.ask_update()

    # -- view transform ---------------------------------------------------------------------
    def _on_geometry(self, *_):
        self._background.pos = self.pos
        self._background.size = self.size
        self._place()

    def _on_opacity(self, *_):
        self._overlay_color.a = self.overlay_opacity

    def _place(self, *_):
        w, h = self.image_size
        pos = (self.offset[0], self.offset[1])
        size = (w * self.scale, h * self.scale)
        self._image_rect.pos = self._overlay_rect.pos = pos
        self._image_rect.size = self._overlay_rect.size = size
        self._update_path_line()
        self.object_preview.place(self)

    def fit(self) -> None:
        """Show the whole image, centred."""
        w, h = self.image_size
        if not w or not h or self.width <= 1:
            return
        self.scale = min(self.width / w, self.height / h) * 0.98
        self.offset = [self.x + (self.width - w * self.scale) / 2, self.y + (self.height - h * self.scale) / 2]
        self.dispatch("on_view_changed")

    def set_view(self, scale: float, center: tuple[float, float]) -> None:
        """Zoom to ``scale`` with image point ``center`` in the middle of the canvas."""
        self.scale = min(MAX_SCALE, max(MIN_SCALE, float(scale)))
        h = self.image_size[1]
        cx, cy = center
        self.offset = [self.center_x - cx * self.scale, self.center_y - (h - cy) * self.scale]
        self.dispatch("on_view_changed")

    def view_center(self) -> tuple[float, float]:
        """The image point in the middle of the canvas."""
        return self.image_point(self.center_x, self.center_y)

    def image_point(self, px: float, py: float) -> tuple[float, float]:
        """Parent coordinates (like ``touch.pos``) to image pixels (x right, y down)."""
        h = self.image_size[1]
        return (px - self.offset[0]) / self.scale, h - (py - self.offset[1]) / self.scale

    def parent_point(self, ix: float, iy: float) -> tuple[float, float]:
        h = self.image_size[1]
        return self.offset[0] + ix * self.scale, self.offset[1] + (h - iy) * self.scale

    def window_to_image(self, wx: float, wy: float) -> tuple[float, float]:
        return self.image_point(*self.to_widget(wx, wy))

    def image_to_window(self, ix: float, iy: float) -> tuple[float, float]:
        return self.to_window(*self.parent_point(ix, iy))

    def zoom_at(self, factor: float, px: float, py: float) -> None:
        """Zoom by ``factor`` keeping the point under (px, py) fixed."""
        new = min(MAX_SCALE, max(MIN_SCALE, float(self.scale * factor)))
        factor = new / self.scale
        self.offset = [float(px - (px - self.offset[0]) * factor), float(py - (py - self.offset[1]) * factor)]
        self.scale = new
        self.dispatch("on_view_changed")

    def pan(self, dx: float, dy: float) -> None:
        self.offset = [self.offset[0] + dx, self.offset[1] + dy]
        self.dispatch("on_view_changed")

    # -- input ------------------------------------------------------------------------------
    def on_touch_down(self, touch):
        if not self.collide_point(*touch.pos) or self.layer is None:
            return False
        kind = input_policy.classify(touch, self.palm_size)
        touch.ud["canvas_kind"] = kind
        if kind == input_policy.PALM:
            return True  # swallowed: a resting hand does nothing
        if kind in (input_policy.WHEEL_IN, input_policy.WHEEL_OUT):
            self.zoom_at(WHEEL_STEP if kind == input_policy.WHEEL_IN else 1 / WHEEL_STEP, *touch.pos)
            return True
        if kind == input_policy.PEN:
            self.pen_seen = True
            if self._finger_paint:
                self._cancel_paint()
            self._fingers.clear()
            self._gesture = None
            self._pen_active = True
            self._start_paint(touch, kind)
        elif kind == input_policy.MOUSE_PAINT:
            self._start_paint(touch, kind)
        elif kind == input_policy.MOUSE_PAN:
            self._pans[touch.uid] = touch.pos
        elif kind == input_policy.FINGER:
            if self._pen_active:
                touch.ud["canvas_kind"] = input_policy.PALM  # a finger during a pen stroke: ignored
                return True
            self._finger_down(touch)
        touch.grab(self)
        return True

    def on_touch_move(self, touch):
        if touch.grab_current is not self:
            return self.collide_point(*touch.pos)
        kind = touch.ud.get("canvas_kind")
        if touch.uid == self._painter:
            self._continue_paint(touch)
        elif touch.uid in self._fingers:
            self._finger_move(touch)
        elif touch.uid in self._pans:
            last = self._pans[touch.uid]
            self._pans[touch.uid] = touch.pos
            self.pan(touch.x - last[0], touch.y - last[1])
        return kind is not None

    def on_touch_up(self, touch):
        if touch.grab_current is not self:
            return self.collide_point(*touch.pos)
        touch.ungrab(self)
        if touch.uid == self._painter:
            self._finish_paint(touch)
        elif touch.uid in self._fingers:
            self._finger_up(touch)
        self._pans.pop(touch.uid, None)
        if touch.ud.get("canvas_kind") == input_policy.PEN:
            self._pen_active = False
        return True

    # fingers: pan, pinch, multi-finger taps; one finger paints until a pen is seen
    def _finger_down(self, touch):
        now = time.monotonic()
        if not self._fingers:
            self._gesture = {"start": now, "fingers": 0, "moved": False}
        if self._gesture is not None:
            self._gesture["fingers"] += 1
        self._fingers[touch.uid] = touch.pos
        touch.ud["finger_origin"] = touch.pos
        if len(self._fingers) == 1 and not self.pen_seen and self._painter is None and not self.paint_locked:
            self._finger_paint = True
            self._start_paint(touch, input_policy.FINGER)
        elif len(self._fingers) >= 2 and self._finger_paint:
            self._cancel_paint()  # the first finger was the start of a gesture, not a stroke

    def _finger_move(self, touch):
        origin = touch.ud.get("finger_origin", touch.pos)
        if self._gesture is not None and abs(touch.x - origin[0]) + abs(touch.y - origin[1]) > TAP_TRAVEL:
            self._gesture["moved"] = True
        if touch.uid == self._painter:
            self._fingers[touch.uid] = touch.pos
            self._continue_paint(touch)
            return
        uids = list(self._fingers)
        if len(uids) >= 2 and touch.uid in uids[:2]:
            other = uids[1] if touch.uid == uids[0] else uids[0]
            ox, oy = self._fingers[other]
            lx, ly = self._fingers[touch.uid]
            before = float(np.hypot(lx - ox, ly - oy))
            after = float(np.hypot(touch.x - ox, touch.y - oy))
            mid_before = ((lx + ox) / 2, (ly + oy) / 2)
            mid_after = ((touch.x + ox) / 2, (touch.y + oy) / 2)
            if before > 1 and after > 1:
                self.zoom_at(after / before, *mid_before)
            self.pan(mid_after[0] - mid_before[0], mid_after[1] - mid_before[1])
        elif len(uids) == 1:
            lx, ly = self._fingers[touch.uid]
            self.pan(touch.x - lx, touch.y - ly)
        self._fingers[touch.uid] = touch.pos

    def _finger_up(self, touch):
        if touch.uid == self._painter:
            self._finish_paint(touch)
            self._finger_paint = False
        self._fingers.pop(touch.uid, None)
        if not self._fingers and self._gesture is not None:
            gesture, self._gesture = self._gesture, None
            quick = time.monotonic() - gesture["start"] < TAP_SECONDS
            if quick and not gesture["moved"]:
                if gesture["fingers"] == 2:
                    self.dispatch("on_undo_gesture")
                elif gesture["fingers"] == 3:
                    self.dispatch("on_redo_gesture")

    # painting with the current tool (the tools themselves are in labelassist.ui.tools)
    def _radius(self, touch) -> float:
        pressure = input_policy.pen_pressure(touch)
        if pressure is None:
            return self.brush_size
        return max(0.5, self.brush_size * (0.25 + 0.75 * pressure))

    def _contact(self, phase: str, touch) -> Contact:
        return Contact(phase, self.image_point(*touch.pos), tuple(touch.pos), self._radius(touch))

    def _send(self, contact: Contact) -> None:
        if self._drag is None:
            return
        try:
            self._drag.send(contact)
        except StopIteration:
            self._drag = None

    def _start_paint(self, touch, kind):
        if self.paint_locked:
            return
        self._painter = touch.uid
        self._painter_kind = kind
        self._drag = TOOLS[self.tool].drag(self, self._contact("press", touch))
        try:
            next(self._drag)  # the press: the tool's code up to its first yield
        except StopIteration:
            self._drag = None

    def _continue_paint(self, touch):
        self._send(self._contact("move", touch))

    def _finish_paint(self, touch):
        self._painter = None
        self._send(self._contact("release", touch))
        self._drag = None
        self.show_path([])
        edit = self.layer.end_edit()
        self.refresh_overlay()
        if edit is not None:
            self.dispatch("on_edit", edit)

    def _cancel_paint(self):
        if self._drag is not None:
            self._drag.close()
            self._drag = None
        if self.layer is not None:
            self.layer.cancel_edit()
            self.refresh_overlay()
        self._painter = None
        self._finger_paint = False
        self.show_path([])

    def show_path(self, points: list[tuple[float, float]], box: bool = False) -> None:
        """Draw the outline of a drag in progress (lasso path; the box between two corners)."""
        self._path, self._path_is_box = list(points), box
        self._update_path_line()

    def add_polygon_vertex(self, point: tuple[float, float], screen: tuple[float, float]) -> None:
        """A polygon corner; a tap near the first corner (on screen) closes the polygon."""
        if len(self.polygon) >= 3:
            fx, fy = self.parent_point(*self.polygon[0])
            if np.hypot(screen[0] - fx, screen[1] - fy) < TAP_TRAVEL:
                self.close_polygon()
                return
        self.polygon.append(point)
        self._update_path_line()

    def close_polygon(self) -> Edit | None:
        """Fill the polygon drawn so far (tapping its first corner does the same)."""
        points, self.polygon = self.polygon, []
        self._update_path_line()
        if len(points) < 3:
            return None
        self.layer.begin_edit("polygon")
        self.layer.fill_polygon(points)
        edit = self.layer.end_edit()
        self.refresh_overlay()
        if edit is not None:
            self.dispatch("on_edit", edit)
        return edit

    def apply_edit(self, kind: str, change) -> Edit | None:
        """Apply a whole-mask change as one edit: ``change(layer)`` (accept, segment, suggestion, clear)."""
        if self.layer is None:
            return None
        if self._drag is not None and self.layer.editing:
            # The stroke drawn so far becomes its own edit (journalled); the rest of that drag
            # paints nothing. Without this, begin_edit would fold it in unjournalled.
            self._drag.close()
            self._drag = None
            self.show_path([])
            stroke = self.layer.end_edit()
            if stroke is not None:
                self.dispatch("on_edit", stroke)
        self.layer.begin_edit(kind)
        change(self.layer)
        edit = self.layer.end_edit()
        self.refresh_overlay()
        if edit is not None:
            self.dispatch("on_edit", edit)
        return edit

    def _update_path_line(self, *_):
        points = self._path or self.polygon
        if self._path_is_box and len(points) == 2:
            (x0, y0), (x1, y1) = points
            points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        flat = []
        for ix, iy in points:
            flat.extend(self.parent_point(ix, iy))
        self._path_line.points = flat

    def on_tool(self, *_):
        # A drag in progress finishes with the tool it began with (its generator holds it).
        self.polygon = []
        if self._drag is None:
            self.show_path([])
        if self.teach_strokes is not None and not self.teach_strokes.empty:
            self.redraw_overlay()  # the strokes show only while teaching

    # default handlers
    def on_edit(self, edit):
        pass

    def on_segment_request(self, intent, prompt):
        pass

    def on_undo_gesture(self):
        pass

    def on_redo_gesture(self):
        pass

    def on_view_changed(self):
        pass

    def on_teach_stroke(self):
        pass
