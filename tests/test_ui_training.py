"""Admin's Models section and the Label screen's training line, on the real kiosk (run under xvfb-run).

A real scratch_assay project with the two shipped scratch_assay U-Nets imported through
``labelassist.models.install_model`` (the fp32 first, then the int8): the history lists both, the
one in use marked; "Use this one" and "Use no model" are finger taps through Kivy's event loop,
and what they did is read back from the project's files (``current.json``, the model's bytes,
``project.toml``). The trainer's live words are heard as the kiosk hears them: events fired on a
thread of their own.
"""

from __future__ import annotations

import os
import threading
import tomllib

import pytest

from test_ui_label import REPO, KioskTestCase
from ui_driver import tap_widget

needs_display = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under xvfb-run)")
MODELS = REPO / "models"
OLDER, NEWER = "scratch_assay_unet.onnx", "scratch_assay_unet.int8.onnx"


class ModelsTestCase(KioskTestCase):
    """The project has the two shipped scratch_assay models installed, the int8 one last (in use)."""

    count = 3

    def setUp(self):
        super().setUp()
        session = self.app.session
        # The tests' app runs without background threads, so its trainer never starts rounds by
        # itself; on the kiosk it does (what Admin says about it depends on that).
        session.trainer.enabled = True
        for name in (OLDER, NEWER):
            self.app.worker.call_now(session.import_model, MODELS / name)

    def unlock_admin(self):
        self.app.go("admin")
        admin = self.app.root.get_screen("admin")
        assert admin.try_unlock("0000")
        self.pump(3)
        return admin

    def tap(self, admin, widget, uid: int):
        """Scroll ``widget`` into view on the Admin page, then a finger tap on it."""
        admin.ids.settings_page.parent.scroll_to(widget, padding=40, animate=False)
        self.advance_frames(2)
        tap_widget(widget, uid)
        self.advance_frames(1)
        self.pump(3)

    def rows(self, admin):
        """The ModelRow widgets, top to bottom."""
        return list(reversed(admin.ids.model_history.children))

    def show_models(self, admin, name: str):
        """A screenshot of the Admin page scrolled so that the Models heading is at its top."""
        page = admin.ids.settings_page
        scroll, heading = page.parent, admin.ids.models_heading
        below_top = page.top - heading.top - page.padding[1]
        scroll.scroll_y = min(1.0, max(0.0, 1 - below_top / max(1, page.height - scroll.height)))
        return self.screenshot(name)


