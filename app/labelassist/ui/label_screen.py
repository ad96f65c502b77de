"""Label: the canvas with its tool rail; owns the open sample and its label layer (layout: label_screen.kv).

The tool rail is built from the tool table (:data:`labelassist.ui.tools.TOOLS`): one button
per row, in its order, with its text and icon; the keyboard shortcuts are the table's too.

Two things propose a pre-label while a sample is open, both shown as the same unaccepted
pre-label ("Accept pre-label" takes either): the teach tool's strokes (``Session.teach`` on the
worker after each stroke, only the newest request waiting) and the instant learner's newer model
(``Session.learned_prelabel`` after a training round, applied only while the canvas is untouched).

Tap-to-segment and the magic wand propose one object at a time, shown as an outline with Add
and Discard; the flow is :class:`labelassist.ui.object_prompting.ObjectPrompting`.

While the U-Net trainer runs a round a small line says so; every :data:`IDLE_REPORT_S` s the
session hears how long the canvas has had no input (``Session.idle``, its idle rounds).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace

import numpy as np
from kivy.clock import Clock
from kivy.properties import AliasProperty, BooleanProperty, NumericProperty, ObjectProperty, StringProperty

from labelassist import kiosk_settings
from labelassist.label_layer import LabelLayer
from labelassist.session.save_flow import Step, SubmitMask
from labelassist.ui import theme, tools
from labelassist.ui.object_prompting import ObjectPrompting
from labelassist.ui.screens import KioskScreen, TrainerListening
from labelassist.ui.teach_strokes import TeachStrokes
from labelassist.ui.widgets import IconToggleButton
from labelassist.workflow import preprocess

log = logging.getLogger(__name__)

# The words beside "Accept pre-label" while the pre-label is the teach tool's proposal: it is this
# image's own, not the session's choice that Session.prelabel_words describes.
TAUGHT_WORDS = "Pre-label: learned from your strokes on this image"

#: Seconds between two reports of the canvas's idle time to the session (its idle training rounds).
IDLE_REPORT_S = 30.0


def round_progress_words(event: dict) -> str:
    """The small line while a U-Net training round runs (its progress lines); "" once it has ended."""
    stage = event.get("stage")
    if stage == "train" and event.get("steps"):
        return f"Learning from your labels... step {event.get('step', 0)} of {event['steps']}"
    doing = {"started": "starting", "read": "reading them", "export": "saving what it learned",
             "int8": "making it faster", "score": "checking it on your newest labels",
             "prompt": "teaching tap-to-segment your objects"}.get(stage)
    return f"Learning from your labels... {doing}" if doing else ""


def _if_alive(call) -> None:
    """Run a call scheduled for the next frame unless its widget went away meanwhile (the app
    closed or switched projects in between: Kivy's weak references then raise ReferenceError)."""
    try:
        call()
    except ReferenceError:
        log.debug("a scheduled view change was dropped: its screen is gone")


class LabelScreen(KioskScreen):
    """The canvas with its tool rail; owns the open sample and its label layer."""

    canvas_widget = ObjectProperty(None)
    tool = StringProperty(next(iter(tools.TOOLS)))  # the first tool of the table (the brush)
    brush_size = NumericProperty(8.0)
    overlay_opacity = NumericProperty(0.55)
    outline = BooleanProperty(False)
    show_raw = BooleanProperty(False)
    has_proposal = BooleanProperty(False)
    sample_title = StringProperty("")
    message = StringProperty("")
    # The error state is a property of its own (the smoke test and any caller read it); the
    # colour only shows it.
    message_is_error = BooleanProperty(False)
    message_is_warning = BooleanProperty(False)  # asks the user to do something first
    message_color = AliasProperty(
        lambda self: list(theme.ERROR_TEXT if self.message_is_error else
                          theme.WARN_TEXT if self.message_is_warning else theme.OK_TEXT),
        bind=["message_is_error", "message_is_warning"], cache=True)
    busy = BooleanProperty(False)
    # The teach tool: which class a stroke paints, and whether there are strokes to clear.
    teach_background = BooleanProperty(False)
    has_teach_strokes = BooleanProperty(False)
    # What the pre-label is and how well it matched the newest labels (Session.prelabel_words).
    prelabel_words = StringProperty("")
    # While the tablet's U-Net trainer runs a round: what it is doing ("" otherwise).
    training_words = StringProperty("")
    # Tap-to-segment and the wand: a proposed object waits for Add or Discard; whether a tap on
    # it says "not object" (ui/object_prompting.py).
    object_pending = BooleanProperty(False)
    object_negative = BooleanProperty(False)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.assisted = None
        self.layer: LabelLayer | None = None
        self.history: list[int] = []
        self._journal_future = None
        self._prelabel_journaled = True
        self._pending_view = None
        self._raw_display = None
        self._remember_trigger = Clock.create_trigger(self._remember_view, 0.5)
        self.teach_strokes: TeachStrokes | None = None
        self._teach_asked = 0  # the newest teach request (older answers are dropped)
        self._touched = True   # the open sample changed since it opened (no fresher pre-label then)
        self._last_input = time.monotonic()  # the last touch or edit on the canvas (idle rounds)
        self._idle_report = Clock.schedule_interval(self._report_idle, IDLE_REPORT_S)
        # the trainer's rounds, a small line while this screen shows
        self.trainer_listening = TrainerListening(self, self._round_event)
        self.prompting = ObjectPrompting(self)
        self.build_tool_rail()

    def build_tool_rail(self):
        """One button per row of the tool table, in its order (ids ``tool_<name>``); built again
        when the table changed."""
        rail = self.ids.tool_buttons
        for button in rail.children:
            self.ids.pop(f"tool_{button.tool_name}", None)
        rail.clear_widgets()
        for tool in tools.TOOLS.values():
            button = IconToggleButton(icon=tool.icon, text=tool.text, group="tool",
                                      state="down" if self.tool == tool.name else "normal")
            button.tool_name = tool.name
            button.bind(on_release=lambda _, name=tool.name: setattr(self, "tool", name))
            rail.add_widget(button)
            self.ids[f"tool_{tool.name}"] = button

    def _show_tool(self):
        rail = self.ids.get("tool_buttons")  # None while the kv rule is being applied
        for button in rail.children if rail is not None else ():
            button.state = "down" if button.tool_name == self.tool else "normal"

    def leave_project(self):
        """The project is about to close: the view waiting to be remembered is remembered now
        and the last stroke's journal write is waited for."""
        if self._remember_trigger.is_triggered:
            self._remember_trigger.cancel()
            self._remember_view()
        self.wait_for_journal()

    def project_changed(self):
        """Another project was opened: nothing of the old one stays on this screen."""
        self.assisted = None
        self.layer = None
        self.history = []
        self._pending_view = None
        self._raw_display = None
        self.has_proposal = False
        self.busy = False
        self.prompting.discard(quiet=True)
        self.sample_title = ""
        self.prelabel_words = ""
        self._drop_teach_strokes(None)
        self.say("")
        self.trainer_listening.stop()
        self.training_words = ""
        self._last_input = time.monotonic()
        if self.manager is not None and self.manager.current == self.name:
            self._listen()

    # opening samples
    def resume(self):
        """Continue where the last session stopped: same sample, same view, unsaved strokes."""
        app = self.app
        state = app.worker.call_now(app.session.resume_state)
        sample_id = state.get("sample_id")
        if sample_id is not None:
            self._pending_view = state
            self.tool = state["tool"] if state.get("tool") in tools.TOOLS else self.tool
            self.open_sample(int(sample_id), keep_view=True)
        else:
            self.next_sample()

    def open_sample(self, sample_id: int, keep_view: bool = False):
        app = self.app
        if app.root.current != "label":
            app.go("label")
        self.busy = True
        self.say("Opening...")
        if not keep_view:
            self._pending_view = None
        app.worker.submit(app.session.open, sample_id, on_done=self.app.show_opened, on_error=self._open_failed)

    def next_sample(self):
        self.busy = True
        self.say("Opening the next image...")
        self.app.worker.submit(self.app.session.next, on_done=self.app.show_opened, on_error=self._open_failed)

    def _open_failed(self, message):
        self.busy = False
        self.say(message, error=True)

    def show(self, assisted):
        """Put an opened sample on the canvas (UI thread); None: every sample is labelled (the
        app decides which screen shows then, ``LabelAssistApp.show_opened``)."""
        self.busy = False
        if assisted is None:
            self.say("Every image is labelled. Well done!")
            return
        self.prompting.discard(quiet=True)  # it was another sample's
        self.assisted = assisted
        self._raw_display = None
        prelabel = assisted.prelabel
        offer = (assisted.recovered is None and assisted.label is None and prelabel is not None
                 and not prelabel.is_placeholder)
        if offer:
            self.layer = LabelLayer(np.zeros(assisted.image.shape[:2], bool))
        else:
            self.layer = LabelLayer(assisted.start_mask)
        canvas = self.canvas_widget
        canvas.set_image(self._raw() if self.show_raw else assisted.display)
        canvas.set_layer(self.layer, proposal=prelabel.mask if offer else None)
        self.has_proposal = offer
        self._drop_teach_strokes(assisted.image.shape[:2])
        self._touched = assisted.recovered is not None or assisted.label is not None
        sample = assisted.sample
        if not self.history or self.history[-1] != sample.id:
            self.history.append(sample.id)
        self.sample_title = f"{sample.name}  ({sample.width}x{sample.height})"
        if assisted.recovered is not None:
            self.say("Your unsaved strokes were restored.")
        elif offer:
            self.say(f"Pre-label ready ({prelabel.method}): tap 'Accept pre-label' or draw.")
        elif assisted.label is not None:
            self.say("Labelled before: you are editing the saved label.")
        else:
            self.say(prelabel.note if prelabel is not None and prelabel.note else "Draw the objects.")
        view = self._pending_view
        self._pending_view = None
        if view and view.get("sample_id") == sample.id and view.get("zoom"):
            Clock.schedule_once(lambda dt: _if_alive(lambda: canvas.set_view(view["zoom"], view.get("center", (0, 0)))))
        else:
            Clock.schedule_once(lambda dt: _if_alive(lambda: canvas.fit()))
        self.app.worker.remember(sample_id=sample.id, screen="label")
        self.refresh_prelabel_words()
        if self.tool == "teach":
            self._prepare_teach()

    # the tablet's U-Net training: a small line while a round runs, and the canvas's idle time
    def on_enter(self, *_):
        self._listen()

    def on_leave(self, *_):
        self.trainer_listening.stop()

    def canvas_input(self):
        """A touch or an edit on the canvas: the tablet is in use (no idle round now)."""
        self._last_input = time.monotonic()

    def _report_idle(self, *_):
        # Session.idle on the worker; a report still waiting is replaced (never a queue of them)
        if self._can_remember() and self.app.session is not None:
            self.app.worker.submit(self.app.session.idle, time.monotonic() - self._last_input, key="idle")

    def _listen(self):
        trainer = self.trainer_listening.start()
        if trainer is not None:
            running = trainer.progress or {"stage": "started"}  # a round already running when the screen opens
            self.training_words = round_progress_words(running) if trainer.running else ""

    def _round_event(self, trainer, event: dict):
        self.training_words = round_progress_words(event)
        if event.get("stage") == "end":
            self.refresh_prelabel_words()  # an installed model changes what the pre-label is

    def _raw(self):
        if self._raw_display is None and self.assisted is not None:
            self._raw_display = preprocess.to_uint8(self.assisted.image)
        return self._raw_display

    def on_show_raw(self, *_):
        if self.assisted is not None:
            self.canvas_widget.set_image(self._raw() if self.show_raw else self.assisted.display)

    def _can_remember(self) -> bool:
        app = self.app
        return app is not None and app.worker is not None and not app.worker.closed

    def on_tool(self, *_):
        self._show_tool()
        self.prompting.discard(quiet=True)
        if self._can_remember():
            self.app.worker.remember(tool=self.tool)
            if self.tool == "teach":
                self._prepare_teach()

    def view_changed(self):
        if self._can_remember():
            self._remember_trigger()

    def _remember_view(self, *_):
        # a fit or zoom scheduled just before the app stopped must not reach a closed worker
        if self.assisted is None or not self._can_remember():
            return
        c = self.canvas_widget
        self.app.worker.remember(sample_id=self.assisted.sample.id, zoom=c.scale,
                                 center=[float(v) for v in c.view_center()])

    def say(self, text: str, error: bool = False, warning: bool = False):
        self.message = text
        self.message_is_error = bool(error)
        self.message_is_warning = bool(warning) and not error

    # edits: each finished edit is journalled before the next one starts
    def wait_for_journal(self, timeout: float = 5.0) -> bool:
        """Wait for the previous edit's journal write (at most ``timeout`` seconds); True when it is on disk.

        A write still running after ``timeout`` (a very slow or failing disk) is logged and
        the user is told: it stays queued, the worker's FIFO order still puts it before the
        next edit's write and any save, and if it then fails the worker's ``on_error`` says
        so too. A failed write was reported by the worker already (``on_error``).
        """
        future, self._journal_future = self._journal_future, None
        if future is None:
            return True
        try:
            future.result(timeout=timeout)
        except TimeoutError:  # concurrent.futures.TimeoutError is this class since Python 3.11
            log.warning("the last edit's journal write was not done after %.1f s; it stays queued", timeout)
            self.say("The tablet is slow to store your strokes: the last one is still being written. "
                     "Keep the app open.", error=True)
            return False
        except Exception:  # noqa: BLE001 - the worker's on_error already told the user and logged it
            return False
        return True

    def on_canvas_edit(self, edit):
        self._touched = True
        self.canvas_input()
        self.journal(edit.kind, edit.indices(), edit.pixel_values())
        if edit.kind == "prelabel":
            self.has_proposal = False

    def journal(self, kind, indices, values):
        if self.assisted is None:
            return
        self.wait_for_journal()
        self._journal_future = self.app.worker.journal(
            self.assisted.sample.id, kind, indices, values,
            on_error=lambda m: self.say("The last stroke could not be stored: " + m, error=True))

    def undo(self):
        if self.layer is None or self.busy:
            return
        change = self.layer.undo()
        self.canvas_widget.refresh_overlay()
        if change is not None:
            self.journal("undo", change.indices(), change.pixel_values())
            if change.kind == "prelabel" and self.assisted is not None and self.assisted.prelabel is not None:
                self.canvas_widget.set_proposal(self.assisted.prelabel.mask)
                self.has_proposal = True

    def redo(self):
        if self.layer is None or self.busy:
            return
        change = self.layer.redo()
        self.canvas_widget.refresh_overlay()
        if change is not None:
            self.journal("redo", change.indices(), change.pixel_values())
            if change.kind == "prelabel":
                self.canvas_widget.set_proposal(None)
                self.has_proposal = False

    def accept_prelabel(self):
        if not self.has_proposal or self.assisted is None or self.busy:
            return
        proposal = self.assisted.prelabel.mask
        self.canvas_widget.set_proposal(None)
        self.has_proposal = False
        self.canvas_widget.apply_edit("prelabel", lambda layer: layer.set_mask(proposal))
        self.say("Pre-label accepted: correct it, then Save & next.")

    def clear(self):
        if self.layer is not None and not self.busy:
            self.canvas_widget.apply_edit("clear", lambda layer: layer.set_mask(np.zeros_like(layer.mask)))

    def previous(self):
        if self.busy:  # Save & next runs for this sample: it opens the next one itself
            return
        if len(self.history) >= 2:
            self.history.pop()
            self.open_sample(self.history.pop())

    def close_polygon(self):
        self.canvas_widget.close_polygon()

    # teach: strokes of object and background -> a proposal for the whole image
    def _drop_teach_strokes(self, shape):
        """New strokes for an image of ``shape`` (None: none); answers still coming are dropped."""
        self.teach_strokes = TeachStrokes(shape) if shape is not None else None
        self._teach_asked += 1
        self.has_teach_strokes = False
        if self.canvas_widget is not None:
            self.canvas_widget.set_teach_strokes(self.teach_strokes)

    def _prepare_teach(self):
        if self.assisted is not None and self._can_remember():
            self.app.worker.submit(self.app.session.prepare_teach, self.assisted.sample.id,
                                   on_error=lambda m: log.info("teach features not prepared: %s", m))

    def teach_stroke_ended(self):
        """A teach stroke ended: ask for a proposal from all the strokes so far (on the worker;
        a request still waiting is replaced, so only the newest runs after the one under way)."""
        strokes = self.teach_strokes
        if self.assisted is None or strokes is None or self.busy:
            return
        self._touched = True
        self.has_teach_strokes = not strokes.empty
        if not strokes.has_background:
            self.say("Paint some background too: tap 'Background', then paint where there is no object.",
                     warning=True)
            return
        if not strokes.has_object:
            self.say("Paint some object too: tap 'Object', then paint on the objects.", warning=True)
            return
        self._teach_asked += 1
        asked, sample_id = self._teach_asked, self.assisted.sample.id
        self.say("Learning from your strokes...")
        self.app.worker.submit(self.app.session.teach, sample_id, strokes.object.copy(), strokes.background.copy(),
                               key="teach", on_done=lambda p: self._show_proposal(asked, sample_id, p),
                               on_error=lambda m: self._teach_failed(asked, m))

    def _show_proposal(self, asked: int, sample_id: int, prelabel):
        # Not for strokes cleared or replaced meanwhile, nor on a mask being saved or another sample.
        if asked != self._teach_asked or self.busy or self.assisted is None or self.assisted.sample.id != sample_id:
            return
        self._offer(prelabel)
        self.prelabel_words = TAUGHT_WORDS
        self.say("Proposal from your strokes: accept it, or add strokes where it is wrong.")

    def _teach_failed(self, asked: int, message: str):
        if asked == self._teach_asked:
            self.say(message[:1].upper() + message[1:], warning=True)

    def _offer(self, prelabel):
        """Show ``prelabel`` as the unaccepted pre-label of the open sample; the session starts from it."""
        self.assisted = replace(self.assisted, prelabel=prelabel)
        self.canvas_widget.set_proposal(prelabel.mask)
        self.has_proposal = True
        self.app.worker.submit(self.app.session.use_prelabel, self.assisted.sample.id, prelabel)

    def clear_teach_strokes(self):
        """Clear strokes: the teach strokes go; the proposal shown stays (a pre-label like any other)."""
        if self.teach_strokes is None or self.busy:
            return
        self._drop_teach_strokes(self.teach_strokes.shape)
        self.say("Strokes cleared: paint object and background to teach again.")

    # the instant learner: a newer model, in plain words and as a fresher pre-label
    def refresh_prelabel_words(self):
        if self._can_remember():
            self.app.worker.submit(self.app.session.prelabel_words, key="prelabel_words", on_done=self._show_words)

    def _show_words(self, words: str):
        shown = self.assisted.prelabel if self.assisted is not None else None
        self.prelabel_words = TAUGHT_WORDS if shown is not None and shown.method == "scribbles" else words

    def learner_trained(self):
        """The learner finished a round (UI thread): new words, and on an untouched canvas a fresher pre-label."""
        self.refresh_prelabel_words()
        if self.assisted is None or self.busy or self._touched or not self._can_remember():
            return
        sample_id = self.assisted.sample.id
        self.app.worker.submit(self.app.session.learned_prelabel, sample_id, key="learned_prelabel",
                               on_done=lambda p: self._fresher_prelabel(sample_id, p),
                               on_error=lambda m: log.info("no fresher pre-label: %s", m))

    def _fresher_prelabel(self, sample_id: int, prelabel):
        # Only where nothing was drawn or taught since the sample opened: never over the user's work.
        if prelabel is None or self.busy or self._touched or self.assisted is None \
                or self.assisted.sample.id != sample_id:
            return
        self._offer(prelabel)
        count = re.search(r"(\d+) of your labels", prelabel.note or "")
        self.say(f"Pre-label updated: learned from {count.group(1)} of your labels." if count
                 else "Pre-label updated: learned from your newest labels.")

    # save & next: this screen sends the mask and renders what the flow says (App.show_review)
    def save_and_next(self):
        if self.assisted is None or self.busy:
            return
        if self.object_pending:  # an outlined object is not in the mask: never lose it silently
            self.say("Add or Discard the outlined object first, then Save & next.", warning=True)
            return
        self.wait_for_journal()
        self.prompting.discard(quiet=True)  # an answer still coming: never offered on the next image
        self.busy = True
        self.say("Checking the label...")
        self.canvas_widget.set_highlight(None)
        self.app.review(SubmitMask(self.assisted.sample.id, self.layer.mask.copy(), self.layer.strokes))

    def render_review(self, review):
        """The flow's state on the canvas: the accepted suggestions in the mask (one edit,
        journalled), the regions to fix, or what went wrong. SAVED is shown by :meth:`show`."""
        if self.assisted is None or self.assisted.sample.id != review.sample_id:
            return
        if review.step in (Step.WARNING, Step.FIX, Step.SAVE_FAILED, Step.OPEN_FAILED):
            # Only the pixels the accepted suggestions changed: a stroke drawn while the flow ran stays.
            suggested = review.mask != review.before
            mask = np.where(suggested, review.mask, self.layer.mask)
            if not np.array_equal(mask, self.layer.mask):
                self.canvas_widget.apply_edit("suggestion", lambda layer: layer.set_mask(mask))
        if review.step is Step.WARNING:
            self.busy = False
        elif review.step is Step.FIX:
            self.busy = False
            self.canvas_widget.set_highlight(review.highlight)
            self.say("Fix the highlighted parts, then Save & next." if review.highlight.any()
                     else "Look at the label again, then Save & next.")
        elif review.step is Step.SAVE_FAILED:
            self.busy = False
            self.say("The label was NOT saved: " + review.error, error=True)
        elif review.step is Step.OPEN_FAILED:
            self._open_failed(review.error)

    def review_failed(self, message):
        self._open_failed(message)

    # keyboard
    def handle_key(self, key: str, modifiers) -> bool:
        if key in tools.TOOL_KEYS:
            self.tool = tools.TOOL_KEYS[key]
        elif key == "z" and "shift" in modifiers or key == "y":
            self.redo()
        elif key == "z":
            self.undo()
        elif key == "a":
            self.accept_prelabel()
        elif key == "x":  # swap what the teach tool paints, as painting programs swap colours
            self.teach_background = not self.teach_background
        elif key == "o":
            self.outline = not self.outline
        elif key == "r":
            self.show_raw = not self.show_raw
        elif key in ("[", "-"):
            self.brush_size = max(1, self.brush_size - 2)
        elif key in ("]", "+", "="):
            self.brush_size = min(80, self.brush_size + 2)
        elif key in ("enter", "spacebar"):
            if self.tool == "polygon" and self.canvas_widget.polygon:
                self.close_polygon()
            elif self.object_pending:  # Add first: Save & next would discard the proposal
                self.prompting.add()
            else:
                self.save_and_next()
        elif key == "backspace":
            self.previous()
        elif key == "0":
            self.canvas_widget.fit()
        elif key == "c":
            self.clear()
        elif key == "q":
            self.go_queue()
        elif key == "h":
            self.go_home()
        else:
            return False
        return True

    def go_home(self):
        self.app.go("home")

    def stop(self):
        """The app is closing: no more delayed writes."""
        self._remember_trigger.cancel()
        self._idle_report.cancel()
        self.trainer_listening.stop()

    def go_queue(self):
        if kiosk_settings.is_locked("queue", self.app.home):
            self.say("The queue is locked on this tablet.", error=True)
            return
        self.app.go("queue")


__all__ = ["LabelScreen"]
