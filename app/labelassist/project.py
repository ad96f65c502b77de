"""A project is a folder: ``project.toml`` (settings people can read) and ``labels.sqlite``.

Images are referenced, never copied: each sample keeps a path relative to the
project folder where possible and the file's content hash, so that a moved
image folder is found again (``labelassist relink``).

Layout::

    PROJECT/
      project.toml      name, label classes, expert priors, pre-processing,
                        selector and inspection weights, post-processing choices
      labels.sqlite     the store (samples, label versions, flags, features, events)
      plugins/          optional *.py files that register more workflow steps
      cache/            thumbnails and other things that can be rebuilt
"""

from __future__ import annotations

import copy
import errno
import math
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from labelassist import images
from labelassist.errors import ImageReadError, ProjectError
from labelassist.fileio import atomic_write_text, file_hash, text_to_path
from labelassist.store import Sample, Store, utc_now
from labelassist.tomlout import dump_toml

SETTINGS_FILE = "project.toml"
STORE_FILE = "labels.sqlite"

# Every setting a project has, with its default. A key missing from project.toml takes
# the default; a key project.toml has that is not listed here is refused (a typo must not
# silently do nothing). ``None`` means "no value": the step that reads it is off.
DEFAULT_SETTINGS: dict[str, Any] = {
    "project": {"name": "", "created": "", "author": ""},
    "labels": {"classes": ["foreground"]},
    # What the expert expects of a correct label; inspection warns when a label disagrees.
    "priors": {
        "segments": None,
        "holes": None,
        "area_fraction_min": 0.0,
        "area_fraction_max": 1.0,
        "min_segment_area": 0,
        "border_segments": None,
    },
    # The pre-processing pipeline h(x): one entry per step, applied in order.
    "preprocess": {"pipeline": [{"step": "percentile_normalise", "low": 0.5, "high": 99.5}]},
    # box_method: what a box drawn for tap-to-segment runs: "auto" (the better of the two on this
    # project's labels), "box_model" (LiteMedSAM, when installed) or "grabcut".
    # shipped_models: the models shipped with the kiosk are candidates for "auto" too.
    # learn: the instant learner trains on every saved label and is a candidate for "auto".
    # train: a U-Net is trained on the tablet after 5, 10, 20, 40 ... labels and when idle
    # (Admin's Pause and Resume switch it); installed only when it matches the newest labels better.
    "prelabel": {"method": "auto", "min_dsc": 0.5, "box_method": "auto", "params": {},
                 "shipped_models": True, "learn": True, "train": True},
    "selector": {
        "seed": 0,
        "weights": {
            "sequential": 0.0,
            "random": 0.0,
            "cherry_pick": 1.0,
            "sequence_aware": 1.0,
            "uncertainty": 0.0,
            "diversity": 0.0,
        },
        "params": {},
    },
    "inspection": {
        "gamma0": 0.75,
        "weights": {
            "segment_count": 1.0,
            "hole_count": 1.0,
            "area_fraction": 1.0,
            "border_touching": 0.0,
            "tiny_fragments": 1.0,
            "model_disagreement": 1.0,
            "prelabel_change": 0.5,
        },
        "params": {},
    },
    # Rolling copies of labels.sqlite in backups/: at most every `minutes` while labelling, and at exit.
    "backup": {"minutes": 10.0, "keep": 10},
    "postprocess": {
        "suggest": [
            {"step": "fill_holes", "max_area": 0},
            {"step": "remove_small", "min_area": 20},
        ]
    },
}

BOX_METHODS = ("auto", "box_model", "grabcut")

# Sections whose keys are free (names of steps, supplied by plug-ins too).
_FREE_KEYS = {("selector", "weights"), ("selector", "params"), ("inspection", "weights"),
              ("inspection", "params"), ("prelabel", "params")}


# Deeper than any setting needs (a step's parameter table inside the pipeline list is 4 levels):
# a file nested deeper is refused before anything walks it recursively.
MAX_SETTINGS_DEPTH = 32


def _dotted(path: tuple) -> str:
    """``('selector', 'params', 'x', 0)`` -> ``selector.params.x[1]`` (list items counted from 1)."""
    text = ""
    for part in path:
        text += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _field(path: tuple) -> str:
    """A setting's name as people read it: ``'sigma' in item 2 of preprocess.pipeline``.

    Items of a list (pipeline steps, post-processing suggestions) are counted from 1, as
    the pre-processing messages count them.
    """
    last = max((i for i, part in enumerate(path) if isinstance(part, int)), default=None)
    if last is None:
        return f"'{_dotted(path)}'"
    item = f"item {path[last] + 1} of {_dotted(path[:last])}"
    return f"'{_dotted(path[last + 1:])}' in {item}" if path[last + 1:] else item


