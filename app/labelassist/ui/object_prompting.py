"""Tap-to-segment and the magic wand on the Label screen: ask, preview, then Add or Discard.

The canvas reports what the user asked for (``on_segment_request``: a tap, a box, a wand
tap); :class:`ObjectPrompting` turns it into an
:class:`~labelassist.session.prompting.ObjectPrompt`, asks the session for the object on the
worker (``Session.propose_object``) and shows the answer as an outline with Add and Discard.
The mask changes only on Add, as one edit (one undo atom, journalled).

While a proposal is pending, a tap on it (:func:`taps_on`) refines the same prompt: an object
tap or, with "Not object" picked, a tap on what does not belong; a tap elsewhere starts a new
prompt there. A new box, the wand, another sample, Save & next and another tool discard it.

The state the layout binds to lives on the screen (``LabelScreen.object_pending``,
``LabelScreen.object_negative``); :class:`ObjectPrompting` holds the prompt and the proposal.
:class:`ObjectPreview` draws the proposal on the canvas: lines in ``canvas.after``, placed again
on every zoom and pan (``LabelCanvas.set_object_preview``), so the outline stays one thin line
at any zoom; the overlay texture and the mask are not touched.
"""

from __future__ import annotations

import cv2
import numpy as np
from kivy.graphics import Color, Ellipse, InstructionGroup, Line
from kivy.metrics import dp

from labelassist.session.prompting import ObjectPrompt, ObjectProposal
from labelassist.session.save_flow import plain_message
from labelassist.ui import theme
from labelassist.workflow.components import count_segments

__all__ = ["REFINE_MARGIN", "ObjectPreview", "ObjectPrompting", "added_words", "object_outline", "taps_on"]

#: A tap refines the pending proposal when it falls inside the proposal's bounds grown by this
#: share of their size on each side (or inside the prompt's box): a tap meant to grow a cell
#: that was found too small lands outside what was found.
REFINE_MARGIN = 0.25

FINDING = "Finding the object..."
UNEXPECTED = plain_message(RuntimeError())  # what the worker says for an error that is not ours
NOTHING_TO_REFINE = ("Nothing to correct yet: tap 'Object', then tap a cell "
                     "or draw a box around it.")


#: Screen widths of a proposed object's outline: a light line on a dark one, visible on bright
#: and dark cells alike and as thin at every zoom.
PREVIEW_LINE = dp(1.5)
PREVIEW_EDGE = dp(3.5)
PREVIEW_TAP = dp(7)  # radius of a tap's mark


def object_outline(mask: np.ndarray) -> list[np.ndarray]:
    """The outline of a proposed object: its boundaries, outer and of its holes.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)

    Returns
    -------
    list of ndarray of float, shape (N, 2)
        One closed polygon per boundary, (x, y) image coordinates of the boundary pixels'
        centres (x right, y down).
    """
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_LIST,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(float) + 0.5 for c in contours if len(c)]


