"""Admin: behind the PIN, the project's settings, models, export and leaving the kiosk
(layout: admin_screen.kv; the PIN back-off: :mod:`labelassist.ui.pin_policy`).

The Models section lists the project's model history (newest first, the one in use marked),
switches to an earlier model or to none (``Session.roll_back``), and shows the tablet's U-Net
training live (``SessionTrainer.words``, heard through its listeners) with Pause / Resume and the
last rounds. Every session call runs on the worker; the trainer's events arrive on its own
thread and are carried to the Kivy thread before anything on screen changes.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from pathlib import Path

from kivy.clock import Clock
from kivy.factory import Factory
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, StringProperty

from labelassist import eval_tables, kiosk_settings
from labelassist.ui.pin_policy import PinBackoff
from labelassist.ui.screens import KioskScreen, TrainerListening

log = logging.getLogger(__name__)


PIPELINE_PRESETS = {
    "Normalised": [{"step": "percentile_normalise", "low": 0.5, "high": 99.5}],
    "Contrast (CLAHE)": [{"step": "percentile_normalise", "low": 0.5, "high": 99.5}, {"step": "clahe"}],
    "Raw": [],
}


BOX_METHOD_NAMES = {"auto": "Automatic", "box_model": "LiteMedSAM model", "grabcut": "GrabCut"}


def plain_box_words(text: str) -> str:
    """The session's reasons name the methods by their setting: say them as the buttons do."""
    return text.replace("box_model", BOX_METHOD_NAMES["box_model"]).replace("grabcut", BOX_METHOD_NAMES["grabcut"])


def box_table(evaluation) -> str:
    """A BoxEvaluation as the Admin screen's small table, the methods named as the buttons name them."""
    return eval_tables.box_table(evaluation, detailed=False, name=lambda m: BOX_METHOD_NAMES.get(m, m))


def prompt_model_words(entry) -> str:
    """What tap-to-segment's model is, in plain words: LiteMedSAM as shipped, or as a training round
    adapted it to this project (``entry``, a history entry of ``models/prompt/``)."""
    if entry is None:
        return ("Tap-to-segment model: LiteMedSAM as shipped. Once you have used tap-to-segment, the "
                "training rounds teach it your objects.")
    return (f"Tap-to-segment model: LiteMedSAM taught your objects on this tablet ({entry.version}): "
            f"{entry.reason.removeprefix('tap-to-segment learned your objects: ')}.")


#: How many past training rounds the Models section lists, newest first.
ROUNDS_SHOWN = 5


def when_words(iso: str, today: datetime | None = None) -> str:
    """An ISO time (UTC) in the tablet's local time, plainly: "today at 15:20", "3 Nov 2026 at 09:05"."""
    try:
        at = datetime.fromisoformat(str(iso)).astimezone()
    except ValueError:
        return ""
    today = today or datetime.now().astimezone()
    day = "today" if at.date() == today.date() else f"{at.day} {at:%b %Y}"
    return f"{day} at {at:%H:%M}"


def _percent(value: float | None) -> str:
    return f"{round(100 * value)} %" if value is not None else ""


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) or not text else ".")


def _as_measured(reason: str) -> str:
    """A decision's reason told later: what it matched when it was measured."""
    return reason.replace(" matches ", " matched ").replace("the pre-label used until now at",
                                                             "the pre-label before it at")


def model_words(entry) -> tuple[str, str]:
    """One model of the history in plain words: (what it is, where it came from, when, and how well
    it matched). ``entry`` is a :class:`~labelassist.models.history.HistoryEntry`."""
    when = when_words(entry.installed_at)
    when = f", {when}" if when else ""
    if entry.source == "tablet":
        number = entry.version.rsplit(".", 1)[-1] if entry.version.startswith("tablet.") else ""
        title = f"Learned on this tablet (round {number})" if number.isdigit() else "Learned on this tablet"
        origin = f"From {entry.trained_on} of your labels{when}."
        # its reason says how it matched your newest labels against the pre-label used before it
        match = _as_measured(entry.reason) if "match" in entry.reason else \
            (f"it matched your newest labels at {_percent(entry.held_out_dsc)}" if entry.held_out_dsc is not None
             else "")
    else:
        title = f"{entry.name} ({entry.version})" if entry.version else entry.name
        origin = _sentence((entry.reason or entry.source) + when)  # "Imported from scratch.onnx, today at 15:20."
        match = (f"it matched its makers' test images at {_percent(entry.held_out_dsc)}"
                 if entry.held_out_dsc is not None else "")
    return title, origin + (" " + _sentence(match) if match else "")