@needs_display
class TestAdminModels(ModelsTestCase):

    def test_use_an_older_model_then_none_then_pause_and_resume_training(self):
        from labelassist import models
        from labelassist.fileio import file_hash
        from labelassist.models import history

        project = self.app.session.project
        admin = self.unlock_admin()

        # newest first, the one in use marked, "No model" last
        titles = [r.title for r in self.rows(admin)]
        assert titles == ["scratch_assay_unet.int8 (1.0.0)", "scratch_assay_unet (1.0.0)", "No model"], titles
        assert [r.in_use for r in self.rows(admin)] == [True, False, False]
        newest, older, none = self.rows(admin)
        assert newest.ids.use_button.text == "In use now" and newest.ids.use_button.disabled
        assert older.ids.use_button.text == "Use this one" and none.ids.use_button.text == "Use no model"
        assert older.words.startswith(f"Imported from {OLDER}, today at ")
        assert older.words.endswith(". It matched its makers' test images at 99 %.")
        assert admin.models_text == "scratch_assay_unet.int8 (1.0.0)"
        assert admin.training_words == "Training starts after 5 labels"
        assert admin.ids.pause_button.text == "Pause training" and admin.ids.pause_button.width > 0
        for text in (admin.models_text, admin.training_words, *(r.title + r.words for r in self.rows(admin))):
            assert "DSC" not in text and "Traceback" not in text
        self.show_models(admin, "admin_models")

        # "Use this one" on the older model: it is the project's model again, bit for bit
        self.tap(admin, older.ids.use_button, 7001)
        entry = history.current_entry(project)
        assert entry is not None and entry.name == "scratch_assay_unet" and entry.id == 1
        assert file_hash(models.installed_model_path(project)) == file_hash(MODELS / OLDER)
        assert [r.in_use for r in self.rows(admin)] == [False, True, False], "the screen shows the switch"
        assert admin.models_text == "scratch_assay_unet (1.0.0)"
        assert admin.message == "Now using scratch_assay_unet (1.0.0). The pre-labels are measured again with it."
        events = self.app.worker.call_now(project.store.events, "model_rollback")
        assert events[-1]["details"]["model_id"] == 1
        self.show_models(admin, "admin_models_rolled_back")

        # "Use no model"
        self.tap(admin, self.rows(admin)[2].ids.use_button, 7002)
        assert models.project_model(project) is None
        assert history.current_entry(project) is None
        assert [r.in_use for r in self.rows(admin)] == [False, False, True]
        assert admin.models_text == "none"
        assert len(history.model_history(project)) == 2, "both models stay in the history to go back to"

        # Pause, then Resume: the project's settings file says so
        def train_setting():
            return tomllib.loads((project.folder / "project.toml").read_text())["prelabel"]["train"]

        assert train_setting() is True
        self.tap(admin, admin.ids.pause_button, 7003)
        assert train_setting() is False and admin.training_paused
        assert admin.ids.pause_button.text == "Resume training"
        assert admin.training_words == "Training is paused"
        assert admin.message == "Training is paused: it stays paused until you resume it."
        self.show_models(admin, "admin_models_paused")
        self.tap(admin, admin.ids.pause_button, 7004)
        assert train_setting() is True and not admin.training_paused
        assert admin.ids.pause_button.text == "Pause training"


    def test_tap_to_segment_taught_on_the_tablet_is_named_and_can_go_back_to_as_shipped(self):
        from labelassist.fileio import file_hash
        from labelassist.models import find_box_segmenter, history

        shipped = find_box_segmenter()
        if shipped is None:
            pytest.skip("the LiteMedSAM export is missing: make litemedsam (the test target builds it)")
        session = self.app.session
        session.boxes.use_box_segmenter(shipped)
        place = history.prompt_model_place(session.project)
        # what a training round installs (the decoder's bytes here: a valid graph, as the kiosk checks)
        reason = "tap-to-segment learned your objects: boxes 91 % against 80 %, taps 70 % against 1 %"
        entry = history.add_model(place, shipped.decoder_path, {"name": "litemedsam-adapted", "version": "round 2",
                                                                "tablet": {"trained_on_samples": []}},
                                  "tablet", reason)
        history.activate(place, entry.id, reason)
        session.boxes.prompt_model_changed()
        admin = self.unlock_admin()
        self.pump(3)
        assert admin.prompt_model_adapted and admin.ids.shipped_prompt_model.height > 0
        assert admin.prompt_model_text == ("Tap-to-segment model: LiteMedSAM taught your objects on this tablet "
                                           "(round 2): boxes 91 % against 80 %, taps 70 % against 1 %.")
        assert session.box_segmenter().decoder_path == entry.onnx
        self.tap(admin, admin.ids.shipped_prompt_model, 7101)
        self.pump(3)
        assert history.current_entry(place) is None and session.boxes.prompt_entry() is None
        assert file_hash(session.box_segmenter().decoder_path) == file_hash(shipped.decoder_path)
        assert admin.message == "Tap-to-segment uses LiteMedSAM as shipped now. It is measured again."
        assert not admin.prompt_model_adapted and admin.ids.shipped_prompt_model.height == 0
        assert admin.prompt_model_text.startswith("Tap-to-segment model: LiteMedSAM as shipped.")
        assert [e.id for e in history.model_history(place)] == [entry.id], "kept in the history"