def _check_values(raw: Any, where: str) -> None:
    """Refuse nesting deeper than :data:`MAX_SETTINGS_DEPTH` and numbers that are NaN or infinite.

    Walks every value, in the free sections (step parameters, plug-in steps' tables) too, without
    recursion, so that one line names the first bad field wherever it is.

    Raises
    ------
    ProjectError
        Naming the field, e.g. ``'sigma' in item 1 of preprocess.pipeline``.
    """
    stack: list[tuple[tuple, Any]] = [((), raw)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_SETTINGS_DEPTH:
            raise ProjectError(f"{where}: the settings under '{_dotted(path[:3])}' are nested more than "
                               f"{MAX_SETTINGS_DEPTH} levels deep; no setting needs that")
        if isinstance(value, float) and not math.isfinite(value):
            # NaN passes every range check (all comparisons are false) and inf overflows ints.
            raise ProjectError(f"{where}: {_field(path)} must be a finite number, got {value!r}")
        if isinstance(value, dict):
            stack.extend((path + (str(k),), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((path + (i,), v) for i, v in reversed(list(enumerate(value))))


def validate_settings(raw: dict[str, Any], where: str = SETTINGS_FILE) -> dict[str, Any]:
    """Merge ``raw`` over :data:`DEFAULT_SETTINGS`, checking names and types.

    Returns the complete settings; raises ProjectError naming the first key
    that is unknown or of the wrong type, a number that is NaN or infinite, a
    whole-number setting given a fraction, or nesting deeper than
    :data:`MAX_SETTINGS_DEPTH`.
    """
    _check_values(raw, where)

    def merge(default: Any, value: Any, path: tuple[str, ...]) -> Any:
        dotted = ".".join(path)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ProjectError(f"{where}: '{dotted}' must be a table of settings, got {value!r}")
            if path in _FREE_KEYS:  # names of steps (plug-ins add more): merged over the defaults
                return copy.deepcopy({**default, **value})
            unknown = sorted(set(value) - set(default))
            if unknown:
                raise ProjectError(
                    f"{where}: unknown setting '{dotted + '.' if dotted else ''}{unknown[0]}'"
                    f" (known in [{dotted or 'top level'}]: {', '.join(default)})"
                )
            return {k: merge(default[k], value[k], path + (k,)) if k in value else copy.deepcopy(default[k])
                    for k in default}
        if default is None:
            return value
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and isinstance(default, int) and value != int(value):
                # A count (backup.keep, a seed, a pixel area) given a fraction: say so, do not round.
                raise ProjectError(f"{where}: '{dotted}' must be a whole number, got {value!r}")
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ProjectError(
                f"{where}: '{dotted}' must be {type(default).__name__}, got {type(value).__name__} {value!r}"
            )
        return copy.deepcopy(value)

    settings = merge(DEFAULT_SETTINGS, raw, ())
    _check_weights(settings, where)
    return settings


def _check_weights(settings: dict[str, Any], where: str) -> None:
    for section in ("selector", "inspection"):
        weights = settings[section]["weights"]
        for name, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ProjectError(f"{where}: weight {section}.weights.{name} must be a number ≥ 0, got {w!r}")
        if weights and sum(weights.values()) <= 0:
            raise ProjectError(f"{where}: the {section} weights add up to 0; give at least one a positive weight")
    if settings["backup"]["minutes"] <= 0 or settings["backup"]["keep"] < 1 or \
            int(settings["backup"]["keep"]) != settings["backup"]["keep"]:
        raise ProjectError(f"{where}: backup.minutes must be above 0 and backup.keep a whole number of 1 or more")
    box = settings["prelabel"]["box_method"]
    if box not in BOX_METHODS:
        raise ProjectError(f"{where}: prelabel.box_method must be one of {', '.join(BOX_METHODS)}, got {box!r}")
    gamma0 = settings["inspection"]["gamma0"]
    if not 0.0 <= gamma0 <= 1.0:
        raise ProjectError(f"{where}: inspection.gamma0 must be between 0 and 1, got {gamma0}")


class ProjectLock:
    """Only one app instance may own a project: an exclusive lock on ``PROJECT/.lock``.

    The operating system releases the lock when the process dies, so a crash
    never leaves the project locked.
    """

    def __init__(self, folder: Path):
        self.path = folder / ".lock"
        self._fh = None

    def acquire(self, what: str = "Label Assistant") -> None:
        try:
            fh = self._open()
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):
                raise ProjectError(f"{self.path} is a link to another file; the app never writes through "
                                   "a link there: remove it, then open the project again") from exc
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise ProjectError(f"the project folder {self.path.parent} is read-only: nothing can be "
                                   "changed in it") from exc
            raise ProjectError(f"the project folder {self.path.parent} cannot be written: {exc.strerror}") from exc
        try:
            if os.name == "nt":
                import msvcrt

                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another program"
            fh.close()
            raise ProjectError(
                f"this project is already open in {holder}; close it there first (only one may change it)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{what} (process {os.getpid()}, since {utc_now()[11:16]} UTC)")
        fh.flush()
        self._fh = fh

    def _open(self):
        """Open ``.lock`` for update without following a link and without blocking.

        The file is truncated and rewritten once locked: through a symlink that would overwrite
        the link's target (any file the user can write), and a FIFO put there would block the
        open forever. Only a plain file is accepted.
        """
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        if os.name == "nt" and os.path.islink(self.path):  # no O_NOFOLLOW on Windows
            raise OSError(errno.ELOOP, "is a link", str(self.path))
        fd = os.open(self.path, flags, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ProjectError(f"{self.path} is not a plain file; remove it, then open the project again")
            if hasattr(os, "set_blocking"):
                os.set_blocking(fd, True)
            return os.fdopen(fd, "a+")
        except BaseException:
            os.close(fd)
            raise

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing drops the lock
            self._fh = None


class Project:
    """An open project folder with its settings and its store.

    Use :meth:`create` for a new project and :meth:`open` for an existing one.
    """

    def __init__(self, folder: Path, settings: dict[str, Any], store: Store):
        self.folder = folder
        self.settings = settings
        self.store = store
        self._lock: ProjectLock | None = None
        self._verified: dict[Path, tuple[int, int]] = {}  # files whose hash was checked: (size, mtime)
        self._stamps: set[tuple[int, int]] | None = None  # see _shared_stamps

    # -- life cycle -------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | Path, name: str | None = None) -> "Project":
        """Create a new, empty project in ``folder`` (created if needed, must not be a project yet)."""
        folder = Path(folder).absolute()
        if (folder / SETTINGS_FILE).exists() or (folder / STORE_FILE).exists():
            raise ProjectError(f"{folder} is already a project; use 'labelassist import' to add images")
        if folder.exists() and not folder.is_dir():
            raise ProjectError(f"{folder} is a file, not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProjectError(f"the project folder {folder} could not be created: {exc.strerror}") from exc
        settings = copy.deepcopy(DEFAULT_SETTINGS)
        settings["project"].update(name=name or folder.name, created=utc_now())
        try:
            atomic_write_text(folder / SETTINGS_FILE, dump_toml(settings, header=_HEADER))
        except OSError as exc:
            raise ProjectError(f"{folder / SETTINGS_FILE} could not be written: {exc.strerror}") from exc
        store = Store(folder / STORE_FILE, create=True)
        store.log_event("create_project", name=settings["project"]["name"])
        return cls(folder, settings, store)

    @classmethod
    def open(cls, folder: str | Path) -> "Project":
        """Open an existing project; a folder without ``project.toml`` is refused."""
        folder = Path(folder).absolute()
        if not folder.exists():
            raise ProjectError(f"{folder} does not exist")
        if not folder.is_dir():
            raise ProjectError(f"{folder} is not a project: it is a file, not a folder")
        settings_file = folder / SETTINGS_FILE
        if not settings_file.is_file():
            raise ProjectError(f"{folder} is not a Label Assistant project (it has no {SETTINGS_FILE})")
        if not (folder / STORE_FILE).is_file():
            raise ProjectError(f"{folder} is not a complete project: {STORE_FILE} is missing")
        settings = read_settings(settings_file)
        return cls(folder, settings, Store(folder / STORE_FILE))

    def lock(self, what: str = "Label Assistant") -> None:
        """Take the project for this process; ProjectError when another one has it."""
        if self._lock is None:
            lock = ProjectLock(self.folder)
            lock.acquire(what)
            self._lock = lock

    def close(self) -> None:
        self.store.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- settings ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.settings["project"]["name"]

    def save_settings(self, settings: dict[str, Any] | None = None, actor: str | None = None) -> None:
        """Validate and write ``project.toml`` atomically; the change is logged."""
        settings = validate_settings(settings if settings is not None else self.settings)
        atomic_write_text(self.folder / SETTINGS_FILE, dump_toml(settings, header=_HEADER))
        self.settings = settings
        self.store.log_event("settings", actor=actor)

    # -- where things are -------------------------------------------------------------------
    @property
    def plugins_dir(self) -> Path:
        return self.folder / "plugins"

    @property
    def cache_dir(self) -> Path:
        return self.folder / "cache"

    @property
    def backup_dir(self) -> Path:
        return self.folder / "backups"

    def relative(self, path: str | Path) -> str:
        """How a sample refers to ``path``: relative to the project folder where possible (POSIX)."""
        path = Path(path).absolute()
        try:
            return Path(os.path.relpath(path, self.folder)).as_posix()
        except ValueError:  # another drive on Windows: no relative path exists
            return path.as_posix()

    def read_image(self, sample: Sample):
        """The pixels of a sample (see :func:`labelassist.images.read_image`).

        A file that is no longer where the project expects it gets a message that
        says what to do, not a bare "file not found".
        """
        path = self.resolve(sample.path)
        if not path.is_file():
            raise ImageReadError(
                f"image {sample.name} is missing (expected at {path}); if its folder moved or a USB "
                "drive was removed, reconnect it or run 'labelassist relink'"
            )
        if self.image_changed(sample):
            raise ImageReadError(
                f"image {sample.name} was changed after it was imported (the file at {path} no longer "
                "holds the same picture); its labels are kept, but it is not shown with them: put the "
                "original file back, or import the new one as a new image"
            )
        return images.read_image(path, page=sample.page)

    def image_changed(self, sample: Sample) -> bool:
        """Whether a sample's file was replaced or edited in place since it was imported.

        Cheap first: a different size is a change. Same size and the modification time recorded at
        import: unchanged. Otherwise (the time differs, or was not recorded before schema 4) the
        content hash decides; a file found unchanged is not hashed again while this project is open
        (its size and time are remembered). A missing file is not "changed" (see ``read_image``).
        """
        path = self.resolve(sample.path)
        try:
            st = path.stat()
        except OSError:
            return False
        if st.st_size != sample.file_size:
            return True
        seen = (st.st_size, st.st_mtime_ns)
        if self._verified.get(path) == seen:
            return False
        # The recorded time vouches for the file unless another image of the project shares its
        # size and time (one acquisition unzipped or copied with times kept): two such files
        # swapped by name would pass, so those are hashed.
        if sample.mtime_ns == st.st_mtime_ns and (sample.file_size, sample.mtime_ns) not in self._shared_stamps():
            return False
        try:
            same = file_hash(path) == sample.hash
        except ImageReadError:
            return False  # unreadable now: read_image says why
        if same:
            self._verified[path] = seen
        return not same

    def _shared_stamps(self) -> set[tuple[int, int]]:
        """(size, modification time) pairs recorded for more than one file of the project."""
        if self._stamps is None:
            self._stamps = self.store.shared_file_stamps()
        return self._stamps

    def changed_images(self) -> list[Sample]:
        """Samples whose file was replaced or edited in place since import (for ``status``)."""
        changed, verdict = [], {}
        for sample in self.store.samples():
            key = (sample.path, sample.file_size, sample.mtime_ns, sample.hash)
            if key not in verdict:  # the pages of one stack share one file: check it once
                verdict[key] = self.image_changed(sample)
            if verdict[key]:
                changed.append(sample)
        return changed

    def thumbnail(self, sample: Sample, max_side: int = 128):
        """A cached ``uint8`` preview of a sample, at most ``max_side`` pixels wide or high."""
        cache = images.ThumbnailCache(self.cache_dir / "thumbnails", max_side=max_side)
        return cache.get(f"{sample.hash}_{sample.page}", lambda: self.read_image(sample))

    def resolve(self, stored_path: str) -> Path:
        """The absolute location of a sample's file (a non-UTF-8 name is stored percent-encoded:
        :func:`labelassist.fileio.path_to_text`)."""
        path = Path(text_to_path(stored_path))
        return path if path.is_absolute() else Path(os.path.normpath(self.folder / path))


_HEADER = """\
# Label Assistant project settings. Edit with care; every key is checked when the project opens.
# priors: what a correct label looks like (omit a key to switch that check off).
# preprocess.pipeline: the display pre-processing steps, in order.
# selector.weights / inspection.weights: weight of each strategy / check (numbers >= 0).
"""


def read_settings(path: Path) -> dict[str, Any]:
    """Read and validate ``project.toml``.

    Raises
    ------
    ProjectError
        One plain line when the file cannot be read, is not TOML, is nested too deeply for the
        TOML reader, or holds a setting :func:`validate_settings` refuses.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"{path} is not valid TOML: {exc}") from exc
    except RecursionError:
        # tomllib reads nested arrays and inline tables recursively: thousands of '[' end here.
        raise ProjectError(f"{path} is not a usable settings file: its values are nested too deeply to read "
                           "(no setting needs more than a few levels)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ProjectError(f"{path} could not be read: {reason}") from exc
    return validate_settings(raw, where=path.name)
