"""Where the app keeps its own data on this machine.

One place for the folder that holds the demo project, ``kiosk.toml`` and the
logs, so the command line, the kiosk settings and the UI agree on it without
importing one another.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """The app's own data folder (demo project, ``kiosk.toml``, logs).

    Returns
    -------
    folder : Path
        ``LABELASSIST_HOME`` when set; otherwise ``%LOCALAPPDATA%\\LabelAssist`` on
        Windows and ``$XDG_DATA_HOME/labelassist`` (default ``~/.local/share``) elsewhere.
        The folder is not created here.
    """
    if os.environ.get("LABELASSIST_HOME"):
        return Path(os.environ["LABELASSIST_HOME"])
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "LabelAssist"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "labelassist"
