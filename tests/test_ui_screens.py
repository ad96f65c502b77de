"""The kiosk screens: save & next through inspection and post-processing, kiosk lock, screenshots.

Screenshots of every screen at 1920x1200 go to tests/artifacts/ (not committed).
"""

from __future__ import annotations

import numpy as np

from test_ui_label import KioskTestCase
from ui_driver import pen_stroke


def blob(layer, cx, cy, r):
    yy, xx = np.ogrid[:layer.height, :layer.width]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


class TestInspection(KioskTestCase):
    priors = {"segments": 2}

    def test_inspection_panel_for_wrong_segment_count_and_save_anyway_saves(self):
        label = self.open_label()
        sample_id = label.assisted.sample.id
        # three separate segments where the project expects two
        mask = blob(label.layer, 80, 100, 30) | blob(label.layer, 250, 200, 30) | blob(label.layer, 420, 300, 30)
        label.canvas_widget.apply_edit("brush", lambda layer: layer.set_mask(mask))
        label.save_and_next()
        self.pump(3)
        assert self.app.root.current == "inspection"
        screen = self.app.root.get_screen("inspection")
        texts = [row.text for row in screen.ids.checks.children]
        assert any("3 segments, expected 2" in t for t in texts), texts
        self.screenshot("inspection")

        # "fix it" goes back with the extra segment highlighted
        screen.fix()
        self.pump(1)  # the highlight is computed on the session worker, off the UI thread
        assert self.app.root.current == "label"
        assert label.canvas_widget.highlight is not None and label.canvas_widget.highlight.sum() > 0
        self.screenshot("label_fix_it")

        label.save_and_next()
        self.pump(3)
        assert self.app.root.current == "inspection"
        screen.save_anyway()
        self.pump(3)
        saved = self.app.session.store.latest_label(sample_id)
        assert saved is not None and np.array_equal(saved.mask, mask)
        assert saved.warned and saved.score is not None and saved.score <= 0.75
        [event] = self.app.session.store.events("save_anyway")
        assert event["label_id"] == saved.id and "3 segments, expected 2" in " ".join(event["details"]["failed"])
        assert self.app.root.current == "label"
        assert label.assisted.sample.id != sample_id, "the next sample is open"


class TestPostprocess(KioskTestCase):

    def test_suggestion_accepted_and_rejected(self):
        label = self.open_label()
        sample_id = label.assisted.sample.id
        ring = blob(label.layer, 200, 190, 80) & ~blob(label.layer, 200, 190, 15)  # a hole to fill
        speck = blob(label.layer, 450, 40, 2)                                    # a speck to remove
        label.canvas_widget.apply_edit("brush", lambda layer: layer.set_mask(ring | speck))
        label.save_and_next()
        self.pump(3)
        assert self.app.root.current == "postprocess"
        screen = self.app.root.get_screen("postprocess")
        steps = [s.step for s in screen.suggestions]
        assert steps == ["fill_holes", "remove_small"], steps
        assert "hole" in screen.summary
        self.screenshot("postprocess")
        screen.showing_before = True
        self.screenshot("postprocess_before")
        screen.showing_before = False
        screen.accept()   # fill the hole
        screen.reject()   # a second tap before the next suggestion is shown: it answers nothing
        self.pump(3)
        assert screen.review.index == 1, "the second tap must not answer the suggestion not yet seen"
        screen.reject()   # keep the speck
        self.pump(3)
        if self.app.root.current == "inspection":  # the pre-label changed a lot: a warning
            self.app.root.get_screen("inspection").save_anyway()
            self.pump(3)
        saved = self.app.session.store.latest_label(sample_id)
        assert saved is not None
        assert saved.mask[190, 200], "the accepted suggestion filled the hole"
        assert saved.mask[40, 450], "the rejected suggestion left the speck"


