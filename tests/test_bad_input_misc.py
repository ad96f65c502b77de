"""Bad input around settings, model cards, plug-ins and what the CLI prints (issue 12, item 17 and "Low").

Each row of the table: something a user, an IT administrator or a plug-in author leaves in a
project (or types on the command line), the command run on it, the exit code, the words of its
one plain line (no traceback, no "unexpected error"), and the stored labels bit for bit unchanged.
Rows with exit code 0 are inputs the command must get through cleanly (a broken plug-in is named
and skipped, a name with escape sequences is shown escaped).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Callable

import pytest

from badinput import REPO, CliResult, assert_plain_failure, copy_of, labels_digest, run_cli, scratch_template
from labelassist.cli import main
from labelassist.errors import PluginError, ProjectError
from labelassist.project import validate_settings
from labelassist.workflow.registry import Param

MODEL = REPO / "models" / "scratch_assay_unet.int8.onnx"
LABELLED = 4  # of the six images of the template, the first four come with their masks
EVIL = "cells\x1b[2J\x1b]0;owned\x07\nforged line"  # clears the screen, retitles the window, adds a line


@pytest.fixture(scope="module")
def template(tmp_path_factory, datasets) -> Path:
    """Six scratch_assay images, four of them labelled: the project each case copies.

    The images are copies, never links to the shared datasets: several rows point an output at
    an image, and on a version without the guard that write goes through a link.
    """
    return scratch_template(tmp_path_factory.mktemp("misc-template"), datasets, images=6, labelled=LABELLED,
                            copy=True)


@pytest.fixture()
def project(template, tmp_path) -> Path:
    return copy_of(template, tmp_path)


# -- setups: each changes the copied project (p) or writes files beside it (tmp) ---------------------
def _toml(old: str, new: str) -> Callable[[Path, Path], None]:
    def setup(p: Path, tmp: Path) -> None:
        text = (p / "project.toml").read_text(encoding="utf-8")
        assert old in text, old
        (p / "project.toml").write_text(text.replace(old, new, 1), encoding="utf-8")
    return setup


def _nested(depth: int) -> Callable[[Path, Path], None]:
    return _toml('box_method = "auto"\nparams = {  }',
                 'box_method = "auto"\nparams = { otsu = { x = ' + "[" * depth + "]" * depth + " } }")


def _plugin(name: str, source: str) -> Callable[[Path, Path], None]:
    def setup(p: Path, tmp: Path) -> None:
        (p / "plugins").mkdir(exist_ok=True)
        (p / "plugins" / name).write_text(source, encoding="utf-8")
    return setup


def _card(**changes) -> Callable[[Path, Path], None]:
    """The shipped int8 model beside a copy of its card with ``changes`` (written as JSON: NaN stays NaN)."""
    def setup(p: Path, tmp: Path) -> None:
        card = json.loads(MODEL.with_suffix(".json").read_text(encoding="utf-8"))
        card.update(changes)
        shutil.copyfile(MODEL, tmp / "m.onnx")
        (tmp / "m.json").write_text(json.dumps(card), encoding="utf-8")  # allow_nan: NaN, Infinity
    return setup


def _evil_project_name(p: Path, tmp: Path) -> None:
    from labelassist.project import Project

    with Project.open(p) as project:
        project.settings["project"]["name"] = EVIL
        project.save_settings()


def _evil_sample_name(p: Path, tmp: Path) -> None:
    # A file name may hold a newline and ESC on Linux: the sample takes its name from it.
    import cv2

    (tmp / "more").mkdir()
    image = cv2.imread(str(p.parent / "images" / "005.png"), cv2.IMREAD_UNCHANGED)
    # Mirrored: new content (the same content is never imported twice), real pixels all the same.
    (tmp / "more" / f"{EVIL}.png").write_bytes(cv2.imencode(".png", image[:, ::-1])[1].tobytes())
    assert main(["import", str(p), str(tmp / "more")]) == 0


def _none(p: Path, tmp: Path) -> None:
    pass


def _damaged_label(p: Path, tmp: Path) -> None:
    """One flipped byte in the stored mask of 001.png, as a bad sector leaves it (the labels table
    refuses UPDATE by a trigger: dropped, the byte written, the trigger made again)."""
    import sqlite3

    conn = sqlite3.connect(p / "labels.sqlite")
    try:
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'labels'"
                                ).fetchall()
        label_id, blob = conn.execute("SELECT l.id, l.mask FROM labels l JOIN samples s ON s.id = l.sample_id "
                                      "WHERE s.name = '001.png' ORDER BY l.id DESC LIMIT 1").fetchone()
        blob = bytearray(blob)
        blob[len(blob) // 2] ^= 0xFF
        with conn:
            for name, _ in triggers:
                conn.execute(f'DROP TRIGGER "{name}"')
            conn.execute("UPDATE labels SET mask = ? WHERE id = ?", (bytes(blob), label_id))
            for _, sql in triggers:
                conn.execute(sql)
    finally:
        conn.close()


PLUGIN_HEAD = "import numpy as np\nfrom labelassist.workflow.prelabel import Prelabel\n" \
              "from labelassist.workflow.registry import register\n\n"

RAISES_AT_IMPORT = "print('hello from a plug-in')\nraise RuntimeError('needs a licence key')\n"

WRONG_RESULTS = PLUGIN_HEAD + '''
@register("prelabel", "tiny_mask")
def tiny_mask(image, context=None):
    """A mask of the wrong shape."""
    return Prelabel(mask=np.zeros((3, 3), bool), probability=None, method="tiny_mask")


@register("prelabel", "bare_array")
def bare_array(image, context=None):
    """An array, not a Prelabel."""
    return np.zeros(image.shape[:2], bool)


@register("prelabel", "float_mask")
def float_mask(image, context=None):
    """A mask of floats (a probability passed off as a mask)."""
    return Prelabel(mask=np.full(image.shape[:2], 0.7, np.float32), probability=None, method="float_mask")
'''

REPLACES_OTSU = PLUGIN_HEAD + '''
@register("prelabel", "otsu")
def otsu(image, context=None):
    """Takes the name of a built-in step (everything foreground)."""
    return Prelabel(mask=np.ones(image.shape[:2], bool), probability=None, method="otsu")
'''

STARTS_A_THREAD = '''
import threading
import time


def _poll():
    while True:  # never ends, and not a daemon thread
        time.sleep(0.1)


threading.Thread(target=_poll, name="plugin-poller").start()
'''

# (id, setup, argv with {p} for the project and {tmp} for a folder beside it, exit code, words)
CASES = [
    # settings: NaN passes every range check, inf overflows int(), deep nesting overflows the reader
    ("backup.minutes nan", _toml("minutes = 10.0", "minutes = nan"), ["status", "{p}"], 1,
     ["backup.minutes", "finite"]),
    ("backup.keep inf", _toml("keep = 10", "keep = inf"), ["status", "{p}"], 1, ["backup.keep", "finite"]),
    ("backup.keep 2.5", _toml("keep = 10", "keep = 2.5"), ["status", "{p}"], 1, ["backup.keep", "whole number"]),
    ("prelabel.min_dsc nan", _toml("min_dsc = 0.5", "min_dsc = nan"), ["status", "{p}"], 1,
     ["prelabel.min_dsc", "finite"]),
    ("gaussian sigma nan", _toml('{ step = "percentile_normalise", low = 0.5, high = 99.5 }',
                                 '{ step = "gaussian", sigma = nan }'), ["status", "{p}"], 1,
     ["sigma", "preprocess.pipeline", "finite"]),
    ("step parameter -inf", _toml('box_method = "auto"\nparams = {  }',
                                  'box_method = "auto"\nparams = { onnx = { threshold = -inf } }'),
     ["status", "{p}"], 1, ["prelabel.params.onnx.threshold", "finite"]),
    ("inspection weight nan", _toml("segment_count = 1.0", "segment_count = nan"), ["status", "{p}"], 1,
     ["inspection.weights.segment_count", "finite"]),
    ("toml nested 900 deep", _nested(900), ["status", "{p}"], 1, ["project.toml", "nested too deeply"]),
    ("toml nested 10000 deep", _nested(10000), ["status", "{p}"], 1, ["project.toml", "nested too deeply"]),
    # model cards: NaN and inf are refused at import, naming the field
    ("card threshold NaN", _card(threshold=math.nan), ["model", "import", "{p}", "{tmp}/m.onnx"], 1,
     ["'threshold'", "finite"]),
    ("card scale NaN", _card(scale=math.nan), ["model", "import", "{p}", "{tmp}/m.onnx"], 1, ["'scale'", "finite"]),
    ("card threshold Infinity", _card(threshold=math.inf), ["model", "import", "{p}", "{tmp}/m.onnx"], 1,
     ["'threshold'", "finite"]),
    # wrong arguments: exit 2, argparse's one line
    ("select --top 0", _none, ["select", "{p}", "--top", "0"], 2, ["--top", "1 or more"]),
    ("select --top -3", _none, ["select", "{p}", "--top", "-3"], 2, ["--top", "1 or more"]),
    ("evaluate box --samples 0", _none, ["evaluate", "box", "{p}", "--samples", "0"], 2, ["--samples"]),
    ("job export --validation 1.5", _none, ["job", "export", "{p}", "--out", "{tmp}/job.zip", "--validation", "1.5"],
     2, ["--validation", "below 1"]),
    ("job export --validation nan", _none,
     ["job", "export", "{p}", "--out", "{tmp}/job.zip", "--validation", "nan"], 2, ["--validation"]),
    ("job export --epochs 0", _none, ["job", "export", "{p}", "--out", "{tmp}/job.zip", "--epochs", "0"], 2,
     ["--epochs"]),
    # outputs that would destroy something, or cannot be written
    ("evaluate --plot under a file", _none,
     ["evaluate", "prelabel", "{p}", "--methods", "otsu", "--plot", "{p}/../images/000.png/dsc.png"], 1,
     ["is a file"]),
    ("evaluate --plot where no folder can be made", _none,
     ["evaluate", "prelabel", "{p}", "--methods", "otsu", "--plot", "/proc/no-such-folder/dsc.png"], 1,
     ["could not be created"]),
    ("evaluate --plot unwritable, folders mode", _none,
     ["evaluate", "prelabel", "--images", "{p}/../images", "--masks", "{p}/../masks", "--methods", "otsu",
      "--plot", "/proc/no-such-folder/dsc.png"], 1, ["--plot", "could not be created"]),
    ("evaluate --plot a folder", _none, ["evaluate", "prelabel", "{p}", "--methods", "otsu", "--plot", "{tmp}"], 1,
     ["is a folder"]),
    ("evaluate --plot over labels.sqlite", _none,
     ["evaluate", "prelabel", "{p}", "--methods", "otsu", "--plot", "{p}/labels.sqlite"], 1,
     ["inside the project folder"]),
    ("evaluate --plot over an image", _none,
     ["evaluate", "prelabel", "{p}", "--methods", "otsu", "--plot", "{p}/../images/000.png"], 1, ["image"]),
    ("job export over labels.sqlite", _none, ["job", "export", "{p}", "--out", "{p}/labels.sqlite"], 1,
     ["inside the project folder"]),
    ("job export over an image", _none, ["job", "export", "{p}", "--out", "{p}/../images/001.png"], 1, ["image"]),
    ("job export to a folder", _none, ["job", "export", "{p}", "--out", "{tmp}"], 1, ["is a folder"]),
    ("job export under a file", _none, ["job", "export", "{p}", "--out", "{p}/../images/000.png/job.zip"], 1,
     ["is a file"]),
    ("job export with a damaged label", _damaged_label, ["job", "export", "{p}", "--out", "{tmp}/job.zip"], 3,
     ["left out 001.png", "damaged"]),
    # plug-ins: named and skipped, or stopped with one line naming the step and its file
    ("plug-in raises at import", _plugin("needs_key.py", RAISES_AT_IMPORT), ["select", "{p}", "--top", "1"], 0,
     ["plug-in needs_key.py was skipped", "needs a licence key"]),
    ("plug-in mask of the wrong shape", _plugin("wrong.py", WRONG_RESULTS),
     ["prelabel", "{p}", "--method", "tiny_mask", "--samples", "000.png"], 1,
     ["'tiny_mask'", "plugins/wrong.py", "shape (3, 3)"]),
    ("plug-in returns a bare array", _plugin("wrong.py", WRONG_RESULTS),
     ["prelabel", "{p}", "--method", "bare_array", "--samples", "000.png"], 1,
     ["'bare_array'", "plugins/wrong.py", "Prelabel"]),
    ("plug-in returns a float mask", _plugin("wrong.py", WRONG_RESULTS),
     ["prelabel", "{p}", "--method", "float_mask", "--samples", "000.png"], 1,
     ["'float_mask'", "plugins/wrong.py", "float32"]),
    ("plug-in takes a built-in's name", _plugin("mine.py", REPLACES_OTSU),
     ["prelabel", "{p}", "--method", "otsu", "--samples", "000.png"], 0,
     ["mine.py (step 'otsu')", "built-in prelabel step", "cannot replace it"]),
    ("plug-in leaves a thread running", _plugin("poller.py", STARTS_A_THREAD), ["select", "{p}", "--top", "1"], 0, []),
    # what comes from files is printed escaped
    ("project name with escapes, status", _evil_project_name, ["status", "{p}"], 0, []),
    ("sample name with escapes, select", _evil_sample_name, ["select", "{p}", "--top", "5"], 0, []),
    ("card name with escapes, model import", _card(name=EVIL), ["model", "import", "{p}", "{tmp}/m.onnx"], 0, []),
]


def _files(project: Path) -> dict[str, int]:
    """Every file of the project but the database's own (its content is ``labels_digest``'s)."""
    return {str(f.relative_to(project)): f.stat().st_mtime_ns for f in project.rglob("*")
            if f.is_file() and not f.name.startswith(("labels.sqlite", ".lock"))}


def _run(argv: list[str], p: Path, tmp: Path, **kwargs) -> CliResult:
    return run_cli(*[a.replace("{p}", str(p)).replace("{tmp}", str(tmp)) for a in argv], home=tmp / "home",
                   **kwargs)


@pytest.mark.parametrize("name,setup,argv,code,words", CASES, ids=[c[0] for c in CASES])
def test_bad_misc_input(project, tmp_path, name, setup, argv, code, words):
    out = tmp_path / "out"
    out.mkdir()
    images_before = {f.name: f.read_bytes() for f in (project.parent / "images").iterdir()}
    setup(project, out)
    before = labels_digest(project)
    files_before = _files(project)
    started = time.monotonic()
    result = _run(argv, project, out, timeout=90)
    assert_plain_failure(result, code, *words)
    assert labels_digest(project) == before
    assert {f.name: f.read_bytes() for f in (project.parent / "images").iterdir()} == images_before
    if code != 0:
        # One plain line (argparse adds its usage above it for a wrong argument).
        lines = [line for line in result.err.splitlines() if line.strip()]
        assert len(lines) == 1 or (code == 2 and lines[-1].startswith("labelassist")), result.err
        # Nothing the project holds was written or added (settings, models, backups, plots, zips).
        assert _files(project) == files_before
    if "plug-in" in name:
        # Nothing but the clean line reaches the terminal: no probe traceback, no plug-in output.
        assert "hello from a plug-in" not in result.out + result.err
        assert all(line.startswith(("plug-in ", "labelassist:")) for line in result.err.splitlines() if line), \
            result.err
    if name == "plug-in leaves a thread running":
        assert time.monotonic() - started < 30  # it used to wait for the thread forever
    if name == "plug-in takes a built-in's name":
        # The built-in otsu ran, not the plug-in's all-foreground mask.
        assert "foreground pixels" in result.out and f"{388 * 520} foreground" not in result.out
    if "escapes" in name:
        shown = result.out + result.err
        assert "\x1b" not in shown and "\x07" not in shown, shown
        assert "\\x1b[2J" in shown and "\\nforged line" in shown, shown
        assert not any(line.startswith("forged line") for line in shown.splitlines())


def test_the_probe_traceback_never_reaches_the_terminal_with_json(project, tmp_path):
    """Item 17 (plug-in half): stdout stays parseable JSON, stderr holds only the one clean line."""
    _plugin("needs_key.py", RAISES_AT_IMPORT)(project, tmp_path)
    result = run_cli("select", project, "--top", "2", "--json", home=tmp_path / "home")
    assert result.code == 0, result.err
    assert [line for line in result.err.splitlines() if line.strip()] == [
        "plug-in needs_key.py was skipped: RuntimeError: needs a licence key"]
    assert len(json.loads(result.out)) == 2


def test_inspect_on_a_cp1252_terminal(project, tmp_path):
    """``inspect`` prints γ and ≤; a Windows console in cp1252 has neither: shown escaped, exit 0."""
    result = run_cli("inspect", project, home=tmp_path / "home", env={"PYTHONIOENCODING": "cp1252"})
    assert result.code == 0, result.err
    assert "Traceback" not in result.err and "unexpected error" not in result.err
    assert f"of {LABELLED} labels warn" in result.out and "\\u03b3" in result.out


def test_validate_settings_refuses_deep_nesting_without_recursing():
    """A settings dict nested thousands deep (from the UI or a tool, not only from TOML) is one
    plain ProjectError, not a RecursionError."""
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ProjectError, match="nested more than"):
        validate_settings({"prelabel": {"params": {"otsu": {"x": deep}}}})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_step_parameter_is_never_nan_or_infinite(value):
    """What the UI or the API passes to a step is checked like project.toml (NaN passes ranges)."""
    with pytest.raises(PluginError, match="'sigma' must be a finite number"):
        Param("sigma", float, 1.0, low=0.0, high=50.0).check(value, "preprocess 'gaussian'")
    with pytest.raises(PluginError, match="finite"):
        Param("seed", int, 0).check(value, "selector 'random'")


def test_safe_escapes_control_characters_only():
    from labelassist.textout import safe

    assert safe(EVIL) == "cells\\x1b[2J\\x1b]0;owned\\x07\\nforged line"
    assert safe("γ ≤ 0.75 – Zellkern 🙂 D:\\Labels") == "γ ≤ 0.75 – Zellkern 🙂 D:\\Labels"
    assert safe("abc\u202egnp.exe") == "abc\\u202egnp.exe"  # a name that would read backwards
    assert safe("bad\udcffname") == "bad\\udcffname"  # a file name that is not UTF-8
    assert safe("\x9b31m") == "\\x9b31m"  # the one-byte CSI of C1 controls


WRONG_KINDS = '''
import numpy as np
from labelassist.workflow.inspection import Check
from labelassist.workflow.postprocess import Change
from labelassist.workflow.registry import register


@register("preprocess", "doubles")
def doubles(image):
    """float64 instead of float32."""
    return np.zeros(image.shape, np.float64)


@register("postprocess", "crops")
def crops(mask):
    """A mask of another shape."""
    small = np.asarray(mask)[:10, :10].copy()
    return small, Change.between(small, small)


@register("inspect", "overjoyed")
def overjoyed(mask, context=None):
    """A score above 1."""
    return Check(name="overjoyed", score=2.0, passed=True, message="great")


@register("selector", "short")
def short(pool):
    """One score too few."""
    return np.zeros(len(pool) - 1)
'''


def test_each_kind_of_plugin_result_is_checked_and_named(project, tmp_path):
    """A wrong result of any kind of plug-in step is one PluginError naming the step and its file,
    through the real helper process (what every call site runs: ``step.func``)."""
    import numpy as np

    from labelassist.workflow.registry import for_project
    from labelassist.workflow.selector import Pool

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "wrong_kinds.py").write_text(WRONG_KINDS, encoding="utf-8")
    with for_project(folder, entry_points=False) as registry:  # closing it stops its helper
        assert registry.failed_plugins == {}
        image = np.zeros((40, 50), np.uint8)
        mask = np.zeros((40, 50), bool)
        mask[5:20, 5:20] = True
        calls = {
            ("preprocess", "doubles"): ((image,), "float32"),
            ("postprocess", "crops"): ((mask,), "shape (10, 10)"),
            ("inspect", "overjoyed"): ((mask, None), "score of 2.0"),
            ("selector", "short"): ((Pool(np.zeros((6, 3), np.float32), np.zeros(6, bool)),), "6 finite scores"),
        }
        for (kind, name), (args, words) in calls.items():
            with pytest.raises(PluginError) as caught:
                registry.get(kind, name).func(*args)
            assert f"'{name}' (plugins/wrong_kinds.py)" in str(caught.value) and words in str(caught.value)