def round_words(details: dict) -> str:
    """One past training round (a ``training_round`` event's details) in one plain line, e.g.
    "Today at 15:20, from 20 labels: kept the current pre-label (it matches ... at 95 %, the new
    model at 90 %)"."""
    status = details.get("status", "")
    reason = re.sub(r";? its log is \S+| \(exit code -?\d+\)", "", str(details.get("reason", ""))).strip()
    reason = _as_measured(re.sub(r"^(the current pre-label stays|kept the current pre-label|stopped):\s*", "",
                                 reason))
    what = {"installed": "installed a new model", "kept": "kept the current pre-label",
            "failed": "training failed", "stopped": "training stopped"}.get(status, "training ended")
    when = when_words(details["at"]) if details.get("at") else ""
    head = ", ".join(p for p in (when, f"from {details['labelled']} labels" if details.get("labelled") else "") if p)
    line = f"{head}: {what}" if head else what
    line = f"{line} ({reason})" if reason else line
    return line[:1].upper() + line[1:]


class AdminScreen(KioskScreen):
    unlocked = BooleanProperty(False)
    keypad_for_new_pin = BooleanProperty(False)
    entered = StringProperty("")
    message = StringProperty("")
    pin_warning = StringProperty("")
    pipeline_text = StringProperty("")
    prelabel_text = StringProperty("")
    evaluation_table = StringProperty("")
    gamma0 = NumericProperty(0.75)
    segments_text = StringProperty("any")
    models_text = StringProperty("")
    # the Models section: the history newest first ({entry_id, title, words, in_use}; entry_id None
    # is "No model"), one plain line when it could not be read, and the tablet's training
    model_rows = ListProperty([])
    models_note = StringProperty("")
    training_words = StringProperty("")
    training_available = BooleanProperty(True)
    training_paused = BooleanProperty(False)
    rounds_text = StringProperty("")
    plugins_text = StringProperty("")  # plug-ins that were skipped, and why ("" when none)
    # tap-to-segment with a box: what a drawn box runs (prelabel.box_method), and why
    box_method = StringProperty("auto")
    box_choice_text = StringProperty("")
    box_model_installed = BooleanProperty(True)
    box_note = StringProperty("")
    box_table = StringProperty("")
    # the LiteMedSAM decoder adapted to this project by a training round, when one is in use
    prompt_model_text = StringProperty("")
    prompt_model_adapted = BooleanProperty(False)

    def project_changed(self):
        """Another project was opened: the figures shown were the old project's."""
        self.evaluation_table = ""
        self.box_choice_text = self.box_note = self.box_table = self.prompt_model_text = ""
        self.prompt_model_adapted = False
        self._box_poll.cancel()
        self.trainer_listening.stop()
        self.model_rows, self.models_note, self.training_words, self.rounds_text = [], "", "", ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pin_backoff = PinBackoff()
        # while a measurement of the box methods runs in the background, look again now and then
        self._box_poll = Clock.create_trigger(lambda dt: self.refresh_box_choice(), 2.0)
        # the trainer's rounds, shown live while this screen is open
        self.trainer_listening = TrainerListening(self, self._trainer_event)

    def on_pre_enter(self, *_):
        self.entered = ""
        self.message = "Enter the admin PIN to change settings or leave the kiosk."
        if self.unlocked:
            self.refresh()

    def key(self, text):
        if text == "Del":
            self.entered = self.entered[:-1]
        elif text == "OK":
            if self.unlocked:
                self.new_pin_entered(self.entered)
            else:
                self.try_unlock(self.entered)
        elif len(self.entered) < kiosk_settings.PIN_MAX_DIGITS:
            self.entered += text

    def change_pin(self):
        """Show the keypad to type a new PIN twice (the keypad page, while unlocked)."""
        self._new_pin = None
        self.entered = ""
        self.keypad_for_new_pin = True
        self.message = f"Type the new PIN ({kiosk_settings.PIN_MIN_DIGITS} to {kiosk_settings.PIN_MAX_DIGITS} digits), then OK."

    def new_pin_entered(self, pin: str) -> None:
        self.entered = ""
        if not kiosk_settings.valid_pin(pin):
            self.message = f"A PIN is {kiosk_settings.PIN_MIN_DIGITS} to {kiosk_settings.PIN_MAX_DIGITS} digits. Type the new PIN again."
            return
        if self._new_pin is None:
            self._new_pin = pin
            self.message = "Type the same new PIN once more, then OK."
            return
        if pin != self._new_pin:
            self._new_pin = None
            self.message = "The two PINs differ. Type the new PIN again."
            return
        try:
            kiosk_settings.set_pin(pin, self.app.home)
        except kiosk_settings.SettingsError as exc:  # e.g. kiosk.toml cannot be read: it is left as it is
            self._new_pin = None
            self.message = f"The PIN was not changed: {exc}"
            return
        self.keypad_for_new_pin = False
        self.message = "The new admin PIN is saved."
        self.refresh()

    # The back-off after wrong PINs (pin_policy); the clock is an attribute so that tests can move it.
    MAX_WAIT_S = PinBackoff.MAX_WAIT_S
    _clock = staticmethod(time.monotonic)

    def try_unlock(self, pin: str) -> bool:
        self.entered = ""
        now = self._clock()
        wait = self._pin_backoff.wait_left(now)
        if wait > 0:
            self.message = f"Too many wrong PINs: wait {wait:.0f} seconds, then try again."
            return False
        if kiosk_settings.check_pin(pin, self.app.home):
            self._pin_backoff.right_pin()
            self.unlocked = True
            self.message = "Admin settings. Changes are saved at once and logged."
            self.refresh()
            return True
        wait = self._pin_backoff.wrong_pin(now)
        log.warning("wrong admin PIN (%d in a row)", self._pin_backoff.wrong)
        if wait > 0:
            self.message = f"Wrong PIN. Too many wrong PINs: wait {wait:.0f} seconds, then try again."
        else:
            self.message = "Wrong PIN. Try again."
        return False

    def on_leave(self, *_):
        self._box_poll.cancel()
        self.trainer_listening.stop()

    def lock_and_leave(self):
        self.unlocked = False
        self.keypad_for_new_pin = False
        self.app.go("home")

    def refresh(self):
        app = self.app
        session = app.session
        settings = app.worker.call_now(lambda: session.settings)
        self.pin_warning = ("The admin PIN is still the first-run PIN 0000: set your own with "
                            "'Change the PIN' below." if kiosk_settings.pin_is_default(app.home) else "")
        pipeline = settings["preprocess"]["pipeline"]
        self.pipeline_text = " > ".join(s["step"].replace("_", " ") for s in pipeline) or "none (raw)"
        self.prelabel_text = settings["prelabel"]["method"]
        self.box_method = settings["prelabel"]["box_method"]
        self.property("box_method").dispatch(self)  # the three buttons show the setting again
        self.gamma0 = float(settings["inspection"]["gamma0"])
        segments = settings["priors"].get("segments")
        self.segments_text = "any" if segments is None else str(segments)
        errors = app.worker.call_now(lambda: dict(session.plugin_errors))
        self.plugins_text = ("Plug-ins not loaded: " + "; ".join(f"{name} ({why})" for name, why in
                                                                sorted(errors.items()))) if errors else ""
        self._fill_choices()
        self.refresh_box_choice()
        self.refresh_models()
        self.trainer_listening.start()

    # tap-to-segment with a box
    def refresh_box_choice(self):
        """What a drawn box runs and why, asked on the worker: finding the box-prompt model loads
        it, and with "Automatic" a due measurement is started there (never on this thread)."""
        app = self.app
        if app is None or app.session is None or app.worker is None or app.worker.closed:
            return
        session = app.session

        def work():
            installed = session.box_segmenter() is not None
            return installed, session.box_choice(wait=False), session.boxes.prompt_entry()

        app.worker.submit(work, on_done=self._show_box_choice,
                          on_error=lambda m: setattr(self, "box_choice_text", "Tap-to-segment with a box: " + m))

    def _show_box_choice(self, result):
        installed, choice, adapted = result
        self.box_model_installed = installed
        self.prompt_model_adapted = adapted is not None
        self.prompt_model_text = "" if not installed else prompt_model_words(adapted)
        self.box_choice_text = (f"Tap-to-segment with a box: {BOX_METHOD_NAMES.get(choice.method, choice.method)} "
                                f"({plain_box_words(choice.reason)})")
        self.box_note = ("" if installed else
                         "No box-prompt model (LiteMedSAM) is installed on this tablet: a box drawn with "
                         "'Tap to segment' is cut out with GrabCut.")
        if choice.evaluation is not None:
            self.box_table = box_table(choice.evaluation)
        if choice.reason.startswith("measuring") and self.unlocked and self.manager is not None \
                and self.manager.current == self.name:
            self._box_poll()

    def use_shipped_prompt_model(self):
        """Back to LiteMedSAM as shipped (the adapted decoders stay in the project's history)."""
        self.message = "Switching tap-to-segment back to LiteMedSAM as shipped..."

        def done(_):
            self.message = "Tap-to-segment uses LiteMedSAM as shipped now. It is measured again."
            self.refresh_box_choice()

        self.app.worker.submit(self.app.session.prompt_models.roll_back, None, on_done=done,
                               on_error=lambda m: setattr(self, "message", "Tap-to-segment was not switched: " + m))

    def set_box_method(self, method: str):
        """Automatic / LiteMedSAM model / GrabCut: written to the project's settings (logged)."""
        if method == self.box_method:
            return
        self._change_settings(lambda s: s["prelabel"].__setitem__("box_method", method), "Tap-to-segment method")

    def evaluate_box_prompts(self):
        """The box-prompt model against GrabCut on the objects of the newest labels (on the worker)."""
        self.box_table = "Measuring... (this can take a minute)"

        def failed(message):
            self.box_table = message[:1].upper() + message[1:]

        self.app.worker.submit(self.app.session.evaluate_box_prompts,
                               on_done=lambda e: setattr(self, "box_table", box_table(e)), on_error=failed)

    # the Models section: the history, roll back, and the tablet's training
    def refresh_models(self):
        """The model history, the model in use and the trainer's rounds, read on the worker."""
        app = self.app
        if app is None or app.session is None or app.worker is None or app.worker.closed:
            return
        session = app.session

        def work():
            trainer = session.trainer
            entries = list(reversed(session.model_history()))
            current = session.current_model_entry()
            model = session.model()  # the one in use, loaded: a model that no longer loads reads as none
            rounds = trainer.rounds()
            last = trainer.last_outcome  # its event is written with the next save: not in rounds() yet
            if last and all(r.get("round") != last.get("round") for r in rounds):
                rounds.insert(0, last)
            return {"entries": entries, "current": None if current is None else current.id, "model": model,
                    "rounds": rounds[:ROUNDS_SHOWN], "words": trainer.words(), "available": trainer.available,
                    "paused": trainer.paused}

        app.worker.submit(work, key="admin_models", on_done=self._show_models, on_error=self._models_failed)

    def _models_failed(self, message: str):
        # the worker logged the details; the screen says one plain line
        self.models_note = "The list of models could not be read: " + message

    def _show_models(self, state):
        rows = [dict(entry_id=e.id, title=title, words=words, in_use=e.id == state["current"])
                for e in state["entries"] for title, words in [model_words(e)]]
        self.models_note = ""
        model, in_use = state["model"], [r["title"] for r in rows if r["in_use"]]
        self.models_text = ("none" if model is None and not in_use else
                            "none: the model chosen could not be loaded (the log says why)" if model is None else
                            in_use[0] if in_use else f"{model.card.name} ({model.card.version})")
        rows.append(dict(entry_id=None, title="No model", in_use=state["current"] is None,
                         words="The pre-label comes from the other methods: a brightness threshold, the "
                               "shipped models, or what the tablet learned from your labels."))
        self.model_rows = rows
        box = self.ids.model_history
        box.clear_widgets()
        for row in rows:
            widget = Factory.ModelRow()
            for key, value in row.items():
                setattr(widget, key, value)
            if row["entry_id"] is None:
                widget.button_text = "Use no model"
            box.add_widget(widget)
        self.training_words = state["words"]
        self.training_available = state["available"]
        self.training_paused = state["paused"]
        lines = [round_words(r) for r in state["rounds"]]
        self.rounds_text = ("Last training rounds, newest first:\n" + "\n".join(lines)) if lines else ""

    def use_model(self, entry_id: int | None):
        """"Use this one" (an earlier model of the history) or "Use no model": one atomic switch."""
        row = next((r for r in self.model_rows if r["entry_id"] == entry_id), None)
        name = "no model" if entry_id is None else (row["title"] if row else f"model {entry_id}")
        self.message = f"Switching to {name}..."

        def done(_):
            self.message = (f"Now using {name}. The pre-labels are measured again with it." if entry_id is not None
                            else "No model is used now. The pre-labels are measured again without one.")
            self.refresh_models()

        def failed(message):
            self.message = f"The model was not switched: {message}"
            self.refresh_models()

        self.app.worker.submit(self.app.session.roll_back, entry_id, on_done=done, on_error=failed)

    def pause_training(self):
        """Pause: the running round stops and no other starts (``prelabel.train`` off, logged)."""
        self._training_switch(lambda t: t.pause(), "Training is paused: it stays paused until you resume it.")

    def resume_training(self):
        self._training_switch(lambda t: t.resume(), "Training will start again when it is due.")

    def _training_switch(self, change, said: str):
        trainer = self.app.session.trainer

        def done(_):
            self.message = said
            self.refresh_models()

        self.app.worker.submit(change, trainer, on_done=done,
                               on_error=lambda m: setattr(self, "message", "Training was not changed: " + m))

    def _trainer_event(self, trainer, event: dict):
        """A round started, progressed or ended (Kivy thread): its words now; at the start and the
        end the history and the rounds again (an installed model is a new row)."""
        self.training_words = trainer.words()  # attributes only: no store, no waiting
        if event.get("stage") in ("started", "end"):
            self.refresh_models()

    def _fill_choices(self):
        button = Factory.BigButton
        toggle = Factory.ToolButton
        settings = self.app.session.settings
        registry = self.app.session.registry  # the project's plug-ins too
        box = self.ids.pipelines
        box.clear_widgets()
        for name, pipeline in PIPELINE_PRESETS.items():
            b = toggle(text=name, allow_no_selection=True,
                       state="down" if settings["preprocess"]["pipeline"] == pipeline else "normal")
            b.bind(on_release=lambda _, p=pipeline: self.set_pipeline(p))
            box.add_widget(b)
        box = self.ids.prelabel_methods
        box.clear_widgets()
        for method in ["auto", "none"] + [m for m in ("otsu", "previous", "onnx") if m in registry.names("prelabel")]:
            b = toggle(text=method, allow_no_selection=True,
                       state="down" if settings["prelabel"]["method"] == method else "normal")
            b.bind(on_release=lambda _, m=method: self.set_prelabel(m))
            box.add_widget(b)
        box = self.ids.postprocess_steps
        box.clear_widgets()
        chosen = {c["step"] for c in settings["postprocess"]["suggest"]}
        for step in registry.names("postprocess"):
            b = toggle(text=step.replace("_", " "), allow_no_selection=True,
                       state="down" if step in chosen else "normal", font_size="18sp")
            b.bind(on_release=lambda w, s=step: self.toggle_postprocess(s, w.state == "down"))
            box.add_widget(b)
        box = self.ids.model_files
        box.clear_widgets()
        offered = [p for folder in kiosk_settings.export_destinations(self.app.home)
                   for p in sorted(folder.glob("*.onnx"))][:3]
        if not offered:
            box.add_widget(Factory.Body(text="To install a model, plug in a USB drive with the .onnx file "
                                             "and its .json card at the top level."))
        for path in offered:
            b = button(text=f"Install {path.name}", font_size="18sp")
            b.bind(on_release=lambda _, p=path: self.import_model(p))
            box.add_widget(b)
        box = self.ids.export_targets
        box.clear_widgets()
        folders = kiosk_settings.export_destinations(self.app.home)  # only where kiosk.toml allows
        if not folders:
            box.add_widget(Factory.Body(text="No USB drive found. Plug one in and open this page again."))
        for folder in folders:
            b = button(text=f"Export to {folder}", font_size="18sp")
            b.bind(on_release=lambda _, f=folder: self.export_to(f))
            box.add_widget(b)

    def _change_settings(self, change, what):
        session = self.app.session

        def failed(message):
            self.app.show_error(message)
            self.refresh()  # the choices show the settings as they are

        self.app.worker.submit(session.update_settings, change,
                               on_done=lambda _: (self.refresh(), setattr(self, "message", what + " saved.")),
                               on_error=failed)

    def set_gamma0(self, value):
        self._change_settings(lambda s: s["inspection"].__setitem__("gamma0", round(float(value), 2)),
                              "Warning level")

    def change_segments(self, delta):
        def change(s):
            current = s["priors"].get("segments")
            if delta is None:
                s["priors"]["segments"] = None
            else:
                s["priors"]["segments"] = max(0, (current if current is not None else 0) + delta)
        self._change_settings(change, "Expected segments")

    def set_prelabel(self, method):
        self._change_settings(lambda s: s["prelabel"].__setitem__("method", method), "Pre-label method")

    def toggle_postprocess(self, step, on):
        def change(s):
            kept = [c for c in s["postprocess"]["suggest"] if c["step"] != step]
            if on:
                kept.append({"step": step})
            s["postprocess"]["suggest"] = kept
        self._change_settings(change, "Post-processing")

    def set_pipeline(self, pipeline):
        session = self.app.session
        self.app.worker.submit(session.set_pipeline, [dict(p) for p in pipeline], confirm=True,
                               on_done=lambda _: (self.refresh(), setattr(self, "message", "Pre-processing saved.")),
                               on_error=self.app.show_error)

    def evaluate_prelabels(self):
        self.evaluation_table = "Measuring... (this can take a minute)"

        def done(evaluation):
            self.evaluation_table = eval_tables.prelabel_table(evaluation, detailed=False)

        self.app.worker.submit(self.app.session.evaluate_prelabels, on_done=done,
                               on_error=lambda m: setattr(self, "evaluation_table", m))

    def import_model(self, path: Path):
        """Check the model against its card and install it; a model that does not fit is refused."""
        self.message = f"Checking {path.name}..."

        def done(report):
            self.message = f"Installed: {report.message}"
            self.refresh()

        self.app.worker.submit(self.app.session.import_model, path, on_done=done, on_error=self.app.show_error)

    def export_to(self, folder: Path):
        from labelassist.export import export_png

        target = folder / f"labelassist-{self.app.session.project.name}".replace(" ", "_").replace(":", "")
        self.message = f"Exporting to {target}..."
        self.app.worker.submit(export_png, self.app.session.project, target,
                               on_done=lambda r: setattr(self, "message", self.export_message(r, target)),
                               on_error=self.app.show_error)

    @staticmethod
    def export_message(report, target: Path) -> str:
        """What an export did, in plain words: damaged labels are named, never hidden behind a count."""
        text = f"Exported {report.labels} labels to {target}."
        if report.damaged:
            names = ", ".join(d.sample.name for d in report.damaged[:3])
            more = f" and {len(report.damaged) - 3} more" if len(report.damaged) > 3 else ""
            text += (f" {len(report.damaged)} label(s) could not be read and were left out ({names}{more});"
                     " earlier versions are kept, and an administrator can put a backup back.")
        return text


__all__ = ["AdminScreen", "PIPELINE_PRESETS", "BOX_METHOD_NAMES", "plain_box_words", "box_table",
           "prompt_model_words", "when_words",
           "model_words", "round_words"]
