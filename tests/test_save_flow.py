"""Save & next as a state machine without a GUI (session/save_flow.py), on real scratch-assay images.

Fast: no Kivy, no window. The kiosk's screens only render the states tested here
(tests/test_ui_screens.py plays the same paths through the real screens).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from labelassist.errors import StoreError
from labelassist.importer import import_images
from labelassist.project import Project
from labelassist.session import Session
from labelassist.session.save_flow import Answer, Choice, SaveFlow, Step, SubmitMask
from labelassist.ui.session_worker import SessionWorker


def make_project(tmp_path, datasets, count):
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((datasets / "scratch_assay" / "images").iterdir())[:count]:
        shutil.copy(path, images)
    project = Project.create(tmp_path / "project")
    import_images(project, [images])
    project.settings["priors"]["segments"] = 2  # the two cell sheets either side of the scratch
    project.save_settings()
    return project


def truth(datasets, sample) -> np.ndarray:
    path = datasets / "scratch_assay" / "masks" / sample.name.replace(".tif", ".png")
    return np.asarray(Image.open(path)) > 0


def disc(shape, cx, cy, r) -> np.ndarray:
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


@pytest.fixture
def session(tmp_path, datasets):
    project = make_project(tmp_path, datasets, count=4)
    with Session(project, lookahead=0, background=False) as session:
        yield session
    project.close()


def quiet(session):
    """Nothing to show the user: no suggestion, no warning."""
    def change(settings):
        settings["postprocess"]["suggest"] = []
        settings["inspection"]["gamma0"] = 0.0
    session.update_settings(change)


def three_segments(datasets, sample):
    """The truth with a third segment (a disc in the scratch, away from both sheets)."""
    mask = truth(datasets, sample)
    rows, cols = np.nonzero(~mask)
    cy, cx = int(np.median(rows)), int(np.median(cols))
    extra = disc(mask.shape, cx, cy, 6) & ~mask
    assert extra.sum() > 50
    return mask | extra, extra


def test_nothing_to_show_goes_straight_through_to_the_next_sample(session, datasets):
    quiet(session)
    first = session.next()
    mask = truth(datasets, first.sample)
    review = SaveFlow(session, first.sample.id, mask, strokes=3).start()
    assert review.step is Step.SAVED and review.finished
    assert review.next is not None and review.next.sample.id != first.sample.id
    saved = session.store.latest_label(first.sample.id)
    assert saved.id == review.label_id and np.array_equal(saved.mask, mask)
    assert saved.strokes == 3 and not saved.warned
    assert saved.score is not None, "the inspection's γ is kept with the version"


def test_suggestions_accepted_and_rejected_then_the_mask_is_inspected_again(session, datasets, monkeypatch):
    first = session.next()
    shape = (first.sample.height, first.sample.width)
    ring = disc(shape, 200, 190, 80) & ~disc(shape, 200, 190, 15)  # a hole to fill
    speck = disc(shape, 450, 40, 2)                                # a speck to remove
    flow = SaveFlow(session, first.sample.id, ring | speck)
    review = flow.start()
    assert review.step is Step.SUGGESTION and review.index == 0
    assert [s.step for s in review.suggestions] == ["fill_holes", "remove_small"]
    assert review.suggestion.step == "fill_holes" and np.array_equal(review.before, ring | speck)
    submitted_report = review.report

    inspected = []
    reinspect = session.reinspect
    monkeypatch.setattr(session, "reinspect", lambda sid, m: inspected.append(m.copy()) or reinspect(sid, m))
    review = flow.accept()  # fill the hole
    assert review.step is Step.SUGGESTION and review.suggestion.step == "remove_small"
    assert inspected == [], "inspected again once every suggestion has its answer"
    review = flow.reject()  # keep the speck
    assert len(inspected) == 1, "an accepted suggestion changes the mask: inspected again"
    assert inspected[0][190, 200] and inspected[0][40, 450]
    assert review.report is not submitted_report
    if review.step is Step.WARNING:  # the pre-label changed a lot: a warning
        assert review.mask[190, 200] and review.mask[40, 450], "the label layer shows the mask as it stands"
        review = flow.save_anyway()
    assert review.step is Step.SAVED
    saved = session.store.latest_label(first.sample.id)
    assert saved.mask[190, 200], "the accepted suggestion filled the hole"
    assert saved.mask[40, 450], "the rejected suggestion left the speck"


def test_every_accepted_suggestion_stays_in_the_mask(session):
    first = session.next()
    shape = (first.sample.height, first.sample.width)
    ring = disc(shape, 200, 190, 80) & ~disc(shape, 200, 190, 15)
    speck = disc(shape, 450, 40, 2)
    flow = SaveFlow(session, first.sample.id, ring | speck)
    flow.start()
    flow.accept()
    review = flow.accept()
    mask = review.mask if review.step is Step.WARNING else session.store.latest_label(first.sample.id).mask
    assert mask[190, 200] and not mask[40, 450], "both the filled hole and the removed speck"


def test_a_second_tap_on_accept_never_answers_the_next_suggestion_unseen(session):
    """Two taps on Accept reach the worker one after the other; the second carries the state the
    user saw (the first suggestion), so it must not accept the second suggestion unseen."""
    first = session.next()
    shape = (first.sample.height, first.sample.width)
    ring = disc(shape, 200, 190, 80) & ~disc(shape, 200, 190, 15)
    speck = disc(shape, 450, 40, 2)
    flow = SaveFlow(session, first.sample.id, ring | speck)
    seen = flow.start()
    assert seen.step is Step.SUGGESTION and seen.index == 0
    tap = Answer(seen.review_id, Choice.ACCEPT, state=seen.state)
    after_first = flow.answer(tap)
    assert after_first.step is Step.SUGGESTION and after_first.index == 1
    assert flow.answer(tap) is after_first, "the second tap answered a state the user no longer sees"
    assert session.store.latest_label(first.sample.id) is None, "nothing was saved"


def test_a_failed_reinspection_keeps_the_accepted_changes_and_saves_nothing(session, monkeypatch):
    first = session.next()
    shape = (first.sample.height, first.sample.width)
    ring = disc(shape, 200, 190, 80) & ~disc(shape, 200, 190, 15)
    speck = disc(shape, 450, 40, 2)
    flow = SaveFlow(session, first.sample.id, ring | speck)
    assert flow.start().step is Step.SUGGESTION

    def broken(*args, **kwargs):
        raise RuntimeError("a plug-in metric failed")

    monkeypatch.setattr(session, "reinspect", broken)
    flow.accept()            # fill the hole
    review = flow.reject()   # keep the speck; now the mask is inspected again, and that fails
    assert review.step is Step.SAVE_FAILED and review.finished and review.label_id is None
    assert "details are in the log" in review.error
    assert review.mask[190, 200], "the accepted suggestion stays in the mask the screen gets back"
    assert session.store.latest_label(first.sample.id) is None


def test_warning_then_fix_highlights_the_extra_segment_and_a_new_submit_saves(session, datasets):
    session.update_settings(lambda s: s["postprocess"].__setitem__("suggest", []))
    first = session.next()
    mask, extra = three_segments(datasets, first.sample)
    flow = SaveFlow(session, first.sample.id, mask)
    review = flow.start()
    assert review.step is Step.WARNING and not review.finished
    assert any("3 segments, expected 2" in c.message for c in review.report.failed)
    assert session.store.latest_label(first.sample.id) is None, "nothing saved while the user decides"

    review = flow.fix()
    assert review.step is Step.FIX and review.finished
    assert review.highlight.any() and not (review.highlight & ~extra).any(), "the extra segment, and only it"
    assert flow.save_anyway() is review, "a flow that ended takes no more answers"
    assert session.store.latest_label(first.sample.id) is None

    fixed = mask & ~extra  # the user erased it; Save & next again
    review = SaveFlow(session, first.sample.id, fixed).start()
    assert review.step is Step.SAVED
    saved = session.store.latest_label(first.sample.id)
    assert np.array_equal(saved.mask, fixed) and not saved.warned


def test_fix_of_one_check_row_highlights_that_check(session, datasets):
    session.update_settings(lambda s: s["postprocess"].__setitem__("suggest", []))
    first = session.next()
    mask, extra = three_segments(datasets, first.sample)
    flow = SaveFlow(session, first.sample.id, mask)
    flow.start()
    review = flow.answer(Answer(flow.review_id, Choice.FIX, ("area_fraction",), flow.state.state))
    assert review.step is Step.FIX and not review.highlight.any(), "area fraction points at no pixel"


def test_warning_then_save_anyway_saves_with_the_warning_recorded(session, datasets):
    session.update_settings(lambda s: s["postprocess"].__setitem__("suggest", []))
    first = session.next()
    mask, _ = three_segments(datasets, first.sample)
    flow = SaveFlow(session, first.sample.id, mask)
    assert flow.start().step is Step.WARNING
    assert flow.answer(Answer(flow.review_id + 1000, Choice.SAVE_ANYWAY)) is flow.state, "another flow's answer"
    assert flow.answer(Answer(flow.review_id, Choice.SAVE_ANYWAY, state=flow.state.state - 1)) is flow.state, \
        "an answer to an earlier state"
    review = flow.answer(Answer(flow.review_id, Choice.SAVE_ANYWAY, state=flow.state.state))
    assert review.step is Step.SAVED and review.next.sample.id != first.sample.id
    saved = session.store.latest_label(first.sample.id)
    assert saved.id == review.label_id and saved.warned and saved.score <= 0.75
    [event] = session.store.events("save_anyway")
    assert event["label_id"] == saved.id and "3 segments, expected 2" in " ".join(event["details"]["failed"])
    assert flow.save_anyway() is review, "a second tap saves nothing more"
    assert len(session.store.label_history(first.sample.id)) == 1


def test_a_failed_save_keeps_the_mask_and_says_so(session, datasets, monkeypatch):
    quiet(session)
    first = session.next()
    mask = truth(datasets, first.sample)

    def full_disk(*args, **kwargs):
        raise StoreError("the disk is full; the label was not written")

    monkeypatch.setattr(session, "save", full_disk)
    review = SaveFlow(session, first.sample.id, mask).start()
    assert review.step is Step.SAVE_FAILED and review.finished and review.label_id is None
    assert review.error.startswith("the disk is full") and np.array_equal(review.mask, mask)
    assert session.current.sample.id == first.sample.id, "the sample stays open"
    monkeypatch.undo()
    review = SaveFlow(session, first.sample.id, mask).start()  # tapped again once the disk has room
    assert review.step is Step.SAVED and len(session.store.label_history(first.sample.id)) == 1


def test_a_failed_open_after_the_save_says_so(session, datasets, monkeypatch):
    quiet(session)
    first = session.next()

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(session, "next", broken)
    review = SaveFlow(session, first.sample.id, truth(datasets, first.sample)).start()
    assert review.step is Step.OPEN_FAILED and review.label_id is not None
    assert "details are in the log" in review.error
    assert session.store.latest_label(first.sample.id).id == review.label_id


def test_the_last_sample_saves_and_has_no_next(tmp_path, datasets):
    project = make_project(tmp_path, datasets, count=1)
    try:
        with Session(project, lookahead=0, background=False) as session:
            quiet(session)
            only = session.next()
            review = SaveFlow(session, only.sample.id, truth(datasets, only.sample)).start()
            assert review.step is Step.SAVED and review.next is None and review.label_id is not None
    finally:
        project.close()


def test_the_worker_drives_the_flow_from_frozen_requests(session, datasets):
    session.update_settings(lambda s: s["postprocess"].__setitem__("suggest", []))
    first = session.next()
    mask, _ = three_segments(datasets, first.sample)
    worker = SessionWorker(session)
    shown = []
    try:
        worker.review(SubmitMask(first.sample.id, mask), on_done=shown.append).result(30)
        [warning] = shown
        assert warning.step is Step.WARNING
        answer = Answer(warning.review_id, Choice.SAVE_ANYWAY, state=warning.state)
        worker.review(answer, on_done=shown.append)
        worker.review(answer, on_done=shown.append)  # a double tap
        worker.flush()
        assert [r.step if r is not None else None for r in shown[1:]] == [Step.SAVED, None]
        assert len(session.store.label_history(first.sample.id)) == 1
    finally:
        worker.close()


def test_no_screen_reaches_another_screen():
    """Which screen shows is decided by the app (``LabelAssistApp.show_review``, ``go``); a screen
    or a widget on one never looks another screen up."""
    from pathlib import Path

    import labelassist

    ui = Path(labelassist.__file__).parent / "ui"
    files = [p for p in sorted(ui.glob("*.py")) + sorted(ui.glob("*.kv")) if p.name != "app.py"]
    assert {"screens.py", "label_screen.py", "review_screens.py", "label_screen.kv"} <= {p.name for p in files}
    reaching = [p.name for p in files if "get_screen(" in p.read_text(encoding="utf-8")]
    assert reaching == []
    flow_source = (Path(labelassist.__file__).parent / "session" / "save_flow.py").read_text(encoding="utf-8")
    assert "kivy" not in flow_source.lower()
