"""Shared pieces of the bad-input tables (``tests/test_bad_input_*.py``).

Every row of those tables holds the same three promises of the README: a bad input or fault ends
with the documented exit code, says so in one plain line (no traceback, no "unexpected error"), and
leaves the stored labels bit for bit as they were.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from labelassist.cli import main

REPO = Path(__file__).resolve().parents[1]
SCRATCH = "scratch_assay"


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    @property
    def message(self) -> str:
        """The last non-empty line of stderr (where the CLI says what went wrong)."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def run_cli(*argv, home: Path, stdin: str | None = None, timeout: float = 300, env: dict | None = None) -> CliResult:
    """``python -m labelassist ARGV...`` in a child process, as a user runs it."""
    environ = dict(os.environ, LABELASSIST_HOME=str(home), PYTHONIOENCODING=os.environ.get("PYTHONIOENCODING", "utf-8"))
    environ.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "labelassist", *[str(a) for a in argv]], capture_output=True,
                          text=True, timeout=timeout, env=environ, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_plain_failure(result: CliResult, code: int, *words: str) -> None:
    """The exit code, no traceback, no raw exception, and a last line that names the words given."""
    assert result.code == code, (result.code, result.out, result.err)
    assert "Traceback" not in result.err and "Traceback" not in result.out, result.err
    assert "unexpected error" not in result.err.lower(), result.err
    for word in words:
        assert word.lower() in result.err.lower(), (word, result.err)


def labels_digest(project: Path) -> str:
    """SHA-256 over every stored label version (all columns, mask blobs included), read read-only.

    Read through SQLite with ``mode=ro`` (never plain file I/O: see docs/reliability.md, the POSIX
    lock rule), so it is safe beside a process that has the project open.
    """
    db = Path(project) / "labels.sqlite"
    conn = sqlite3.connect(db.absolute().as_uri() + "?mode=ro", uri=True, timeout=10)
    try:
        digest = hashlib.sha256()
        for row in conn.execute("SELECT * FROM labels ORDER BY id"):
            digest.update(repr(row).encode("utf-8"))
        return digest.hexdigest()
    finally:
        conn.close()


def scratch_template(root: Path, datasets: Path, images: int = 6, labelled: int | None = None,
                     copy: bool = False) -> Path:
    """A project made by ``labelassist init`` from the first scratch_assay images: the template a table copies.

    Parameters
    ----------
    root : Path
        An empty folder; the images go to ``root/images``, their masks to ``root/masks`` and the
        project to ``root/p`` (beside its images: the samples' paths are relative).
    datasets : Path
        The real datasets (the ``datasets`` fixture).
    images : int
        How many images, in file-name order.
    labelled : int, optional
        How many of them (the first) come with their mask; all by default.
    copy : bool
        Copy the files instead of linking them to the shared datasets (a row that points an output
        at an image must never write through a link).

    Returns
    -------
    Path
        The project folder.
    """
    place = shutil.copyfile if copy else (lambda src, dst: dst.symlink_to(src))
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for k, src in enumerate(sorted((datasets / SCRATCH / "images").iterdir())[:images]):
        place(src, root / "images" / src.name)
        if labelled is None or k < labelled:
            place(datasets / SCRATCH / "masks" / src.name, root / "masks" / src.name)
    assert main(["init", str(root / "p"), "--images", str(root / "images"), "--masks", str(root / "masks")]) == 0
    return root / "p"


def copy_of(template: Path, tmp_path: Path) -> Path:
    """A copy of a :func:`scratch_template` project with its images (``cp -a``), for one case to change."""
    subprocess.run(["cp", "-a", str(template.parent), str(tmp_path / "t")], check=True)
    return tmp_path / "t" / template.name