class TestKioskScreens(KioskTestCase):

    def test_escape_and_close_request_leave_the_app_running_in_kiosk_mode(self):
        from kivy.core.window import Window

        self.app.kiosk = True
        assert Window.dispatch("on_key_down", 27, 41, None, []) is True
        assert Window.dispatch("on_request_close") is True
        self.advance_frames(2)
        assert not self.app._leaving
        assert self.app.root.get_parent_window() is not None
        # a wrong PIN does not unlock; the first-run PIN does
        admin = self.app.root.get_screen("admin")
        self.app.go("admin")
        assert not admin.try_unlock("1234")
        assert admin.try_unlock("0000")
        self.app.kiosk = False
        assert not Window.dispatch("on_request_close")

    def test_keyboard_shortcuts_pick_tools(self):
        from kivy.core.window import Window

        label = self.open_label()
        for key, tool in (("e", "eraser"), ("l", "lasso"), ("p", "polygon"), ("f", "bucket"),
                          ("t", "segment"), ("b", "brush")):
            Window.dispatch("on_key_down", ord(key), 0, key, [])
            assert label.tool == tool
        pen_stroke([self.win(30, 30), self.win(60, 30)])
        self.pump()
        assert label.layer.mask[30, 45]
        Window.dispatch("on_key_down", ord("z"), 0, "z", ["ctrl"])
        assert not label.layer.mask[30, 45]
        Window.dispatch("on_key_down", ord("y"), 0, "y", ["ctrl"])
        assert label.layer.mask[30, 45]

    def test_screenshots_of_home_queue_and_admin(self):
        self.app.go("home")
        self.pump(2)
        assert self.app.root.get_screen("home").progress_text.startswith("0 of 3 images labelled")
        self.screenshot("home")
        self.app.go("queue")
        self.pump(3)
        queue = self.app.root.get_screen("queue")
        assert len(queue.tiles) == 3
        queue.set_flag(queue.tiles[1]["sample_id"], 1)
        self.pump(3)
        assert True in self.app.session.store.flags().values()
        for _ in range(10):  # thumbnails load in the background
            self.advance_frames(2)
        self.screenshot("queue")
        self.app.go("admin")
        admin = self.app.root.get_screen("admin")
        self.advance_frames(2)
        self.screenshot("admin_pin")
        assert admin.try_unlock("0000")
        self.advance_frames(2)
        self.screenshot("admin")
        # change the PIN on the keypad: typed twice; then only the new one unlocks
        admin.change_pin()
        for _ in range(2):
            for digit in "2468":
                admin.key(digit)
            admin.key("OK")
        assert admin.message == "The new admin PIN is saved."
        admin.lock_and_leave()
        assert not admin.try_unlock("0000") and admin.try_unlock("2468")

    def test_admin_installs_a_model_from_a_usb_drive_and_refuses_a_broken_one(self):
        import os
        import shutil
        import tempfile
        from pathlib import Path

        usb = Path(tempfile.mkdtemp(prefix="usb-"))
        models = Path(__file__).resolve().parents[1] / "models"
        shutil.copy(models / "scratch_assay_unet.int8.onnx", usb / "scratch.onnx")
        shutil.copy(models / "scratch_assay_unet.int8.json", usb / "scratch.json")
        (usb / "broken.onnx").write_bytes(b"not a model")
        os.environ["LABELASSIST_EXPORT_DIR"] = str(usb)
        try:
            self.app.go("admin")
            admin = self.app.root.get_screen("admin")
            assert admin.try_unlock("0000")
            self.pump(2)
            offered = [w.text for w in admin.ids.model_files.children]
            assert "Install scratch.onnx" in offered and "Install broken.onnx" in offered
            admin.import_model(usb / "broken.onnx")
            self.pump(3)
            assert self.app.session.model() is None  # refused: nothing installed
            admin.import_model(usb / "scratch.onnx")
            self.pump(3)
            assert admin.message.startswith("Installed: ")
            assert self.app.session.model() is not None
            assert admin.models_text.startswith("scratch_assay_unet.int8")
            self.screenshot("admin_model")
        finally:
            del os.environ["LABELASSIST_EXPORT_DIR"]
            shutil.rmtree(usb)

    def test_wrong_pin_ten_times_backs_off_and_never_exits(self):
        admin = self.app.root.get_screen("admin")
        self.app.go("admin")
        clock = [1000.0]
        admin._clock = lambda: clock[0]
        for attempt in range(10):
            assert not admin.try_unlock("9999")
            clock[0] += 1.0  # a quick hand: one try a second
        assert "Too many wrong PINs" in admin.message
        assert not admin.unlocked and self.app.root.current == "admin"
        assert not admin.try_unlock("0000"), "the right PIN waits for the back-off too"
        clock[0] += admin.MAX_WAIT_S
        assert admin.try_unlock("0000") and admin.unlocked
        self.app.kiosk = True
        assert self.app.on_request_close() is True  # closing is still vetoed: the app keeps running

    def test_rapid_taps_on_save_and_next_save_once_and_skip_nothing(self):
        label = self.open_label()
        first = label.assisted.sample.id
        label.canvas_widget.apply_edit("test", lambda layer: layer.set_mask(blob(layer, 200, 150, 40)))
        for _ in range(6):  # an impatient double, triple... tap
            label.save_and_next()
        for _ in range(6):
            self.pump(3)
            if self.app.root.current == "inspection":
                self.app.root.get_screen("inspection").save_anyway()
            while self.app.root.current == "postprocess":
                self.app.root.get_screen("postprocess").reject()
                self.pump(1)
        assert len(self.app.session.store.label_history(first)) == 1  # saved once
        assert self.app.session.store.labelled_ids() == {first}  # nothing else saved or passed over
        # The sample open now is the selector's first choice after that one save: none was skipped.
        assert label.assisted.sample.id == self.app.session.ranking(top=1)[0].sample.id != first


