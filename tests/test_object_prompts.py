"""Tap-to-segment and the wand without a window: one proposed object, added as its own segment.

Real data: usiigaci_phase masks (cells that nearly touch), scratch_assay frames in a real project.
The canvas side (preview, Add, Discard, Undo) is in tests/test_ui_segment.py.
"""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from labelassist.errors import LabelAssistError
from labelassist.images import read_mask
from labelassist.importer import import_images
from labelassist.label_layer import LabelLayer
from labelassist.project import Project
from labelassist.session import Session
from labelassist.session.prompting import ObjectPrompt
from labelassist.workflow.components import count_segments
from labelassist.workflow.objects import add_object, object_at


def _components(mask):
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    return n - 1, labels


def _near_pair(mask, gap=9):
    """Two real objects closer than ``gap`` pixels: (this one, its neighbour's id, labels)."""
    n, labels = _components(mask)
    for c in range(1, n + 1):
        grown = cv2.dilate((labels == c).view(np.uint8), np.ones((gap, gap), np.uint8)).astype(bool)
        others = set(np.unique(labels[grown])) - {0, c}
        if others and (labels == c).sum() > 300:
            return c, others, labels
    raise AssertionError("no two objects close together")


def test_an_object_grown_into_its_neighbour_is_added_with_a_seam(datasets):
    truth = read_mask(datasets / "usiigaci_phase" / "masks" / "003.png") > 0
    count = count_segments(truth)
    c, neighbours, labels = _near_pair(truth)
    rest = truth & (labels != c)
    # What a model proposes for that cell: a little too large, so it runs into its neighbour.
    proposal = cv2.dilate((labels == c).view(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert (proposal & rest).any()  # it does overlap the neighbour
    after = add_object(rest, proposal)
    assert count_segments(after) == count  # still two objects, not one
    assert (after[rest]).all()  # nothing labelled before is removed
    n_after, labels_after = _components(after)
    grown_id = labels_after[labels == c][0]
    for neighbour in neighbours:
        assert labels_after[labels == neighbour][0] != grown_id
    # the seam is one pixel wide: every new pixel next to the neighbour is gone, no more
    seam = proposal & ~rest & ~after
    assert seam.any()
    near = cv2.dilate(rest.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert (seam <= near).all()


def test_redrawing_an_object_joins_it_instead_of_splitting_it(datasets):
    truth = read_mask(datasets / "usiigaci_phase" / "masks" / "003.png") > 0
    c, _, labels = _near_pair(truth)
    # The user redraws most of an object that is already labelled, a bit larger: one object.
    redraw = cv2.dilate((labels == c).view(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & \
        ~cv2.dilate((labels != c).view(np.uint8) & truth.view(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    after = add_object(truth, redraw)
    assert count_segments(after) == count_segments(truth)
    assert (after[labels == c]).all() and (after[redraw]).all()


def test_object_at_keeps_the_tapped_object_and_cuts_to_the_box():
    proposal = np.zeros((60, 80), bool)
    proposal[10:20, 10:20] = True   # the tapped cell
    proposal[10:20, 40:50] = True   # a similar cell elsewhere
    tapped = object_at(proposal, points=[(15, 15)])
    assert tapped.sum() == 100 and tapped[15, 15] and not tapped[15, 45]
    # a tap one pixel off a thin cell still keeps the nearest one
    assert object_at(proposal, points=[(21, 15)])[15, 15]
    boxed = object_at(proposal, box=(8, 8, 22, 22))
    assert boxed.sum() == 100 and not boxed[:, 30:].any()
    assert not object_at(proposal, box=(60, 30, 75, 55)).any()


@pytest.fixture
def scratch_session(tmp_path, datasets):
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((datasets / "scratch_assay" / "images").iterdir())[:4]:
        shutil.copy(path, images)
    project = Project.create(tmp_path / "project")
    import_images(project, [images])
    session = Session(project, author="tester", background=False, own=True, train=False)
    session.boxes.use_box_segmenter(None)  # GrabCut and the watershed answer (LiteMedSAM: test_prompt_adapt.py)
    yield session, datasets
    session.close()
    project.close()


def test_a_proposal_changes_nothing_until_the_screen_adds_it(scratch_session):
    session, datasets = scratch_session
    assisted = session.next()
    sid = assisted.sample.id
    truth = read_mask(datasets / "scratch_assay" / "masks" / assisted.sample.name) > 0
    n, labels = _components(truth)
    ys, xs = np.nonzero(labels == 1)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    before = (session.store.labelled_ids(), session.current.prelabel)
    proposal = session.propose_object(sid, ObjectPrompt(box=box))
    assert proposal.found and proposal.method == "grabcut" and "pixels" in proposal.words
    # one object (the segment in the box), nothing saved or journalled
    assert count_segments(proposal.mask) == 1
    assert (proposal.mask & (labels == 1)).sum() > 0.8 * (labels == 1).sum()
    assert (session.store.labelled_ids(), session.current.prelabel) == before
    assert session.open(sid).recovered is None  # no stroke journalled
    # taps alone go to the seeded watershed (no model installed here)
    x, y = int(xs[len(xs) // 2]), int(ys[len(ys) // 2])
    tap = session.propose_object(sid, ObjectPrompt(points=((x, y),)))
    assert tap.found and tap.method == "watershed" and tap.mask[y, x]


def test_the_wand_says_when_it_tightened_and_a_large_find_is_called_out(scratch_session):
    session, _ = scratch_session
    first = next(s for s in session.store.samples() if s.name == "000.png")
    sid = session.open(first.id).sample.id
    # Grey levels leak through a scratch assay frame (test_prelabel.py): the wand's area cap
    # tightens the tolerance, and the proposal says so in the warning colour.
    wand = session.propose_object(sid, ObjectPrompt(tool="wand", points=((40, 40),)))
    assert wand.found and wand.method == "flood" and wand.mask.mean() <= 0.5
    assert wand.problem.startswith("The wand used a tighter tolerance (12 instead of 24)")
    assert wand.words.startswith("The wand found")
    # Without labels a find over a quarter of the image is called out ...
    big = session.propose_object(sid, ObjectPrompt(tool="wand", points=((193, 183),)))
    assert big.mask.mean() > 0.25 and "% of the image, more than an object in your labels" in big.problem
    # ... but not once the labels hold objects that large (a scratch assay's halves)
    truth = read_mask(scratch_session[1] / "scratch_assay" / "masks" / "001.png") > 0
    second = next(s for s in session.store.samples() if s.name == "001.png")
    session.open(second.id)
    session.save(second.id, truth)
    session.open(sid)
    again = session.propose_object(sid, ObjectPrompt(tool="wand", points=((193, 183),)))
    assert np.array_equal(again.mask, big.mask)
    assert again.problem.startswith("The wand used a tighter tolerance")  # only the tolerance note


def test_a_bad_prompt_says_what_to_do(scratch_session):
    session, _ = scratch_session
    sid = session.next().sample.id
    with pytest.raises(LabelAssistError, match="tap on the object or draw a box"):
        session.propose_object(sid, ObjectPrompt())
    with pytest.raises(LabelAssistError, match="open the sample"):
        session.propose_object(sid + 1000, ObjectPrompt(points=((5, 5),)))


def test_adding_through_the_layer_is_one_undo_atom(datasets):
    truth = read_mask(datasets / "usiigaci_phase" / "masks" / "003.png") > 0
    c, _, labels = _near_pair(truth)
    rest = truth & (labels != c)
    layer = LabelLayer(rest)
    layer.begin_edit("segment")
    layer.add_object(cv2.dilate((labels == c).view(np.uint8), np.ones((7, 7), np.uint8)).astype(bool))
    edit = layer.end_edit()
    assert edit is not None and count_segments(layer.mask) == count_segments(truth)
    layer.undo()
    assert np.array_equal(layer.mask, rest)


def test_a_proposal_spilling_over_half_a_small_neighbour_does_not_swallow_it():
    existing = np.zeros((40, 60), bool)
    existing[10:14, 30:34] = True            # a small cell, 16 pixels
    proposal = np.zeros_like(existing)
    proposal[5:25, 10:32] = True             # the next cell, spilling over half of it
    after = add_object(existing, proposal)
    assert count_segments(after) == 2 and after[existing].all()


def test_a_seam_that_cuts_the_new_object_keeps_its_largest_piece():
    existing = np.zeros((20, 20), bool)
    existing[0:6, 8:11] = True               # a cell the new, thin one runs past
    proposal = np.zeros_like(existing)
    proposal[3:5, 2:18] = True               # thin: the seam cuts it in two
    proposal[3:12, 12:18] = True             # its bulk is on the right
    after = add_object(existing, proposal)
    assert count_segments(after) == 2
    assert not after[3:5, 2:7].any()         # the small piece on the left was left out
    assert after[6:12, 12:18].all()