@needs_display
class TestTrainingLive(ModelsTestCase):

    def test_a_round_is_shown_live_and_a_tablet_model_in_plain_words(self):
        import json

        from labelassist.models import history

        session = self.app.session
        project, trainer = session.project, session.trainer

        # a model this tablet learned (the int8 file stands in for one), and three past rounds
        card = json.loads((MODELS / "scratch_assay_unet.int8.json").read_text())
        card.update(name="project_tablet_unet", version="tablet.3",
                    training_data={"trained_on": list(range(16)), "held_out": [17, 18, 19, 20]})
        reason = "it matches your newest 4 labels at 91 %, the pre-label used until now at 84 %"

        def learned():
            entry = history.add_model(project, MODELS / NEWER, card, "tablet", reason)
            history.activate(project, entry.id, reason)
            store = project.store
            store.log_event("training_round", status="failed", labelled=5, round=1,
                            reason="the trainer stopped without a result (exit code 1); its log is /tmp/x.log")
            store.log_event("training_round", status="kept", labelled=10, round=2,
                            reason="kept the current pre-label: it matches your newest 2 labels at 95 %, "
                                   "the new model at 90 %")
            store.log_event("training_round", status="installed", labelled=20, round=3, reason=reason)
            session._model_changed()

        self.app.worker.call_now(learned)
        admin = self.unlock_admin()
        tablet = self.rows(admin)[0]
        assert tablet.in_use and tablet.title == "Learned on this tablet (round 3)"
        assert tablet.words.startswith("From 16 of your labels, today at ")
        assert tablet.words.endswith(". It matched your newest 4 labels at 91 %, the pre-label before it at 84 %.")
        lines = admin.rounds_text.splitlines()
        assert lines[0] == "Last training rounds, newest first:" and len(lines) == 4
        assert lines[1].startswith("Today at ") and ", from 20 labels: installed a new model (it matched" in lines[1]
        assert lines[3].endswith("from 5 labels: training failed (the trainer stopped without a result)")
        assert "/tmp" not in admin.rounds_text and "exit code" not in admin.rounds_text

        # a round running: its events come on the trainer's own thread, the screen hears them
        def say(event):
            thread = threading.Thread(target=trainer._say, args=(event,))
            thread.start()
            thread.join()
            self.advance_frames(2)

        trainer._round = object()  # running (no process: nothing to stop)
        trainer.progress = {"stage": "train", "step": 120, "steps": 300}
        try:
            say(dict(trainer.progress, round=4))
            assert admin.training_words == "Training: step 120 of 300"
            self.pump(3)
            self.show_models(admin, "admin_training")

            # the Label screen's small line, while the round runs
            self.app.go("label")
            label = self.open_label()
            trainer.progress = {"stage": "train", "step": 180, "steps": 300}
            say(dict(trainer.progress, round=4))
            assert label.training_words == "Learning from your labels... step 180 of 300"
            assert label.ids.training_words.height > 0
            self.screenshot("label_training")
            assert len(trainer.listeners) == 1, "Admin stopped listening when it was left"
        finally:
            trainer._round, trainer.progress = None, None
        say({"stage": "end", "round": 4, "status": "kept", "reason": "kept the current pre-label"})
        assert label.training_words == "" and label.ids.training_words.height == 0

        # the canvas's idle time reaches the session's trainer, on the worker
        heard = []
        trainer.idle = heard.append
        label._last_input -= 45
        label._report_idle()
        self.pump(2)
        assert len(heard) == 1 and 44 <= heard[0] < 120
        label.canvas_input()
        label._report_idle()
        self.pump(2)
        assert heard[1] < 5

        # a screen left stops listening
        self.app.go("home")
        self.advance_frames(2)
        assert trainer.listeners == [] and label.trainer_listening.listening is None

    def test_without_training_installed_admin_says_so_and_offers_no_buttons(self):
        self.app.session.trainer.available = False
        admin = self.unlock_admin()
        assert admin.training_words == "Training is not installed on this tablet"
        assert not admin.training_available
        button = admin.ids.pause_button
        assert button.disabled and button.width == 0 and button.opacity == 0
        assert [r.title for r in self.rows(admin)][-1] == "No model", "roll back still works"

        # a damaged history: one plain line, no trace, the rest of Admin works on
        (self.app.session.project.folder / "models" / "history.json").write_text("{not json")
        admin.refresh_models()
        self.pump(3)
        assert admin.models_note.startswith("The list of models could not be read: ")
        assert "history.json is damaged" in admin.models_note and "Traceback" not in admin.models_note


def test_models_and_rounds_in_plain_words_without_a_window():
    from datetime import datetime, timezone
    from pathlib import Path

    from labelassist.models.history import HistoryEntry
    from labelassist.ui.admin_screen import model_words, round_words, when_words

    noon = datetime(2026, 11, 3, 12, 0, tzinfo=timezone.utc)
    assert when_words(noon.isoformat(), today=noon.astimezone()).startswith("today at ")
    assert when_words("2026-11-03T09:05:00Z", today=datetime(2026, 12, 1).astimezone()).startswith("3 Nov 2026 at ")
    assert when_words("not a time") == ""

    legacy = HistoryEntry(id=1, name="cells", version="", source="legacy", sha256="", installed_at="",
                          reason="installed before the model history was kept", held_out_dsc=None, trained_on=0,
                          onnx=Path("model.onnx"))
    assert model_words(legacy) == ("cells", "Installed before the model history was kept.")
    tablet = HistoryEntry(id=4, name="p_tablet_unet", version="tablet.7", source="tablet", sha256="", installed_at="",
                          reason="", held_out_dsc=0.914, trained_on=40, onnx=Path("model.onnx"))
    assert model_words(tablet) == ("Learned on this tablet (round 7)",
                                   "From 40 of your labels. It matched your newest labels at 91 %.")

    assert round_words({"status": "stopped", "reason": "stopped: the session closed", "labelled": 12}) == \
        "From 12 labels: training stopped (the session closed)"
    assert round_words({"status": "failed", "reason": "the trainer could not start (No such file)"}) == \
        "Training failed (the trainer could not start (No such file))"
