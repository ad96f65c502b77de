"""The demo project: the T98G cell images shipped inside the package, with their masks.

Used by ``labelassist demo``, ``labelassist kiosk start`` (when ``kiosk.toml`` names
no project) and the bundle's self-test (``labelassist --smoke``).
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from labelassist.errors import LabelAssistError
from labelassist.importer import import_images
from labelassist.paths import data_home
from labelassist.project import SETTINGS_FILE, Project


def demo_project(folder: Path | None = None) -> Path:
    """Create (or reuse) the demo project from the images shipped inside the package.

    Parameters
    ----------
    folder : Path, optional
        Where the project goes; default ``data_home() / "demo-project"``. It must be
        new, empty, or hold a (possibly half-made) demo project.

    Returns
    -------
    folder : Path
        The project folder, opened once to check it is whole.

    Raises
    ------
    LabelAssistError
        The folder is a file, cannot be read, holds someone else's files, or the
        shipped images could not be copied; nothing was created.
    """

    folder = folder or data_home() / "demo-project"
    if folder.exists() and not folder.is_dir():
        raise LabelAssistError(f"the demo folder {folder} is a file, not a folder; nothing was created")
    if (folder / SETTINGS_FILE).exists():
        with Project.open(folder):
            pass  # opening checks it is whole
        return folder
    # Only our own leftovers (a demo whose creation was interrupted) may already be there:
    # the demo never writes its images and project into a folder of someone else's files.
    try:
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in ("images", "LICENSE-images")) \
            if folder.is_dir() else []
    except OSError as exc:
        raise LabelAssistError(f"the demo folder {folder} cannot be read ({exc.strerror}); nothing was created") \
            from exc
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise LabelAssistError(f"the demo folder {folder} is not empty and holds no demo project ({shown}); "
                               "choose an empty or new folder; nothing was created")
    shipped = resources.files("labelassist") / "demo"
    with resources.as_file(shipped) as demo_dir:
        # The package folder may be read-only or vanish with an update: keep a copy with the project.
        images = folder / "images"
        try:
            images.mkdir(parents=True, exist_ok=True)
            for src in sorted((demo_dir / "images").iterdir()):
                shutil.copy2(src, images / src.name)
            shutil.copy2(demo_dir / "LICENSE", folder / "LICENSE-images")
        except OSError as exc:
            raise LabelAssistError(f"the demo project could not be created in {folder}: "
                                   f"{exc.strerror or exc}") from exc
        with Project.create(folder, name="Demo: T98G cells") as project:
            import_images(project, [images], masks=demo_dir / "masks", author="demo")
    return folder