class TestToolRail(KioskTestCase):

    def test_tool_rail_is_big_icon_buttons_with_a_label_under_each(self):
        from kivy.metrics import dp

        from labelassist.ui.widgets import IconButton, IconToggleButton
        from ui_driver import make_touch, post

        label = self.open_label()
        expected = {"tool_brush": "Brush", "tool_eraser": "Eraser", "tool_lasso": "Lasso fill",
                    "tool_polygon": "Polygon", "tool_bucket": "Bucket fill", "tool_segment": "Tap to segment",
                    "tool_wand": "Magic wand",
                    "undo_button": "Undo", "redo_button": "Redo", "accept_button": "Accept pre-label",
                    "clear_button": "Clear", "previous_button": "Previous", "save_next_button": "Save & next"}
        for key, text in expected.items():
            button = label.ids[key]
            assert isinstance(button, IconToggleButton if key.startswith("tool_") else IconButton), key
            assert button.text == text
            assert button.width >= dp(64) and button.height >= dp(64), (key, button.size)
            icon, caption = button.children[1], button.children[0]
            assert icon.children and len(icon.children[0].canvas.children) > 2, f"{key}: no icon drawn"
            assert caption.text == text and caption.top <= icon.y + 1, f"{key}: the label is under the icon"

        def tap(widget, uid):
            x, y = widget.to_window(*widget.center)
            finger = make_touch("wm_touch", uid, x, y)
            post("begin", finger)
            post("end", finger)
            self.advance_frames(1)

        tap(label.ids.tool_eraser, 4001)
        assert label.tool == "eraser" and label.ids.tool_eraser.state == "down"
        assert label.ids.tool_brush.state == "normal"
        tap(label.ids.tool_eraser, 4002)  # a second tap keeps the tool (one of the group is always down)
        assert label.tool == "eraser" and label.ids.tool_eraser.state == "down"
        tap(label.ids.tool_brush, 4003)
        assert label.tool == "brush"
        pen_stroke([self.win(30, 30), self.win(60, 30)])
        self.pump()
        assert label.layer.mask[30, 45]
        tap(label.ids.undo_button, 4004)
        assert not label.layer.mask[30, 45]
        tap(label.ids.redo_button, 4005)
        assert label.layer.mask[30, 45]
        assert label.has_proposal and not label.ids.accept_button.disabled
        tap(label.ids.accept_button, 4006)
        self.pump()
        assert not label.has_proposal and label.ids.accept_button.disabled
        self.screenshot("label_tool_rail")

    def test_a_tool_added_to_the_table_is_on_the_rail_and_its_key_works(self):
        """Adding a tool is one function and one row of ui/tools.py TOOLS: the rail, the keyboard
        shortcut, the canvas and the resume of the last tool all read the table."""
        from labelassist.ui import tools
        from labelassist.ui.widgets import IconToggleButton

        def dot(canvas, press):
            canvas.layer.begin_edit("dot")
            canvas.layer.paint_segment(press.point, press.point, 3, value=True)
            canvas.refresh_overlay()
            return
            yield

        label = self.open_label()
        tools.TOOLS["dot"] = tools.Tool("dot", "Dot", "brush", "d", dot)
        tools.TOOL_KEYS["d"] = "dot"
        try:
            label.build_tool_rail()
            self.advance_frames(2)
            button = label.ids.tool_dot
            assert isinstance(button, IconToggleButton) and button.text == "Dot"
            rail = label.ids.tool_buttons.children[::-1]  # Kivy lists children last first
            assert [b.text for b in rail] == [t.text for t in tools.TOOLS.values()]
            assert label.handle_key("d", []) and label.tool == "dot"
            assert button.state == "down" and label.ids.tool_brush.state == "normal"
            pen_stroke([self.win(40, 40)])
            self.pump()
            assert label.layer.mask[40, 40] and not label.layer.mask[40, 60]
            label.handle_key("b", [])
            assert label.tool == "brush" and button.state == "normal"
        finally:
            del tools.TOOLS["dot"], tools.TOOL_KEYS["d"]
            label.build_tool_rail()
        assert "tool_dot" not in label.ids
        assert [b.text for b in label.ids.tool_buttons.children[::-1]] == [t.text for t in tools.TOOLS.values()]


