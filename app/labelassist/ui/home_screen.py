"""Home: the open project (progress, Continue) and every project on the tablet (layout: home_screen.kv)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from kivy.clock import Clock
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout

from labelassist import kiosk_settings
from labelassist.ui import projects as projects_mod
from labelassist.ui.screens import KioskScreen, screen_of

log = logging.getLogger(__name__)


class ProjectRow(ButtonBehavior, BoxLayout):
    """One project on the tablet (a RecycleView row): tap to switch to it."""

    folder = StringProperty("")
    title = StringProperty("")
    detail = StringProperty("")
    reason = StringProperty("")
    fraction = NumericProperty(0.0)
    current = BooleanProperty(False)
    can_open = BooleanProperty(True)

    def on_release(self):
        screen_of(self).choose(self.folder)


class HomeScreen(KioskScreen):
    """The open project (progress, Continue) and every project on the tablet (tap to switch).

    The list is read in a background thread straight from each project folder, read-only and
    without taking any lock (:mod:`labelassist.ui.projects`); the open project's numbers come
    from its session."""

    project_name = StringProperty("")
    progress_text = StringProperty("")
    notice = StringProperty("")
    labelled = NumericProperty(0)
    total = NumericProperty(0)
    projects = ListProperty([])
    scanning = BooleanProperty(False)
    switching = BooleanProperty(False)
    projects_heading = StringProperty("Projects on this tablet")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._summaries: list = []
        self._scan_token = 0
        self._scan_thread: threading.Thread | None = None

    def on_pre_enter(self, *_):
        self.refresh()

    def refresh(self):
        app = self.app
        if app is None or app.session is None:
            return
        session = app.session
        self.project_name = f"Project: {session.project.name}"
        app.worker.submit(lambda: (session.store.counts(), session.unsaved_samples()),
                          on_done=self._show_progress, on_error=app.show_error)
        self.scan_projects()

    def _show_progress(self, result):
        counts, unsaved = result
        self.labelled, self.total = counts["labelled"], counts["samples"]
        pct = 100 * self.labelled / self.total if self.total else 0
        self.progress_text = f"{self.labelled} of {self.total} images labelled ({pct:.0f} %)"
        self.notice = (f"Unsaved work on {len(unsaved)} image{'s' * (len(unsaved) != 1)} "
                       "will be restored when you continue." if unsaved else "")
        self._show_rows()

    # the projects on the tablet
    def scan_projects(self):
        """Read every project's progress in the background (never on the UI thread: a slow USB
        drive or a big database must not freeze the screen)."""
        app = self.app
        data, opened = app.data_folder(), list(getattr(app, "opened_folders", [app.folder]))
        self._scan_token += 1
        token = self._scan_token
        self.scanning = True

        def work():
            try:
                found = projects_mod.scan(data, also=opened)
            except Exception:  # noqa: BLE001 - the list stays as it was; the log says why
                log.exception("the projects in %s could not be listed", data)
                found = None
            Clock.schedule_once(lambda dt: self._scanned(token, found))

        self._scan_thread = threading.Thread(target=work, name="project-scan", daemon=True)
        self._scan_thread.start()

    def wait_scanned(self, timeout: float = 10.0) -> None:
        """Block until the background scan is done (tests, benchmarks); its result arrives
        with the next frame."""
        if self._scan_thread is not None:
            self._scan_thread.join(timeout)

    def _scanned(self, token, found):
        if token != self._scan_token:
            return  # a newer scan was started
        self.scanning = False
        if found is not None:
            self._summaries = found
        self._show_rows()

    def _show_rows(self):
        app = self.app
        rows = []
        names = [summary.name for summary in self._summaries]
        for summary in self._summaries:
            current = projects_mod.same_folder(summary.folder, app.folder)
            if current:  # the open project: its session's numbers (our own lock is not "another instance")
                detail = self.progress_text or summary.progress_text()
                fraction = self.labelled / self.total if self.total else 0.0
                reason, can_open = "", True
            else:
                detail, fraction = summary.progress_text(), summary.fraction
                reason, can_open = summary.reason, summary.can_open
            # copies of a project share its name: the folder tells them apart
            title = summary.name
            if names.count(summary.name) > 1:
                title = f"{summary.name}   (folder {summary.folder.name})"
            rows.append({"folder": str(summary.folder), "title": title, "detail": detail,
                         "reason": reason, "fraction": float(fraction), "current": current,
                         "can_open": can_open})
        self.projects = rows
        others = len(rows) - 1
        self.projects_heading = ("Projects on this tablet: tap one to switch to it" if others > 0
                                 else "Projects on this tablet")

    def choose(self, folder: str):
        """A tap on a project row: switch to it (after one frame that says so)."""
        app = self.app
        if self.switching:
            return
        if projects_mod.same_folder(Path(folder), app.folder):
            self.notice = "This project is open: tap 'Continue labelling'."
            return
        row = next((r for r in self.projects if r["folder"] == folder), None)
        if row is not None and not row["can_open"]:
            self.notice = f"{row['title']}: {row['reason']}"
            return
        self.switching = True
        self.notice = f"Opening {row['title'] if row else Path(folder).name}..."
        Clock.schedule_once(lambda dt: self._switch(folder), 0.05)

    def _switch(self, folder: str):
        app = self.app
        try:
            error = app.switch_project(folder)
        except Exception:  # noqa: BLE001 - the kiosk stays up; the log has the details
            log.exception("switching to %s failed", folder)
            error = "This project could not be opened. The details are in the log file."
        self.switching = False
        self.notice = ""
        if error:
            app.show_error(error)  # the open project stays open
        self.refresh()

    def continue_labelling(self):
        if self.switching:
            return
        self.app.continue_labelling()

    def open_queue(self):
        if kiosk_settings.is_locked("queue", self.app.home):
            self.notice = "The queue is locked on this tablet: tap 'Continue labelling'."
            return
        self.app.go("queue")

    def open_admin(self):
        self.app.go("admin")


__all__ = ["HomeScreen", "ProjectRow"]
