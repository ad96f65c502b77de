"""Nothing leaves the device through the log: a whole session at DEBUG writes no image data.

A real session on scratch_assay (import, open, pre-label with Otsu and the shipped ONNX model,
a tap-to-segment, journalled strokes, saves, a corrupt image, a plug-in step that fails,
export) runs with the app's own log set-up (``logsetup.setup_logging``) at DEBUG. The log must
hold words, not pixels: small next to the data, no long tokens (hex, base64, digit runs),
no numpy array reprs, and no 32-byte piece of any image, stored mask blob or exported PNG.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from labelassist.errors import LabelAssistError
from labelassist.export import export_png
from labelassist.images import read_mask
from labelassist.importer import import_images
from labelassist.logsetup import setup_logging
from labelassist.project import Project
from labelassist.session import Session
from labelassist.workflow.registry import REGISTRY

REPO = Path(__file__).resolve().parents[1]

FAILING_PLUGIN = '''
from labelassist.workflow.registry import register


@register("prelabel", "leaky")
def leaky(image, context=None):
    """Fails with the pixels in its error message (a careless plug-in)."""
    raise ValueError("could not threshold this image:\\n" + repr(image))
'''


def _pieces(data: bytes, size: int = 32, want: int = 40) -> list[bytes]:
    """Up to ``want`` high-entropy ``size``-byte windows of ``data``, spread over it."""
    found = []
    stride = max(1, (len(data) - size) // (want * 4) or 1)
    for start in range(0, max(0, len(data) - size), stride):
        piece = data[start:start + size]
        if len(set(piece)) >= size // 2:
            found.append(piece)
            if len(found) >= want:
                break
    return found


@pytest.fixture
def logged(tmp_path):
    path = setup_logging(tmp_path / "logs")
    logger = logging.getLogger("labelassist")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield path
    logger.setLevel(level)
    for handler in list(logger.handlers):
        if getattr(handler, "_labelassist", False):
            logger.removeHandler(handler)
            handler.close()
    logger.propagate = True


def test_a_whole_session_at_debug_logs_no_image_data(tmp_path, datasets, logged, monkeypatch):
    monkeypatch.setattr(REGISTRY, "plugin_timeout_s", 20.0)
    images = tmp_path / "images"
    images.mkdir()
    for k in range(5):
        shutil.copy(datasets / "scratch_assay" / "images" / f"{k:03d}.png", images)
    data = {p.name: p.read_bytes() for p in images.iterdir()}
    with Project.create(tmp_path / "p") as project:
        import_images(project, [images])
        project.settings["prelabel"]["method"] = "otsu"  # no re-measuring of every method after each save
        (images / "004.png").write_bytes(data["004.png"][:3000])  # damaged on the drive after the import
        project.plugins_dir.mkdir()
        (project.plugins_dir / "leaky.py").write_text(FAILING_PLUGIN)
        with Session(project, background=False) as session:
            session.import_model(REPO / "models" / "scratch_assay_unet.int8.onnx")
            session._box_segmenter = None  # LiteMedSAM's image embedding (3 s a sample here) logs nothing
            for _ in range(6):
                try:
                    assisted = session.next()
                except LabelAssistError:
                    continue  # the truncated image: a plain message, and in the log
                if assisted is None:
                    break
                sample = assisted.sample
                image = assisted.image
                data[f"pixels of {sample.name}"] = image.tobytes()
                data[f"display of {sample.name}"] = assisted.display.tobytes()
                session.prelabel(sample.id, "otsu")
                session.prelabel(sample.id, "onnx")
                try:
                    session.prelabel(sample.id, "leaky")
                except LabelAssistError:
                    pass
                truth = read_mask(datasets / "scratch_assay" / "masks" / sample.name)
                session.record_edit(sample.id, "brush", np.flatnonzero(truth)[:500], np.ones(500, bool))
                session.submit(sample.id, truth)
                session.save(sample.id, truth)
            for _, label in project.store.latest_labels():
                data[f"stored mask {label.id}"] = bytes(label.blob)
        report = export_png(project, tmp_path / "export")
        assert report.labels == 4
        for png in (tmp_path / "export").glob("*.png"):
            data[f"exported {png.name}"] = png.read_bytes()
    for handler in logging.getLogger("labelassist").handlers:
        handler.flush()

    log = Path(logged).read_bytes()
    text = log.decode("utf-8")
    # The log did record the session (not an empty file that passes trivially).
    assert "leaky" in text and "installed scratch_assay_unet" in text, text[-2000:]
    # The truncated file is named; since the stored hash is checked it is reported as changed after import.
    assert "could not threshold this image" in text and "image 004.png was changed after it was imported" in text
    total = sum(len(v) for v in data.values())
    assert len(log) < 64 * 1024 and len(log) < total / 50, (len(log), total)
    long_tokens = [t for t in text.split() if len(t) > 200]
    assert not long_tokens, long_tokens[:3]
    assert "array(" not in text and "[[" not in text, "a numpy array was written to the log"
    assert not re.search(r"[0-9A-Fa-f]{64,}", text), "a long hex run is in the log"
    assert not re.search(r"[A-Za-z0-9+/]{80,}={0,2}", text), "a long base64-like run is in the log"
    assert not re.search(r"(\d+[ ,]+){40,}", text), "a long run of numbers is in the log"
    checked = 0
    for name, blob in data.items():
        pieces = _pieces(blob)
        for piece in pieces:
            assert piece not in log, f"bytes of {name} are in the log"
            assert piece.hex() not in text, f"bytes of {name} (as hex) are in the log"
        checked += len(pieces)
    assert checked >= 200