class TestSaveAndNext(KioskTestCase):

    def quiet_project(self):
        """No post-processing suggestion and no warning: "Save & next" has nothing to show."""
        def change(settings):
            settings["postprocess"]["suggest"] = []
            settings["inspection"]["gamma0"] = 0.0
        self.app.worker.call_now(self.app.session.update_settings, change)

    def test_without_anything_to_show_save_and_next_is_one_job_and_one_hop(self):
        self.quiet_project()
        label = self.open_label()
        first = label.assisted.sample.id
        label.canvas_widget.apply_edit("test", lambda layer: layer.set_mask(blob(layer, 200, 150, 40)))
        label.wait_for_journal()
        self.app.worker.flush()
        hops = []
        deliver = self.app.worker._deliver
        self.app.worker._deliver = lambda fn: (hops.append(fn), deliver(fn))
        label.save_and_next()
        assert label.busy
        self.app.worker.flush()       # submit, save and next ran as one job on the worker...
        assert len(hops) == 1, "one result handed to the UI thread"
        self.advance_frames(1)        # ...and the next frame shows the next sample
        assert label.assisted.sample.id != first and not label.busy
        assert self.app.root.current == "label"
        saved = self.app.session.store.label_history(first)
        assert len(saved) == 1 and saved[0].mask.sum() > 0 and not saved[0].warned
        assert label.assisted.sample.id == self.app.session.ranking(top=1)[0].sample.id, "none skipped"

    def test_a_failed_save_keeps_the_sample_on_screen_and_says_so(self):
        from labelassist.errors import StoreError

        self.quiet_project()
        label = self.open_label()
        first = label.assisted.sample.id
        label.canvas_widget.apply_edit("test", lambda layer: layer.set_mask(blob(layer, 200, 150, 40)))
        session = self.app.session

        def full_disk(*args, **kwargs):
            raise StoreError("the disk is full; the label was not written")

        session.save = full_disk
        try:
            label.save_and_next()
            self.pump(2)
        finally:
            del session.save
        assert label.assisted.sample.id == first and not label.busy
        assert label.message.startswith("The label was NOT saved: the disk is full")
        assert "Traceback" not in label.message
        assert session.store.label_history(first) == []
        label.save_and_next()  # tapped again once the disk has room: saved, next one open
        self.pump(2)
        assert len(session.store.label_history(first)) == 1 and label.assisted.sample.id != first


