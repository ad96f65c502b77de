"""The ``labelassist`` command line.

Every sub-command has ``--help``; errors end with a non-zero exit and one line
saying what and why (the details go to the log file); anything that walks many
files shows a progress bar on a terminal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path

from labelassist import __version__
from labelassist.cli_evaluate import add_measuring_commands
from labelassist.cli_support import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, count_arg, open_project, share_arg
from labelassist.errors import LabelAssistError
from labelassist.logsetup import log_file, setup_logging
from labelassist.paths import data_home
from labelassist.progress import ProgressBar

log = logging.getLogger("labelassist.cli")


def cmd_init(args) -> int:
    from labelassist.textout import printable
    from labelassist.importer import import_images
    from labelassist.project import Project

    for source in args.images:
        if not Path(source).exists():
            raise LabelAssistError(f"{printable(source)} does not exist; nothing was created")
    if args.masks and not Path(args.masks).is_dir():
        raise LabelAssistError(f"the mask folder {printable(args.masks)} does not exist; nothing was created")
    with Project.create(args.project, name=args.name) as project:
        print(printable(f"created project {project.name!r} in {project.folder}"))
        with ProgressBar("reading images") as bar:
            report = import_images(project, args.images, masks=args.masks, author=args.author, progress=bar)
        return _print_import(report)


def cmd_import(args) -> int:
    from labelassist.importer import import_images

    with open_project(args.project) as project:
        project.lock("labelassist import")
        with ProgressBar("reading images") as bar:
            report = import_images(project, args.sources, masks=args.masks, author=args.author, progress=bar)
        return _print_import(report)


def _print_import(report) -> int:
    for line in report.lines():
        print(line)
    problem = report.problem_line()
    if problem:
        # Last, on stderr where a failure is read: why it was done in part and what was added
        # (a stop part-way never says "nothing was changed").
        print(f"labelassist: {problem}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_PARTIAL


def cmd_relink(args) -> int:
    from labelassist.importer import relink

    with open_project(args.project) as project:
        project.lock("labelassist relink")
        with ProgressBar("looking for moved images") as bar:
            report = relink(project, args.source, progress=bar)
        print(f"found {report.relinked} moved image{'s' * (report.relinked != 1)} again "
              f"({report.files_checked} files checked)")
        if report.unreadable:
            from labelassist.textout import printable

            # Skipped, not fatal: one unreadable file must not stop the search for the others.
            shown = ", ".join(printable(p) for p in report.unreadable[:5])
            more = f" and {len(report.unreadable) - 5} more" if len(report.unreadable) > 5 else ""
            print(f"skipped {len(report.unreadable)} file{'s' * (len(report.unreadable) != 1)} that could not "
                  f"be read: {shown}{more}")
        if report.still_missing:
            shown = ", ".join(report.still_missing[:5])
            more = f" and {len(report.still_missing) - 5} more" if len(report.still_missing) > 5 else ""
            print(f"still missing: {shown}{more}")
            return EXIT_PARTIAL
        return EXIT_OK


def cmd_status(args) -> int:
    with open_project(args.project) as project:
        counts = project.store.counts()
        missing = sum(1 for s in project.store.samples() if not project.resolve(s.path).is_file())
        changed = project.changed_images()
        status = {"project": project.name, "folder": str(project.folder), **counts, "missing_files": missing,
                  "changed_files": len(changed), "changed": [s.name for s in changed]}
        if args.json:
            print(json.dumps(status, indent=2))
        else:
            from labelassist.textout import safe  # names come from files: no raw control characters

            total = counts["samples"]
            pct = 100.0 * counts["labelled"] / total if total else 0.0
            print(f"{safe(project.name)} ({safe(project.folder)})")
            print(f"  samples         {total}")
            print(f"  labelled        {counts['labelled']} ({pct:.0f} %)")
            print(f"  sequences       {counts['sequences']}")
            print(f"  label versions  {counts['label_versions']}")
            if missing:
                print(f"  missing files   {missing} (run 'labelassist relink {safe(args.project)} FOLDER')")
            if changed:
                names = ", ".join(safe(s.name) for s in changed[:5]) + (
                    f" and {len(changed) - 5} more" if len(changed) > 5 else "")
                print(f"  changed files   {len(changed)} (replaced after import; their labels are kept but "
                      f"not used: {names})")
        return EXIT_OK


def cmd_export(args) -> int:
    from labelassist.export import damaged_lines, export_coco, export_png

    with open_project(args.project) as project:
        with ProgressBar(f"exporting {args.format}") as bar:
            if args.format == "png":
                report = export_png(project, args.out, progress=bar)
            else:
                report = export_coco(project, args.out, progress=bar)
        print(f"exported {report.labels} label{'s' * (report.labels != 1)} to {Path(args.out).absolute()}")
        if report.not_logged:
            # Exporting from a write-protected stick is a normal use: the files stand, only the log lacks it.
            print("labelassist: note: this export is not in the project's event log (the project could not be "
                  "written); the exported files are complete", file=sys.stderr)
        for line in damaged_lines(report.damaged, project.folder):
            print(f"labelassist: {line}", file=sys.stderr)
        return EXIT_PARTIAL if report.damaged else EXIT_OK


def cmd_job_export(args) -> int:
    from labelassist.training.job import export_job

    with open_project(args.project) as project:
        config = {"epochs": args.epochs} if args.epochs else None
        with ProgressBar("writing the training job") as bar:
            summary = export_job(project, Path(args.out), validation_fraction=args.validation, seed=args.seed,
                                 config=config, progress=bar)
        from labelassist.textout import safe  # paths and sample names come from files

        print(f"wrote {safe(summary.path.absolute())}: {len(summary.train)} training and "
              f"{len(summary.validation)} validation samples, {summary.bytes / 1e6:.1f} MB"
              + (f"; {len(summary.skipped)} left out" if summary.skipped else ""))
        print("train it where a GPU is (python train.py, see its README), then: "
              f"labelassist model import {safe(args.project)} model.onnx")
        # Left-out samples make the job "done in part" (exit 3), each named, like an export.
        for line in summary.skipped[:10]:
            print(f"labelassist: left out {safe(line)}", file=sys.stderr)
        if len(summary.skipped) > 10:
            print(f"labelassist: and {len(summary.skipped) - 10} more left out (listed in the job's job.json)",
                  file=sys.stderr)
        return EXIT_PARTIAL if summary.skipped else EXIT_OK


def cmd_model_import(args) -> int:
    from labelassist import models

    with open_project(args.project) as project:
        card = None
        if args.card:
            card = Path(args.card)
        elif not models.card_path(Path(args.model)).is_file():
            suggested = models.suggest_card(Path(args.model))
            if not args.accept_suggested_card:
                print(json.dumps(suggested, indent=2))
                raise LabelAssistError(
                    f"{Path(args.model).name} has no model card beside it; check the card printed above and "
                    "import again with --accept-suggested-card, or give --card FILE")
            card = suggested
        report = models.install_model(project, Path(args.model), card=card, max_seconds=args.max_seconds)
        from labelassist.textout import safe  # the card's name and version are whatever its file says

        print(safe(report.message))
        return EXIT_OK


def cmd_backup(args) -> int:
    from labelassist.backup import backup_now

    with open_project(args.project) as project:
        path = backup_now(project.store, project.backup_dir, keep=int(project.settings["backup"]["keep"]))
        print(f"backed up to {path}")
        return EXIT_OK


def cmd_restore(args) -> int:
    from labelassist.backup import list_backups, restore
    from labelassist.project import STORE_FILE, Project

    folder = Path(args.project).absolute()
    if not (folder / "project.toml").is_file():
        raise LabelAssistError(f"{folder} is not a Label Assistant project (it has no project.toml)")
    backups = list_backups(folder / "backups")
    if not backups:
        raise LabelAssistError(f"{folder} has no backups yet (they are in {folder / 'backups'})")
    if args.list or args.backup is None:
        print("backups, newest first (restore one with --backup NAME or --backup 1):")
        for k, b in enumerate(backups, 1):
            count = f"{b.labels} label versions" if b.labels is not None else "unreadable"
            print(f"  {k}. {b.name}  {b.taken_at:%Y-%m-%d %H:%M:%S} UTC  {count}")
        return EXIT_OK
    chosen = next((b for b in backups if b.name == args.backup), None)
    if chosen is None and args.backup.isdigit() and 1 <= int(args.backup) <= len(backups):
        chosen = backups[int(args.backup) - 1]
    if chosen is None:
        raise LabelAssistError(f"there is no backup {args.backup!r}; list them with --list")
    from labelassist.project import ProjectLock

    lock = ProjectLock(folder)
    lock.acquire("labelassist restore")
    try:
        restore(folder, chosen)
    finally:
        lock.release()
    with Project.open(folder) as project:
        counts = project.store.counts()
        project.store.log_event("restore", backup=chosen.name)
    print(f"restored {chosen.name}: {counts['label_versions']} label versions of {counts['samples']} samples; "
          f"the replaced {STORE_FILE} was kept beside it")
    return EXIT_OK


def cmd_bench(args) -> int:
    import subprocess

    script = Path(__file__).resolve().parents[2] / "bench" / "run.py"
    if not script.is_file():
        raise LabelAssistError("the benchmarks come with a source checkout: bench/run.py was not found")
    flags = [f for f, on in (("--quick", args.quick), ("--json", args.json), ("--skip-canvas", args.skip_canvas)) if on]
    return subprocess.call([sys.executable, str(script), *flags])


def cmd_demo(args) -> int:
    from labelassist.demo_project import demo_project

    folder = demo_project(Path(args.folder) if args.folder else None)
    print(f"demo project: {folder}")
    if args.no_open:
        return EXIT_OK
    return _open_kiosk(folder, args)


def cmd_kiosk(args) -> int:
    from labelassist import kiosk_settings

    if args.project == "set-pin":
        return _set_pin(args)
    if args.project == "check":
        problems = kiosk_settings.problems()
        print(f"kiosk settings: {kiosk_settings.settings_path()}")
        for problem in problems:
            print(f"  problem: {problem}")
        print("  no problems found" if not problems else f"  {len(problems)} problem(s)")
        if problems:  # scripts that only look at stderr still get the what and why in one line
            print(f"labelassist: error: kiosk settings: {len(problems)} problem(s), the first: {problems[0]}",
                  file=sys.stderr)
        return EXIT_OK if not problems else EXIT_ERROR
    if args.project == "start":
        # What the tablet's kiosk shell runs: the project kiosk.toml names, else the demo.
        folder = kiosk_settings.project_folder()
        if folder is None:
            from labelassist.demo_project import demo_project

            folder = demo_project()
        args.project = str(folder)
    with open_project(args.project):
        pass  # refuse a folder that is not a project before any window opens
    return _open_kiosk(Path(args.project), args)


def _set_pin(args) -> int:
    """``labelassist kiosk set-pin``: store the admin PIN (salted hash) in kiosk.toml."""
    import getpass

    from labelassist import kiosk_settings

    if args.pin_stdin:
        pin = sys.stdin.readline().strip()
    else:
        pin = getpass.getpass("new admin PIN (4 to 12 digits): ")
        if getpass.getpass("the same PIN again: ") != pin:
            raise LabelAssistError("the two PINs differ; nothing was changed")
    if not kiosk_settings.valid_pin(pin):
        # only what the on-screen keypad can type: a PIN it cannot enter locks the admin out
        raise LabelAssistError(f"a PIN is {kiosk_settings.PIN_MIN_DIGITS} to {kiosk_settings.PIN_MAX_DIGITS} "
                               "digits 0-9 (what the keypad can type); nothing was changed")
    path = kiosk_settings.set_pin(pin)
    print(f"admin PIN stored (salted hash) in {path}")
    return EXIT_OK


def _open_kiosk(folder: Path, args) -> int:
    try:
        from labelassist.ui import app as ui_app
    except ImportError as exc:
        if exc.name and exc.name.startswith("labelassist.ui"):
            print("the touch UI is not part of this version yet; open the project above with the CLI")
            return EXIT_OK
        raise
    return ui_app.run(folder, windowed=getattr(args, "windowed", False))


def _smoke(args) -> int:
    from labelassist.smoke import run_smoke  # packaging: the bundle's self-test

    return run_smoke()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labelassist",
        description="Label Assistant kiosk: assisted labelling of binary segmentation masks, offline.",
    )
    parser.add_argument("--version", action="version", version=f"labelassist {__version__}")
    parser.add_argument("--verbose", "-v", action="store_true", help="also print the log on the terminal")
    parser.add_argument("--smoke", action="store_true",
                        help="self-test: open the UI on the demo project, pre-label, paint, save, read back, exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("init", help="create a project and import images",
                       description="Create a project folder and import images (folders are walked recursively).")
    p.add_argument("project", metavar="PROJECT", help="folder of the new project")
    p.add_argument("--images", required=True, nargs="+", metavar="SRC", help="image files or folders")
    p.add_argument("--masks", metavar="DIR", help="folder of existing masks, matched to the images by file stem")
    p.add_argument("--name", help="project name (default: the folder name)")
    p.add_argument("--author", help="who the imported labels are from (default: your user name)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("import", help="add images to a project",
                       description="Add image files, TIFF stacks, videos or folders to a project.")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("sources", nargs="+", metavar="SRC")
    p.add_argument("--masks", metavar="DIR", help="folder of existing masks, matched by file stem")
    p.add_argument("--author")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("relink", help="find moved images again by their content",
                       description="Look under SRC for files whose content matches images the project cannot find.")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("source", metavar="SRC")
    p.set_defaults(func=cmd_relink)

    p = sub.add_parser("status", help="samples, labelled samples, sequences, label versions")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("export", help="export the latest label of every sample",
                       description="PNG masks named like their images (0/255), or COCO JSON with RLE segmentations. "
                                   "A label whose stored data is damaged is named and left out (exit 3).")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--format", choices=["png", "coco"], default="png")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="a folder outside the project that does not hold the images (checked before writing)")
    p.set_defaults(func=cmd_export)

    add_measuring_commands(sub)

    p = sub.add_parser("bench", help="run the benchmarks (from a source checkout)",
                       description="Run bench/run.py: every performance figure with its alternative measured in "
                                   "the same run, written to bench/results/latest.json.")
    p.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes")
    p.add_argument("--json", action="store_true")
    p.add_argument("--skip-canvas", action="store_true", help="leave out the GUI figures")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("job", help="training jobs for a GPU machine")
    job_sub = p.add_subparsers(dest="what", metavar="WHAT")
    job_sub.required = True
    q = job_sub.add_parser("export", help="write the labelled data and a training script into a zip",
                           description="Write the labelled images and masks, a train/validation split, the "
                                       "project's pre-processing and a self-contained PyTorch training script.")
    q.add_argument("project", metavar="PROJECT")
    q.add_argument("--out", required=True, metavar="ZIP")
    q.add_argument("--validation", type=share_arg, default=0.2, help="fraction of labelled samples held out")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--epochs", type=count_arg, help="training epochs (default: the script's)")
    q.set_defaults(func=cmd_job_export)

    p = sub.add_parser("model", help="install a pre-label model")
    model_sub = p.add_subparsers(dest="what", metavar="WHAT")
    model_sub.required = True
    q = model_sub.add_parser("import", help="check an ONNX model against its card and install it",
                             description="Validate MODEL.onnx against its JSON card (beside it, or --card) and "
                                         "make it the project's pre-label model; the previous one is kept.")
    q.add_argument("project", metavar="PROJECT")
    q.add_argument("model", metavar="MODEL.onnx")
    q.add_argument("--card", metavar="JSON", help="the model card, when it is not beside the model")
    q.add_argument("--accept-suggested-card", action="store_true",
                   help="for a model without a card: use the card printed by a first try")
    q.add_argument("--max-seconds", type=float, default=10.0, help="refuse models slower than this per input")
    q.set_defaults(func=cmd_model_import)

    p = sub.add_parser("backup", help="take a backup of the label database now",
                       description="Write a consistent copy of labels.sqlite into PROJECT/backups/.")
    p.add_argument("project", metavar="PROJECT")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="list the backups, or put one back in place",
                       description="Without --backup, list the backups; with it, replace labels.sqlite by that "
                                   "backup (the replaced file is kept, renamed).")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--backup", metavar="NAME", help="file name of the backup, or its number in the list")
    p.add_argument("--list", action="store_true", help="only list the backups")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("kiosk", help="open the touch UI on a project (fullscreen, locked)",
                       description="Open the labelling kiosk on PROJECT; leaving needs the admin PIN. "
                                   "'labelassist kiosk start' opens the project kiosk.toml names (else the demo); "
                                   "'kiosk set-pin' stores a new admin PIN; 'kiosk check' checks kiosk.toml.")
    p.add_argument("project", metavar="PROJECT", help="the project folder, or start, set-pin, check")
    p.add_argument("--pin-stdin", action="store_true", help="with set-pin: read the PIN from standard input")
    p.add_argument("--windowed", action="store_true", help="a window instead of the locked fullscreen kiosk")
    p.set_defaults(func=cmd_kiosk)

    p = sub.add_parser("demo", help="open the kiosk on a demo project with shipped images",
                       description="Create (or reuse) the demo project and open the kiosk on it.")
    p.add_argument("--folder", help="where the demo project lives (default: the app's data folder)")
    p.add_argument("--windowed", action="store_true", help="a window instead of the locked fullscreen kiosk")
    p.add_argument("--no-open", action="store_true", help="only create the demo project and print where it is")
    p.set_defaults(func=cmd_demo)

    # Hidden (no help=): the trainer child the UI starts for a training round (training/child.py).
    p = sub.add_parser("_train-round")
    p.add_argument("folder", metavar="FOLDER")
    p.set_defaults(func=cmd_train_round)
    return parser


def cmd_train_round(args) -> int:
    from labelassist.training import child  # torch is imported only in the child process

    return child.main(args.folder)


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code (0 done, 1 error, 2 wrong arguments, 3 done in part).

    With ``argv`` None the command line is the process's own (the console script, ``python -m
    labelassist``, the bundle): then the process also ends here once the command is done, even when
    a plug-in left a thread running (:func:`_end_despite_threads`). Called with ``argv`` (tests,
    other Python code) it returns and leaves the process alone.
    """
    _tolerant_output()
    before = set(threading.enumerate())
    code = _run(argv)
    if argv is None:
        _end_despite_threads(code, before)
    return code


