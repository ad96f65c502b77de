"""Home lists every project on the tablet and switches between them (real Kivy window, run under xvfb-run).

The data folder (kiosk.toml ``[data] folder``, here the data home itself) holds a phase-contrast
project (usiigaci_phase), a project whose labels.sqlite is damaged, one written by a newer
version and a folder that is no project; the app opens a scratch-assay project that lives
*elsewhere*. Screenshots at 1920x1200 go to tests/artifacts/ (not committed).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_HOME", tempfile.mkdtemp(prefix="kivy-home-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from kivy.tests.common import GraphicUnitTest  # noqa: E402

from test_ui_label import ARTIFACTS, DATASETS  # noqa: E402
from ui_driver import make_touch, pen_stroke, post  # noqa: E402


def make_project_at(folder: Path, dataset: str, count: int, name: str, images: Path) -> Path:
    """A project in ``folder`` on the first ``count`` real images of ``dataset`` (copied to ``images``)."""
    from labelassist.importer import import_images
    from labelassist.project import Project

    images.mkdir(parents=True)
    for src in sorted((DATASETS / dataset / "images").iterdir())[:count]:
        shutil.copy2(src, images / src.name)
    with Project.create(folder, name=name) as project:
        import_images(project, [images])
    return folder


def folder_state(folder: Path) -> dict[str, str]:
    """Every file of a folder with the hash of its bytes (to show nothing was written)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


class HomeTestCase(GraphicUnitTest):

    def setUp(self):
        super().setUp()
        from kivy.core.window import Window

        from labelassist.project import Project
        from labelassist.session import Session
        from labelassist.store import SCHEMA_VERSION
        from labelassist.ui.app import LabelAssistApp

        Window.size = (1920, 1200)
        self.tmp = Path(tempfile.mkdtemp(prefix="la-home-"))
        self.home = self.tmp / "home"  # the data home; kiosk.toml names no other data folder
        self.scratch = make_project_at(self.tmp / "elsewhere" / "scratch-assay", "scratch_assay", 3,
                                       "Scratch assay", self.tmp / "img-scratch")
        self.phase = make_project_at(self.home / "phase-contrast", "usiigaci_phase", 2, "Phase contrast",
                                     self.tmp / "img-phase")
        # the scratch assay has one label; in the phase project the user stopped on its second
        # image, zoomed in (what Session.remember keeps for "Continue")
        with Project.open(self.scratch) as project, Session(project, background=False) as session:
            first = session.next()
            session.save(first.sample.id, first.prelabel.mask)
        with Project.open(self.phase) as project, Session(project, background=False) as session:
            self.phase_sample = project.store.samples()[1].id
            session.remember(sample_id=self.phase_sample, zoom=2.0, center=[500.0, 400.0], screen="label")
        # a copy of a project whose database is damaged: pages overwritten after the SQLite header
        broken = self.home / "damaged-copy"
        broken.mkdir()
        shutil.copy2(self.phase / "project.toml", broken / "project.toml")
        data = bytearray((self.phase / "labels.sqlite").read_bytes())
        data[100:12288] = np.random.default_rng(0).integers(0, 256, 12188, dtype=np.uint8).tobytes()
        (broken / "labels.sqlite").write_bytes(bytes(data))
        # a project a newer Label Assistant wrote (a higher schema version)
        newer = self.home / "from-newer-app"
        shutil.copytree(self.phase, newer)
        conn = sqlite3.connect(newer / "labels.sqlite")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
        conn.commit()
        conn.close()
        (self.home / "notes").mkdir()
        (self.home / "notes" / "todo.txt").write_text("not a project")

        self.app = LabelAssistApp(self.scratch, windowed=True, home=self.home, background=False)
        self.app.root = self.app.build()
        self.render(self.app.root)
        self.advance_frames(2)

    def tearDown(self):
        self.app.on_stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        super().tearDown()

    # helpers
    @property
    def home_screen(self):
        return self.app.root.get_screen("home")

    @property
    def label(self):
        return self.app.root.get_screen("label")

    def pump(self, frames: int = 2):
        for _ in range(3):
            self.app.worker.flush()
            self.advance_frames(frames)

    def show_home(self):
        self.app.go("home")
        self.home_screen.refresh()
        self.home_screen.wait_scanned()
        self.pump(3)
        return {Path(row["folder"]).name: row for row in self.home_screen.projects}

    def row_for(self, folder_name):
        """The row widget the RecycleView shows for a project folder."""
        for w in self.home_screen.ids.project_list.children[0].children:
            if Path(w.folder).name == folder_name:
                return w
        raise AssertionError(f"no row for {folder_name}")

    def tap(self, widget, uid):
        """A finger tap on the middle of a widget, through Kivy's event loop."""
        x, y = widget.to_window(*widget.center)
        finger = make_touch("wm_touch", uid, x, y)
        post("begin", finger)
        post("end", finger)
        self.advance_frames(1)

    def wait_switched(self, folder):
        for _ in range(40):
            self.advance_frames(1)
            if Path(self.app.folder) == folder and not self.home_screen.switching:
                break
        self.pump(2)
        assert Path(self.app.folder) == folder

    def screenshot(self, name: str) -> Path:
        from kivy.core.window import Window

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.advance_frames(3)
        target = ARTIFACTS / f"{name}.png"
        made = Window.screenshot(name=str(target))
        if made and Path(made) != target:
            os.replace(made, target)
        return target

    def continue_labelling(self):
        self.home_screen.continue_labelling()
        self.pump(3)
        assert self.label.assisted is not None
        return self.label


