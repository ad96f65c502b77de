"""Logging: full details (tracebacks included) to a rotating file, never on the kiosk screen."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

_LOG_FILE: Path | None = None


def setup_logging(folder: Path, verbose: bool = False) -> Path | None:
    """Send the ``labelassist`` loggers to ``folder/labelassist.log`` (1 MB x 5 files).

    A folder that cannot be written (read-only medium) leaves file logging off
    rather than stopping the app. ``verbose`` also prints records on stderr.
    """
    global _LOG_FILE
    root = logging.getLogger("labelassist")
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_labelassist", False):
            root.removeHandler(handler)
            handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(folder / "labelassist.log", maxBytes=1 << 20,
                                                       backupCount=5, encoding="utf-8")
        handler.setFormatter(fmt)
        handler._labelassist = True
        root.addHandler(handler)
        _LOG_FILE = folder / "labelassist.log"
    except OSError:
        _LOG_FILE = None
    if verbose:
        console = logging.StreamHandler()
        console.setFormatter(fmt)
        console._labelassist = True
        root.addHandler(console)
    root.propagate = False
    return _LOG_FILE


def log_file() -> Path | str:
    """The current log file, for messages that point the user to the details."""
    return _LOG_FILE or "the log (file logging is off)"
