"""What the command line's sub-commands share: exit codes, argument types, opening a project and
a session, picking samples, writing a ``--plot`` safely.

Split from ``cli.py`` so the groups of commands (``cli.py``, ``cli_evaluate.py``) use them
without importing one another.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from labelassist.errors import LabelAssistError

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL = 0, 1, 3


def _whole_number(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of {least} or more, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def count_arg(text: str) -> int:
    """argparse type: a whole number of 1 or more (``select --top``, ``evaluate box --samples``...).

    0 or a negative count is a wrong argument (exit 2), not an empty answer that reads like
    "every sample is labelled".
    """
    return _whole_number(text, 1, "1 or more")


def whole_number_arg(text: str) -> int:
    """argparse type: a whole number of 0 or more (``simulate --retrain-every``, where 0 is never)."""
    return _whole_number(text, 0, "0 (never) or more")


def share_arg(text: str) -> float:
    """argparse type: a share of at least 0 and below 1 (``job export --validation``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1 (0.2 holds out a fifth), got {text}")
    return value


def open_project(path: str):
    """Open the project folder ``path`` (a context manager); refuses a folder that is not one."""
    from labelassist.project import Project

    return Project.open(path)


def open_session(project, background: bool = False, learn: bool | None = None):
    """A Session on ``project`` (a context manager); each plug-in that was skipped gets a line on stderr.

    ``learn=True`` runs the instant learner on the project's newest labels (``learn``,
    ``prelabel --method auto``); by default a command's session learns nothing (it saves nothing).
    """
    from labelassist.session import Session
    from labelassist.textout import safe

    session = Session(project, background=background, own=False, learn=learn)
    for name, reason in session.plugin_errors.items():
        print(f"plug-in {safe(name)} was skipped: {safe(reason)}", file=sys.stderr)
    return session


def pick_samples(project, names: list[str] | None):
    """The samples given by name or id on the command line, in that order; every sample when none."""
    samples = project.store.samples()
    if not names:
        return samples
    by_name = {s.name: s for s in samples}
    by_id = {str(s.id): s for s in samples}
    picked = []
    for name in names:
        sample = by_name.get(name) or by_id.get(name)
        if sample is None:
            raise LabelAssistError(f"the project has no sample called {name!r} (give a name as 'status' lists it, or an id)")
        picked.append(sample)
    return picked


def check_plot_target(plot: Path, folders: tuple[Path, ...]) -> None:
    """Refuse a ``--plot`` file that would replace a folder, an input image or mask, or cannot be written.

    Checked before the evaluation runs, so a bad path costs nothing and changes nothing.
    """
    from labelassist.export import refuse_project_files, resolve_path

    target = plot.absolute()
    if target.is_dir():
        raise LabelAssistError(f"--plot {plot} is a folder; give a file name such as dsc.png (nothing was written)")
    resolved = resolve_path(target)
    refuse_project_files(resolved)  # never a label database, never inside any project's folder
    for folder in folders:
        inputs = resolve_path(folder)
        if resolved == inputs or inputs in resolved.parents:
            raise LabelAssistError(f"--plot {plot} is inside the input folder {folder}; give a file outside it "
                                   "(nothing was written)")
    parent = target.parent
    if not parent.is_dir():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LabelAssistError(f"the folder {parent} for --plot could not be created: "
                                   f"{exc.strerror or exc} (nothing was written)") from exc
    if not os.access(parent, os.W_OK):
        raise LabelAssistError(f"--plot {plot} cannot be written: the folder {parent} is not writable "
                               "(nothing was written)")


def write_plot(draw, plot: Path) -> None:
    """Draw into a temporary file beside ``plot``, then rename it over ``plot`` (never half a file)."""
    tmp = plot.with_name(f".{plot.name}.tmp")
    try:
        draw(tmp)
        os.replace(tmp, plot)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise LabelAssistError(f"the plot {plot} could not be written: {exc.strerror or exc}") from exc


def print_progress(message: str) -> None:
    """A progress line on stderr, at once (long runs: stdout may be a file read at the end)."""
    print(message, file=sys.stderr, flush=True)