def _tolerant_output() -> None:
    """Make printing never fail on encoding: a character the terminal's encoding lacks (γ on a
    cp1252 console) is written as an escape (``\\u03b3``) instead of raising UnicodeEncodeError
    half-way through a command's output."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # None: no console, or not a text stream
        if reconfigure is None:
            continue
        try:
            reconfigure(errors="backslashreplace")
        except (ValueError, OSError, AttributeError):
            pass


# Seconds the threads a command leaves behind get to finish before the process ends anyway.
_STRAY_THREAD_GRACE_S = 2.0


def _end_despite_threads(code: int, before: set) -> None:
    """End the process with ``code`` when a non-daemon thread started during the command still runs.

    Python waits for every non-daemon thread before a process exits, so one a plug-in starts and
    never stops (at import, in the parent process) would keep every command from ending. The
    command's own work is done when it returns (projects and stores are closed by then), so such
    a thread gets a short grace period, then the output is flushed, the log closed, the plug-in
    helper process stopped, and the process ends with ``os._exit``. Marking the threads as daemons
    instead is not possible once they run, and it would not cover threads started by libraries;
    when no such thread is left, nothing happens and Python's normal exit (atexit handlers) runs.
    """
    import time

    deadline = time.monotonic() + _STRAY_THREAD_GRACE_S
    stray = []
    for thread in threading.enumerate():
        if thread in before or thread.daemon or thread is threading.current_thread():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            stray.append(thread.name)
    if not stray:
        return
    log.warning("ending the process although thread(s) %s still run (started during the command, "
                "e.g. by a plug-in)", ", ".join(stray))
    from labelassist.workflow import registry

    registry.stop_helper()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)


def _run(argv: list[str] | None) -> int:
    """Parse ``argv`` and run the command; every error ends as one plain line (details in the log)."""
    from labelassist.textout import safe  # messages quote names read from files

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(data_home() / "logs", verbose=args.verbose)
    log.info("labelassist %s: %s", __version__, " ".join(sys.argv[1:] if argv is None else argv))
    if args.smoke:
        args.func = _smoke
    elif args.command is None:
        parser.print_usage(sys.stderr)
        print("labelassist: error: give a COMMAND (see labelassist --help)", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except LabelAssistError as exc:
        log.error("%s", exc, exc_info=True)
        print(f"labelassist: error: {safe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("labelassist: stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``labelassist status | head``): the usual quiet exit of a Unix tool.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at interpreter exit
        except OSError:
            pass
        return 141
    except Exception as exc:  # noqa: BLE001 - never a stack trace for the user
        log.exception("unexpected error")
        print(f"labelassist: unexpected error: {type(exc).__name__}: {safe(exc)} (details in {log_file()})",
              file=sys.stderr)
        return EXIT_ERROR