class TestHomeProjects(HomeTestCase):

    def test_every_project_is_listed_with_its_progress_read_only(self):
        from labelassist.ui import projects

        before = {p: folder_state(p) for p in (self.phase, self.home / "damaged-copy", self.home / "from-newer-app")}
        by_folder = self.show_home()
        assert list(by_folder) == ["damaged-copy", "from-newer-app", "phase-contrast", "scratch-assay"], \
            "the data folder's projects by name, then the open one (it lives elsewhere); 'notes' is no project"
        scratch, phase = by_folder["scratch-assay"], by_folder["phase-contrast"]
        assert scratch["current"] and scratch["can_open"]
        assert scratch["detail"].startswith("1 of 3 images labelled") and scratch["fraction"] == pytest.approx(1 / 3)
        assert not phase["current"] and phase["can_open"] and phase["reason"] == ""
        assert phase["detail"].startswith("0 of 2 images labelled")
        assert by_folder["damaged-copy"]["reason"] == projects.DAMAGED and not by_folder["damaged-copy"]["can_open"]
        assert "newer version" in by_folder["from-newer-app"]["reason"]
        assert not by_folder["from-newer-app"]["can_open"]
        # reading the progress wrote nothing: no lock file, no -wal / -shm, same bytes
        for folder, state in before.items():
            assert folder_state(folder) == state, folder
        assert self.home_screen.project_name == "Project: Scratch assay"
        self.screenshot("home_projects")

        # a tap on the damaged project or the newer one says why, and the app carries on
        self.tap(self.row_for("damaged-copy"), 3001)
        assert projects.DAMAGED in self.home_screen.notice
        self.tap(self.row_for("from-newer-app"), 3002)
        assert "newer version" in self.home_screen.notice
        self.advance_frames(3)
        assert Path(self.app.folder) == self.scratch
        assert self.app.worker.call_now(self.app.session.store.counts)["labelled"] == 1
        # the app refuses them itself too, in plain words, keeping the open project
        message = self.app.switch_project(self.home / "damaged-copy")
        assert message and "damaged" in message and "Traceback" not in message
        message = self.app.switch_project(self.home / "from-newer-app")
        assert message and "newer" in message
        assert Path(self.app.folder) == self.scratch and projects.in_use(self.scratch)
        self.screenshot("home_refused")

    def test_switching_opens_the_other_project_and_back_resumes_where_it_stopped(self):
        from labelassist.project import ProjectLock
        from labelassist.ui import projects

        # labelling the scratch assay: one stroke on the sample the selector offers (journalled, not saved)
        label = self.continue_labelling()
        scratch_sample = label.assisted.sample.id
        canvas = label.canvas_widget
        pts = [canvas.image_to_window(x, 150.5) for x in np.linspace(60, 220, 12)]
        pen_stroke(pts)
        self.pump()
        assert label.layer.mask[150, 140]
        stroked = label.layer.mask.copy()
        label.go_home()

        # tap the phase-contrast project: the scratch assay is closed cleanly, the other one opened
        self.show_home()
        self.tap(self.row_for("phase-contrast"), 3101)
        assert self.home_screen.switching or Path(self.app.folder) == self.phase
        self.wait_switched(self.phase)
        assert not projects.in_use(self.scratch), "the scratch assay's lock was released"
        lock = ProjectLock(self.scratch)
        lock.acquire("the test")  # nobody holds it any more
        lock.release()
        assert projects.in_use(self.phase)
        self.show_home()
        assert self.home_screen.project_name == "Project: Phase contrast"
        assert self.home_screen.progress_text.startswith("0 of 2 images labelled")
        current = [r for r in self.home_screen.projects if r["current"]]
        assert [Path(r["folder"]).name for r in current] == ["phase-contrast"]
        self.screenshot("home_switched")

        # Continue: the phase project's own place (its second image, zoomed in)
        label = self.continue_labelling()
        assert label.assisted.sample.id == self.phase_sample
        assert label.assisted.sample.path.endswith(".tif")
        assert label.canvas_widget.scale == pytest.approx(2.0)
        self.screenshot("label_after_switch")

        # and back: the scratch assay resumes on the same sample with the unsaved stroke restored
        label.go_home()
        self.show_home()
        self.tap(self.row_for("scratch-assay"), 3102)
        self.wait_switched(self.scratch)
        assert not projects.in_use(self.phase)
        label = self.continue_labelling()
        assert label.assisted.sample.id == scratch_sample
        assert np.array_equal(label.layer.mask, stroked)
        assert "restored" in label.message

    def test_a_project_open_in_another_instance_is_shown_and_not_taken(self):
        from labelassist.project import ProjectLock
        from labelassist.ui import projects

        other = ProjectLock(self.phase)
        other.acquire("Label Assistant on another account")  # "another instance" holds it
        try:
            phase = self.show_home()["phase-contrast"]
            assert phase["reason"] == projects.IN_USE and not phase["can_open"]
            assert phase["detail"].startswith("0 of 2 images labelled")  # still read, read-only
            self.tap(self.row_for("phase-contrast"), 3201)
            self.advance_frames(3)
            assert "another instance" in self.home_screen.notice
            message = self.app.switch_project(self.phase)
            assert message == projects.IN_USE
            assert Path(self.app.folder) == self.scratch
            assert self.app.worker.call_now(self.app.session.store.counts)["samples"] == 3
        finally:
            other.release()


