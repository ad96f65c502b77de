"""Strokes drawn on top of a saved label survive a crash, bit for bit.

The journal keeps only the pixels a stroke changed; recovery replays them over the label
version the strokes started from (``Session.record_edit`` writes that version's id with each
row). Here the sample was saved twice before the strokes, so the right base is the newer
version, and neither an empty mask nor the older version gives the same result. A child
process does the labelling and is killed with SIGKILL after the strokes are journalled: no
close, no save, no checkpoint, as when the tablet loses power.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np

from labelassist.images import read_mask
from labelassist.importer import import_images
from labelassist.project import Project
from labelassist.session import Session

# The labelling app, in a child process: save the sample twice (the truth, then the truth with
# a stripe erased), open it again and journal the strokes; then wait to be killed.
ANNOTATOR = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from labelassist.images import read_mask
    from labelassist.project import Project
    from labelassist.session import Session

    folder, sid, truth_path, second_path, strokes_path = sys.argv[1:]
    sid = int(sid)
    session = Session(Project.open(folder), author="annotator", background=False)
    session.open(sid)
    session.save(sid, read_mask(truth_path), seconds=1.0)
    session.open(sid)
    session.save(sid, np.load(second_path), seconds=1.0)
    reopened = session.open(sid)
    assert reopened.label is not None and np.array_equal(reopened.start_mask, np.load(second_path))
    for kind, indices, value in json.load(open(strokes_path)):
        session.record_edit(sid, kind, np.asarray(indices, np.int64), np.full(len(indices), value))
    print("journalled", flush=True)
    time.sleep(120)
""")


def _strokes(truth: np.ndarray) -> list[tuple[str, list[int], bool]]:
    """A pen stroke across the image (over the label and beside it) and an eraser stroke inside it."""
    h, w = truth.shape
    row = h // 2
    pen = np.ravel_multi_index((np.full(w // 2, row), np.arange(w // 4, w // 4 + w // 2)), truth.shape)
    inside = np.flatnonzero(truth)
    eraser = inside[len(inside) // 3: len(inside) // 3 + 400]
    return [("stroke", pen.tolist(), True), ("erase", eraser.tolist(), False)]


def test_strokes_over_a_saved_label_recover_bit_for_bit_after_a_crash(tmp_path, datasets):
    src = datasets / "scratch_assay"
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((src / "images").iterdir())[:3]:
        shutil.copy(path, images)
    with Project.create(tmp_path / "p") as project:
        import_images(project, [images])
        sample = project.store.samples()[0]
    truth = read_mask(src / "masks" / sample.name)
    second = truth.copy()
    second[:, : truth.shape[1] // 8] = False  # the newer version differs from the older one
    np.save(tmp_path / "second.npy", second)
    strokes = _strokes(second)
    (tmp_path / "strokes.json").write_text(json.dumps(strokes))

    child = subprocess.Popen(
        [sys.executable, "-c", ANNOTATOR, str(tmp_path / "p"), str(sample.id), str(src / "masks" / sample.name),
         str(tmp_path / "second.npy"), str(tmp_path / "strokes.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.strip() == "journalled", child.communicate(timeout=60)[1]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)

    expected = second.copy()
    from_nothing = np.zeros_like(second)
    from_older = truth.copy()
    for _kind, indices, value in strokes:
        for mask in (expected, from_nothing, from_older):
            mask.ravel()[indices] = value
    # The test tells the right base from the wrong ones.
    assert not np.array_equal(expected, from_nothing) and not np.array_equal(expected, from_older)

    with Project.open(tmp_path / "p") as project, Session(project, background=False) as session:
        assert session.unsaved_samples() == [sample.id]
        assert len(project.store.label_history(sample.id)) == 2  # both saves, nothing after them
        recovered = session.recover(sample.id)
        assert recovered.dtype == bool and recovered.shape == second.shape
        assert np.array_equal(recovered, expected)
        reopened = session.open(sample.id)  # what the canvas starts from
        assert np.array_equal(reopened.start_mask, expected)