class TestAdminBoxChoice(KioskTestCase):
    """A project whose first two scratch-assay images come with their masks (labels to measure on)."""

    count = 2
    masks = True

    def unlock_admin(self):
        self.app.go("admin")
        admin = self.app.root.get_screen("admin")
        assert admin.try_unlock("0000")
        self.pump(3)
        return admin

    def test_admin_shows_the_box_choice_and_grabcut_is_saved_in_project_toml(self):
        import tomllib

        from ui_driver import make_touch, post

        admin = self.unlock_admin()
        installed = self.app.worker.call_now(self.app.session.box_segmenter) is not None
        assert admin.box_choice_text.startswith("Tap-to-segment with a box: "), admin.box_choice_text
        assert admin.box_method == "auto" and admin.ids.box_auto.state == "down"
        if installed:  # "Automatic" with two labels: measured on their objects (on the worker)
            assert admin.box_choice_text.split(": ", 1)[1].startswith(("LiteMedSAM model (", "GrabCut ("))
            assert "DSC" in admin.box_choice_text and "box_model" not in admin.box_choice_text
            assert "LiteMedSAM model" in admin.box_table and "GrabCut" in admin.box_table
            assert not admin.ids.box_model.disabled and admin.box_note == ""
        else:
            assert "No box-prompt model" in admin.box_note and admin.ids.box_model.disabled
        for key in ("box_auto", "box_model", "box_grabcut"):
            assert admin.ids[key].height >= 64

        # a finger tap on "GrabCut"
        scroll = admin.ids.settings_page.parent
        scroll.scroll_to(admin.ids.box_methods, animate=False)
        self.advance_frames(2)
        button = admin.ids.box_grabcut
        x, y = button.to_window(*button.center)
        finger = make_touch("wm_touch", 5101, x, y)
        post("begin", finger)
        post("end", finger)
        self.advance_frames(1)
        self.pump(3)
        settings = tomllib.loads((self.app.folder / "project.toml").read_text())
        assert settings["prelabel"]["box_method"] == "grabcut"
        assert admin.box_choice_text == "Tap-to-segment with a box: GrabCut (chosen in the project settings)"
        assert admin.ids.box_grabcut.state == "down" and admin.ids.box_auto.state == "normal"
        assert admin.message == "Tap-to-segment method saved."
        assert self.app.worker.call_now(self.app.session.box_choice).method == "grabcut"
        self.screenshot("admin_box")

    def test_without_a_box_model_the_admin_screen_says_so(self):
        from labelassist import models

        found = models.find_box_segmenter
        models.find_box_segmenter = lambda *a, **k: None  # a tablet without the LiteMedSAM files
        try:
            admin = self.unlock_admin()
        finally:
            models.find_box_segmenter = found
        assert admin.box_choice_text == ("Tap-to-segment with a box: GrabCut "
                                         "(no box-prompt model is installed)")
        assert admin.box_note.startswith("No box-prompt model (LiteMedSAM) is installed on this tablet")
        assert admin.ids.box_model.disabled and admin.box_method == "auto"
        admin.evaluate_box_prompts()  # GrabCut alone is still measured
        self.pump(3)
        assert admin.box_table.splitlines()[1].startswith("GrabCut") and "LiteMedSAM" not in admin.box_table


class TestAdminPluginErrors(KioskTestCase):
    """A plug-in that fails to load is named on the Admin screen (not only in the log)."""

    count = 1
    plugins = {"broken.py": "raise ImportError('needs a package this tablet does not have')\n"}

    def test_admin_names_the_plugin_that_was_not_loaded(self):
        self.app.go("admin")
        admin = self.app.root.get_screen("admin")
        assert admin.try_unlock("0000")
        self.pump(3)
        assert admin.plugins_text.startswith("Plug-ins not loaded: broken.py (")
        assert "needs a package this tablet does not have" in admin.plugins_text
        assert "Traceback" not in admin.plugins_text
        self.screenshot("admin_plugins")


class TestEveryImageLabelled(KioskTestCase):

    def test_the_last_save_and_next_ends_on_home_as_the_app_decides(self):
        """The Label screen says that every image is labelled; the app, not the screen, shows Home."""
        from ui_driver import answer_review

        label = self.open_label()
        session = self.app.session
        last = label.assisted.sample.id
        others = [s.id for s in self.app.worker.call_now(session.store.samples) if s.id != last]
        mask = blob(label.layer, 200, 150, 40)
        for sample_id in others:
            self.app.worker.call_now(session.save, sample_id, mask)
        label.show(None)  # the screen only renders "nothing left"
        assert self.app.root.current == "label" and label.message == "Every image is labelled. Well done!"
        label.say("")
        label.canvas_widget.apply_edit("test", lambda layer: layer.set_mask(mask))
        label.save_and_next()
        for _ in range(6):
            self.pump(3)
            answer_review(self.app)
        assert self.app.worker.call_now(session.store.labelled_ids) == {last, *others}
        assert self.app.root.current == "home"
        assert label.message == "Every image is labelled. Well done!"