class ObjectPreview:
    """A proposed object on the canvas: its outline in :data:`theme.OBJECT_PROPOSAL` on a dark
    edge, a dot per object tap, a cross per "not object" tap (:data:`theme.NOT_OBJECT`), and
    the box drawn, in the warning colour when nothing was found in it.

    ``group`` goes in the canvas's ``canvas.after``; :meth:`place` draws it for the canvas's
    view (its ``parent_point``, ``offset``, ``scale`` and ``image_size``).
    """

    def __init__(self):
        self.group = InstructionGroup()
        self._outline: list[np.ndarray] = []  # the object's boundaries, image pixels
        self._taps: list[tuple[tuple[float, float], bool]] = []  # (point, negative)
        self._box = None  # ((x0, y0, x1, y1), nothing found in it), image pixels

    def show(self, mask: np.ndarray | None, points=(), negative=(), box=None) -> None:
        """What to draw from now on (see ``LabelCanvas.set_object_preview``)."""
        self._outline = [] if mask is None else object_outline(mask)
        self._taps = [] if mask is None else (
            [(tuple(p), False) for p in points] + [(tuple(p), True) for p in negative])
        self._box = None if box is None else (tuple(float(v) for v in box), mask is None)

    @property
    def shows_object(self) -> bool:
        return bool(self._outline)

    def place(self, canvas) -> None:
        """Draw it again for the canvas's view now (after a zoom or pan)."""
        group = self.group
        if not group.children and not self._outline and self._box is None:
            return  # nothing shown, nothing to show: a pan costs nothing
        group.clear()
        if self._box is not None:
            (x0, y0, x1, y1), failed = self._box
            corners = [canvas.parent_point(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
            group.add(Color(*(theme.WARN_TEXT if failed else theme.OBJECT_PROPOSAL)))
            group.add(Line(points=[v for xy in corners for v in xy], width=PREVIEW_LINE, close=True))
        if not self._outline:
            return
        h = canvas.image_size[1]
        ox, oy, s = canvas.offset[0], canvas.offset[1], canvas.scale
        lines = []
        for contour in self._outline:
            flat = np.empty((len(contour), 2))
            flat[:, 0] = ox + contour[:, 0] * s
            flat[:, 1] = oy + (h - contour[:, 1]) * s
            lines.append(flat.ravel().tolist())
        for colour, width in ((theme.PROPOSAL_EDGE, PREVIEW_EDGE), (theme.OBJECT_PROPOSAL, PREVIEW_LINE)):
            group.add(Color(*colour))
            for points in lines:
                group.add(Line(points=points, width=width, close=True))
        r = PREVIEW_TAP
        for (ix, iy), negative in self._taps:
            x, y = canvas.parent_point(ix + 0.5, iy + 0.5)
            group.add(Color(*theme.PROPOSAL_EDGE))
            group.add(Ellipse(pos=(x - r - dp(2), y - r - dp(2)), size=(2 * r + dp(4), 2 * r + dp(4))))
            if negative:
                group.add(Color(*theme.NOT_OBJECT))
                group.add(Line(points=[x - r, y - r, x + r, y + r], width=dp(2)))
                group.add(Line(points=[x - r, y + r, x + r, y - r], width=dp(2)))
            else:
                group.add(Color(*theme.OBJECT_PROPOSAL))
                group.add(Ellipse(pos=(x - r, y - r), size=(2 * r, 2 * r)))


def taps_on(proposal: ObjectProposal, point: tuple[float, float], margin: float = REFINE_MARGIN) -> bool:
    """Whether a tap at ``point`` (x, y, image pixels) is on ``proposal``: inside its bounds
    grown by ``margin`` of their size on each side (at least 4 pixels), or inside its box."""
    x, y = point
    box = proposal.prompt.box
    if box is not None and box[0] <= x <= box[2] and box[1] <= y <= box[3]:
        return True
    bounds = proposal.bounds()
    if bounds is None:
        return False
    x0, y0, x1, y1 = bounds
    mx, my = max(4.0, margin * (x1 - x0)), max(4.0, margin * (y1 - y0))
    return x0 - mx <= x <= x1 + mx and y0 - my <= y <= y1 + my


def _extends(prompt: ObjectPrompt, shown: ObjectPrompt) -> bool:
    """Whether ``prompt`` is ``shown`` with more taps (a refinement of it)."""
    return (prompt.tool == shown.tool and prompt.box == shown.box
            and prompt.points[:len(shown.points)] == shown.points
            and prompt.negative[:len(shown.negative)] == shown.negative
            and len(prompt.points) + len(prompt.negative) > len(shown.points) + len(shown.negative))


def added_words(objects: int) -> str:
    """The message after Add: how many objects (8-connected segments) the image has now."""
    return f"Added. {objects} object{'' if objects == 1 else 's'} on this image."


class ObjectPrompting:
    """The pending prompt and proposal of the Label screen.

    Parameters
    ----------
    screen : LabelScreen
        Shows the proposal (its canvas), says the words (``say``) and holds the state the
        layout binds to (``object_pending``, ``object_negative``).
    """

    def __init__(self, screen):
        self.screen = screen
        self.prompt: ObjectPrompt | None = None        # the newest prompt asked (or shown)
        self.proposal: ObjectProposal | None = None    # the object shown, waiting for Add or Discard
        self._asked = 0  # the newest request: older answers are dropped

    # the user's intent, from the canvas
    def request(self, intent: str, request: dict) -> None:
        """``intent`` ``"point"``, ``"box"`` (the Tap to segment tool) or ``"wand"``, with its
        ``{"points": [(x, y)]}`` or ``{"box": (x0, y0, x1, y1)}``."""
        screen = self.screen
        if screen.assisted is None or screen.busy:
            return
        if intent != "box" and not self._on_image(request["points"][0]):
            screen.say("Tap on the image.", warning=True)
        elif intent == "box":
            self.discard(quiet=True)
            self._ask(ObjectPrompt("segment", box=tuple(request["box"])))
        elif intent == "wand":
            self.discard(quiet=True)
            self._ask(ObjectPrompt("wand", points=(tuple(request["points"][0]),)))
        else:
            self.tap(request["points"][0])

    def _on_image(self, point) -> bool:
        height, width = self.screen.assisted.image.shape[:2]
        return 0 <= point[0] < width and 0 <= point[1] < height

    def tap(self, point: tuple[float, float]) -> None:
        """A tap of the Tap to segment tool: on the pending proposal it refines it, elsewhere it
        starts a new prompt (a "Not object" tap needs a proposal to correct)."""
        negative = self.screen.object_negative
        base = self.prompt
        if self.proposal is not None and base is not None and base.tool == "segment" \
                and taps_on(self.proposal, point):
            self._ask(base.with_tap(point, negative=negative))
            return
        self.discard(quiet=True)
        if negative:
            self.screen.say(NOTHING_TO_REFINE, warning=True)
            return
        self._ask(ObjectPrompt("segment").with_tap(point))

    # the answer, on the Kivy thread
    def _ask(self, prompt: ObjectPrompt) -> None:
        screen = self.screen
        self._asked += 1
        asked, sample_id = self._asked, screen.assisted.sample.id
        self.prompt = prompt
        screen.say(FINDING)
        session = screen.app.session
        screen.app.worker.submit(session.propose_object, sample_id, prompt, key="propose_object",
                                 on_done=lambda p: self._answered(asked, sample_id, p),
                                 on_error=lambda m: self._failed(asked, m))

    def _current(self, asked: int, sample_id: int | None = None) -> bool:
        # Not an answer to an older request, nor on a mask being saved or another sample.
        screen = self.screen
        return (asked == self._asked and not screen.busy and screen.assisted is not None
                and (sample_id is None or screen.assisted.sample.id == sample_id))

    def _answered(self, asked: int, sample_id: int, proposal: ObjectProposal) -> None:
        if not self._current(asked, sample_id):
            return
        if not proposal.found:
            shown = self.proposal
            if shown is not None and _extends(proposal.prompt, shown.prompt):
                # a refining tap that leaves nothing: the outline shown stays, and so does its prompt
                self.prompt = shown.prompt
                self.screen.say("That tap left nothing: tap Add to keep the outline, or tap elsewhere on "
                                "the object.", warning=True)
                return
            self._show(None)
            if proposal.prompt.box is not None:  # where it was drawn, until the next prompt
                self.screen.canvas_widget.set_object_preview(None, box=proposal.prompt.box)
            self.screen.say(proposal.problem or "Nothing was found there.", warning=True)
            return
        self._show(proposal)
        if proposal.problem:
            self.screen.say(proposal.problem, warning=True)
        else:
            self.screen.say(proposal.words)

    def _failed(self, asked: int, message: str) -> None:
        if asked != self._asked:
            return
        # the proposal shown, if any, stays pending; the prompt goes back to it
        self.prompt = self.proposal.prompt if self.proposal is not None else None
        # our own refusals say what to do (the warning colour); anything else is an error
        self.screen.say(message[:1].upper() + message[1:], **{"error" if message == UNEXPECTED else "warning": True})

    def _show(self, proposal: ObjectProposal | None) -> None:
        self.proposal = proposal
        if proposal is None:
            self.prompt = None
        prompt = proposal.prompt if proposal is not None else None
        self.screen.canvas_widget.set_object_preview(
            proposal.mask if proposal is not None else None,
            points=prompt.points if prompt is not None else (),
            negative=prompt.negative if prompt is not None else (),
            box=prompt.box if prompt is not None else None)
        self.screen.object_pending = proposal is not None

    # the buttons
    def add(self) -> None:
        """Add the pending proposal to the mask as an object of its own (one edit)."""
        screen = self.screen
        proposal = self.proposal
        if proposal is None or screen.busy or screen.layer is None:
            return
        self._asked += 1  # a refinement still running is not wanted any more
        self._show(None)
        mask = proposal.mask
        edit = screen.canvas_widget.apply_edit("segment", lambda layer: layer.add_object(mask))
        if edit is None:
            screen.say("Nothing new was added: that object is in the mask already.", warning=True)
        else:
            screen.say(added_words(count_segments(screen.layer.mask)))

    def discard(self, quiet: bool = False) -> None:
        """Forget the pending proposal and any answer still coming; the mask stays as it is."""
        had = self.proposal is not None or self.prompt is not None
        self._asked += 1
        self.prompt = None
        if self.screen.canvas_widget is not None:
            self._show(None)  # the outline, or the box where nothing was found
        if had and not quiet:
            self.screen.say("Discarded: tap another object, or draw a box around it.")
        elif had and self.screen.message == FINDING:
            self.screen.say("")  # nothing is being found any more