class TestBootOpensTheLastChoice(HomeTestCase):

    def restart(self, while_off=None):
        """The tablet restarts: the app is stopped and a new one started on the same folder."""
        from kivy.core.window import Window

        from labelassist.ui.app import LabelAssistApp

        self.app.on_stop()
        Window.remove_widget(self.app.root)
        if while_off is not None:
            while_off()
        self.app = LabelAssistApp(self.scratch, windowed=True, home=self.home, background=False)
        self.app.root = self.app.build()
        self.render(self.app.root)
        self.advance_frames(2)

    def test_a_restart_opens_the_project_chosen_on_home_and_falls_back_when_it_is_gone(self):
        from kivy.uix.popup import Popup

        from labelassist.ui import projects

        kiosk_toml = self.home / "kiosk.toml"
        self.show_home()
        self.tap(self.row_for("phase-contrast"), 3301)
        self.wait_switched(self.phase)
        choice = self.home / projects.CHOICE_FILE
        assert choice.is_file() and not kiosk_toml.exists(), "remembered in the data folder, not in kiosk.toml"
        assert projects.remembered_choice(self.home, self.scratch) == self.phase
        assert projects.remembered_choice(self.home, self.home / "from-newer-app") is None, \
            "started on another folder (IT configured another project), the app opens that one"

        self.restart()  # started on the scratch assay, as at every boot
        assert Path(self.app.folder) == self.phase and projects.in_use(self.phase)
        assert self.app.session.project.name == "Phase contrast"
        label = self.continue_labelling()  # and its own place: the second image, zoomed in
        assert label.assisted.sample.id == self.phase_sample
        by_folder = self.show_home()
        assert by_folder["phase-contrast"]["current"] and "scratch-assay" in by_folder, \
            "the boot project (elsewhere) is still listed to switch back to"

        # the remembered project was deleted: the boot project opens, nothing on screen says so
        self.restart(while_off=lambda: shutil.rmtree(self.phase))
        assert Path(self.app.folder) == self.scratch and self.app.status == ""
        assert not self.phase.exists(), "the missing project was not created again"
        assert not [w for w in self.app.root.get_root_window().children if isinstance(w, Popup)]
        assert self.show_home()["scratch-assay"]["current"]
        assert self.continue_labelling().assisted is not None
