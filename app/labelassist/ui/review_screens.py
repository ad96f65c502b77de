"""Inspection and Post-processing: the two screens that render a state of the Save & next flow
(:class:`labelassist.session.save_flow.SaveFlow`) and send the user's choice back (layout:
review_screens.kv)."""

from __future__ import annotations

from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.image import Image

from labelassist.session.save_flow import Answer, Choice
from labelassist.ui.screens import KioskScreen, screen_of
from labelassist.ui.textures import composite, numpy_texture


# -- Inspection -------------------------------------------------------------------------------
class CheckRow(BoxLayout):
    text = StringProperty("")
    name = StringProperty("")

    def fix(self):
        screen_of(self).fix([self.name])


class InspectionScreen(KioskScreen):
    """Renders a WARNING of the Save & next flow: the failed checks, "Fix it" or "Save anyway"."""

    review = ObjectProperty(None, allownone=True)
    verdict = StringProperty("")

    def on_review(self, *_):
        report = self.review.report if self.review is not None else None
        box = self.ids.checks
        box.clear_widgets()
        if report is None:
            self.verdict = ""
            return
        self.verdict = (f"Label quality {report.score:.2f} is at or below the warning level "
                        f"{report.gamma0:.2f}. What looks wrong:")
        for check in report.failed:
            box.add_widget(CheckRow(text=check.message[:1].upper() + check.message[1:], name=check.name))

    @property
    def report(self):
        return None if self.review is None else self.review.report

    def fix(self, checks=()):
        """Back to labelling with what the checks (default: the flow's choice) object to highlighted."""
        if self.review is not None:
            self.app.review(Answer(self.review.review_id, Choice.FIX, tuple(checks), self.review.state))

    def save_anyway(self):
        if self.review is not None:
            self.app.review(Answer(self.review.review_id, Choice.SAVE_ANYWAY, state=self.review.state))


# -- Post-processing --------------------------------------------------------------------------
class CompareImage(Image):
    """Hold (press) the picture to see the label before the change."""

    __events__ = ("on_hold",)

    def on_touch_down(self, touch):
        if self.collide_point(*touch.pos):
            touch.grab(self)
            self.dispatch("on_hold", True)
            return True
        return super().on_touch_down(touch)

    def on_touch_up(self, touch):
        if touch.grab_current is self:
            touch.ungrab(self)
            self.dispatch("on_hold", False)
            return True
        return super().on_touch_up(touch)

    def on_hold(self, holding):
        pass


class PostprocessScreen(KioskScreen):
    """Renders a SUGGESTION of the Save & next flow: before/after, accept or reject."""

    review = ObjectProperty(None, allownone=True)
    heading = StringProperty("")
    summary = StringProperty("")
    before_texture = ObjectProperty(None, allownone=True)
    after_texture = ObjectProperty(None, allownone=True)
    showing_before = BooleanProperty(False)

    def on_review(self, _screen, review):
        if review is None or review.suggestion is None:
            return
        if self._before_of != review.review_id:  # one "before" per flow: the mask as submitted
            self._before_of = review.review_id
            self.before_texture = numpy_texture(composite(self.display, review.before))
        s = review.suggestion
        self.heading = (f"Suggestion {review.index + 1} of {len(review.suggestions)}: "
                        f"{s.step.replace('_', ' ')}")
        self.summary = s.change.describe().capitalize()
        self.after_texture = numpy_texture(composite(self.display, s.mask))
        self.showing_before = False

    _before_of = None
    display = None  # the sample's display image, set by the app with the review (a plain array)

    @property
    def suggestions(self):
        return [] if self.review is None else list(self.review.suggestions)

    def accept(self):
        if self.review is not None:
            self.app.review(Answer(self.review.review_id, Choice.ACCEPT, state=self.review.state))

    def reject(self):
        if self.review is not None:
            self.app.review(Answer(self.review.review_id, Choice.REJECT, state=self.review.state))


__all__ = ["InspectionScreen", "CheckRow", "PostprocessScreen", "CompareImage"]
