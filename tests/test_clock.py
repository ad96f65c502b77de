"""Clock jumps: the wall clock goes back a day and forward a year between saves.

The wall-clock sources of the store (``created_at`` of label versions, event times), of the
backups (their file names) and ``time.time`` are moved together; the monotonic clock is not
(it never jumps: time spent and the backup schedule use it). Labels are ordered by id, so the
latest label is the last one saved and "Continue" opens the sample that was open, whatever the
clock says.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta

import numpy as np
import pytest

import labelassist.backup as backup_mod
import labelassist.store.records as store_mod  # utc_now reads the wall clock there
from labelassist.backup import list_backups
from labelassist.images import read_mask
from labelassist.importer import import_images
from labelassist.project import Project
from labelassist.session import Session

JUMPS = [timedelta(0), timedelta(days=-1), timedelta(days=365), timedelta(0), timedelta(days=-1)]


class Clock:
    """Wall-clock offset shared by the patched sources."""

    offset = timedelta(0)


class JumpyDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + Clock.offset


@pytest.fixture
def jumpy_clock(monkeypatch):
    real_time = time.time
    monkeypatch.setattr(store_mod, "datetime", JumpyDatetime)
    monkeypatch.setattr(backup_mod, "datetime", JumpyDatetime)
    monkeypatch.setattr(time, "time", lambda: real_time() + Clock.offset.total_seconds())
    yield Clock
    Clock.offset = timedelta(0)


@pytest.fixture
def project(tmp_path, datasets):
    images = tmp_path / "images"
    images.mkdir()
    for k in range(6):
        shutil.copy(datasets / "scratch_assay" / "images" / f"{k:03d}.png", images)
    project = Project.create(tmp_path / "p")
    import_images(project, [images])
    project.settings["backup"]["minutes"] = 0  # a backup after every save
    project.settings["backup"]["keep"] = 3
    project.settings["prelabel"]["method"] = "otsu"
    yield project
    project.close()


def _truth(datasets, sample, shift: int = 0) -> np.ndarray:
    return np.roll(read_mask(datasets / "scratch_assay" / "masks" / sample.name), shift, axis=1)


def test_labels_and_resume_follow_the_order_of_saving_not_the_clock(project, datasets, jumpy_clock):
    saved = []  # (sample id, label id, mask) in the order they were saved
    with Session(project, background=False) as session:
        session._box_segmenter = None  # LiteMedSAM embeddings (seconds a sample here) have no clock
        first = None
        for k, jump in enumerate(JUMPS):
            jumpy_clock.offset = jump
            assisted = session.next()
            first = first or assisted
            mask = _truth(datasets, assisted.sample, k)
            saved.append((assisted.sample.id, session.save(assisted.sample.id, mask), mask))
            # The first sample is corrected again at every clock setting.
            session.open(first.sample.id)
            again = _truth(datasets, first.sample, 10 * k + 3)
            saved.append((first.sample.id, session.save(first.sample.id, again), again))
        # The clock did move: the stored times go back and forth.
        times = [project.store.label(label_id).created_at for _, label_id, _ in saved]
        assert times != sorted(times)
        # Open one more sample and leave it with an unsaved stroke, then jump the clock back.
        jumpy_clock.offset = timedelta(days=-3)
        left_open = session.next()
        session.remember(sample_id=left_open.sample.id)  # as the label screen does when it shows a sample
        stroke = np.arange(1000, 1400)
        session.record_edit(left_open.sample.id, "brush", stroke, np.ones(stroke.size, bool))
    jumpy_clock.offset = timedelta(days=400)
    with Session(project, background=False) as session:
        session._box_segmenter = None
        for sample_id in {s for s, _, _ in saved}:
            last_id, last_mask = [(lid, m) for s, lid, m in saved if s == sample_id][-1]
            latest = project.store.latest_label(sample_id)
            assert latest.id == last_id and np.array_equal(latest.mask, last_mask)
            history = [v.id for v in project.store.label_history(sample_id)]
            assert history == [lid for s, lid, _ in saved if s == sample_id]
        # "Continue" opens the sample that was open, with its unsaved stroke.
        assert session.resume_state()["sample_id"] == left_open.sample.id
        recovered = session.recover(left_open.sample.id)
        assert recovered is not None and recovered.ravel()[stroke].all()
        # The selector offers none of the labelled samples again: the one left open is the only
        # unlabelled sample (6 images, 5 labelled).
        assert len({s for s, _, _ in saved}) == 5
        assert session.next().sample.id == left_open.sample.id


def test_rolling_backups_keep_the_newest_copies_when_the_clock_jumps(project, datasets, jumpy_clock):
    total = 0
    with Session(project, background=False) as session:
        session._box_segmenter = None
        for k, jump in enumerate(JUMPS):
            jumpy_clock.offset = jump
            assisted = session.next()
            session.save(assisted.sample.id, _truth(datasets, assisted.sample))
            total += 1
            backups = list_backups(project.backup_dir)
            assert len(backups) == min(total, 3)
            # The first one listed is the one just taken: it holds every label saved so far.
            assert backups[0].labels == total, (k, [(b.name, b.labels) for b in backups])
            assert sorted(b.labels for b in backups) == list(range(total - len(backups) + 1, total + 1))
