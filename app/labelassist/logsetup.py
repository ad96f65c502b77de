"""Logging: full details (tracebacks included) to a rotating file, never on the kiosk screen.

The log is a help, never a reason to disturb the user: when it cannot be written (a full disk,
a medium pulled out, a read-only folder) the record is dropped and at most one plain line per
process says so on stderr. Python's default for a failing handler is to print "--- Logging
error ---" and a traceback on every record, which a command on a full disk would then print
before each of its own lines.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

_LOG_FILE: Path | None = None
# One process says "the log could not be written" once, whatever the number of failing records.
_told_unwritable = False


def unwritable_note(path: Path | str, exc: BaseException | None) -> str:
    """The one plain line that says the log file could not be written, and why."""
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    elif exc is not None:
        reason = type(exc).__name__
    else:
        reason = "unknown reason"
    return f"labelassist: note: the log file {path} could not be written ({reason}); carrying on without it"


def _tell_once(path: Path | str, exc: BaseException | None) -> None:
    global _told_unwritable
    if _told_unwritable:
        return
    _told_unwritable = True
    try:
        print(unwritable_note(path, exc), file=sys.stderr, flush=True)
    except Exception:  # noqa: BLE001 - stderr itself may be gone (a kiosk started without a console)
        pass


class QuietRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file whose write errors never reach the terminal as tracebacks.

    On a failed write the record is dropped, the file is closed (its unwritten buffer with it,
    so the failure does not repeat at every flush and at exit) and reopened by the next
    record: logging resumes by itself once the disk has room again.
    """

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        exc = sys.exc_info()[1]
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()  # flushes the pending bytes once more; the descriptor is closed either way
            except Exception:  # noqa: BLE001
                pass
        _tell_once(self.baseFilename, exc)


class QuietStreamHandler(logging.StreamHandler):
    """``--verbose`` console output that drops records stderr cannot take (closed, broken pipe)."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802
        pass


def setup_logging(folder: Path, verbose: bool = False) -> Path | None:
    """Send the ``labelassist`` loggers to ``folder/labelassist.log`` (1 MB x 5 files).

    A folder that cannot be written (read-only medium) leaves file logging off
    rather than stopping the app; a file that stops taking records (disk full) drops them
    with one plain line on stderr (:class:`QuietRotatingFileHandler`). ``verbose`` also
    prints records on stderr.
    """
    global _LOG_FILE
    # A safety net for every other handler in the process (Kivy's, a plug-in's): a failing
    # handler drops its record instead of printing "--- Logging error ---" and a traceback.
    logging.raiseExceptions = False
    root = logging.getLogger("labelassist")
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_labelassist", False):
            root.removeHandler(handler)
            handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = QuietRotatingFileHandler(folder / "labelassist.log", maxBytes=1 << 20, backupCount=5,
                                           encoding="utf-8")
        handler.setFormatter(fmt)
        handler._labelassist = True
        root.addHandler(handler)
        _LOG_FILE = folder / "labelassist.log"
    except OSError:
        _LOG_FILE = None
    if verbose:
        console = QuietStreamHandler()
        console.setFormatter(fmt)
        console._labelassist = True
        root.addHandler(console)
    root.propagate = False
    return _LOG_FILE


def log_file() -> Path | str:
    """The current log file, for messages that point the user to the details."""
    return _LOG_FILE or "the log (file logging is off)"
