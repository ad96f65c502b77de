"""Tap-to-segment and the magic wand: a prompt in, one proposed object out, nothing changed.

The canvas reports what the user asked for as an :class:`ObjectPrompt` (a box, object taps,
"not object" taps, or a wand tap); :meth:`labelassist.session.core.Session.propose_object`
answers with an :class:`ObjectProposal`: the object's pixels and plain words, or why nothing
was found. The screen shows the proposal as an outline with Add and Discard; the mask changes
only on Add (``LabelLayer.add_object``, which keeps a seam between touching objects).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["ObjectPrompt", "ObjectProposal", "proposal_words"]

#: A tap's answer covering more than this share of the image is shown with a warning: a cell
#: is rarely a quarter of the field (the first version filled the whole image and said "Added").
LARGE_SHARE = 0.25

Point = tuple[int, int]


@dataclass(frozen=True)
class ObjectPrompt:
    """What the user asked for, in image pixels (x right, y down).

    Attributes
    ----------
    tool : str
        ``"segment"`` (tap-to-segment: the promptable model, or GrabCut and the
        watershed without one) or ``"wand"`` (the magic wand: a flood fill).
    box : (x0, y0, x1, y1) or None
        A box drawn around the object.
    points : tuple of (x, y)
        Taps on the object.
    negative : tuple of (x, y)
        Taps on what is not the object (refining a proposal).
    """

    tool: str = "segment"
    box: tuple[int, int, int, int] | None = None
    points: tuple[Point, ...] = ()
    negative: tuple[Point, ...] = field(default=())

    def with_tap(self, point: tuple[float, float], negative: bool = False) -> "ObjectPrompt":
        """The same prompt with one more tap (refining the same proposal)."""
        p = (int(point[0]), int(point[1]))
        if negative:
            return replace(self, negative=self.negative + (p,))
        return replace(self, points=self.points + (p,))

    @property
    def empty(self) -> bool:
        return self.box is None and not self.points


@dataclass(frozen=True)
class ObjectProposal:
    """The answer to an :class:`ObjectPrompt`: shown as an outline, added only on Add.

    Attributes
    ----------
    prompt : ObjectPrompt
    mask : ndarray of bool (H, W) or None
        The object; None when nothing was found (then ``problem`` says what to do).
    method : str
        What found it: ``box_model`` (the promptable model), ``grabcut``, ``watershed``, ``flood``.
    words : str
        Plain words for the message line.
    problem : str or None
        Said in the warning colour: why nothing was found, or what looks wrong.
    """

    prompt: ObjectPrompt
    mask: np.ndarray | None
    method: str
    words: str
    problem: str | None = None

    @property
    def found(self) -> bool:
        return self.mask is not None

    def bounds(self) -> tuple[int, int, int, int] | None:
        """``(x0, y0, x1, y1)`` (exclusive ends) of the object, or None."""
        if self.mask is None:
            return None
        ys, xs = np.nonzero(self.mask)
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def nothing_found(prompt: ObjectPrompt) -> str:
    """What to do when a prompt found nothing (said in the warning colour)."""
    if prompt.tool == "wand":
        return "The wand found nothing at the tap: tap inside the object."
    if prompt.box is not None:
        return "Nothing found in the box: draw it around the whole cell."
    return "Nothing found at the tap: tap in the middle of a cell, or draw a box around it."


def proposal_words(prompt: ObjectPrompt, mask: np.ndarray, note: str | None = None,
                   large_share: float = LARGE_SHARE) -> tuple[str, str | None]:
    """The message for a found object and, when it looks wrong, the warning.

    ``large_share``: above this share of the image the object is called too large (the
    caller raises it where the project's labelled objects are that large, a scratch assay's
    cell-covered halves).

    Returns
    -------
    words, problem : str, str or None
    """
    share = float(mask.mean())
    pixels = int(mask.sum())
    if prompt.tool == "wand":
        words = f"The wand found {pixels:,} pixels: tap Add, or Discard."
    else:
        words = (f"Found an object of {pixels:,} pixels: tap Add, tap more of it to grow it, "
                 f"or switch to 'Not object' and tap what does not belong.")
    problems = [note] if note else []
    if share > large_share:
        percent = int(round(100 * share))
        problems.append(f"This covers {percent} % of the image, more than an object in your labels does: "
                        + ("tap Discard and draw a box around the object." if prompt.box is None
                           else "tap Discard and draw the box tighter."))
    problem = " ".join(problems) or None
    return words, problem
