"""Settings of the kiosk itself (not of a project): admin PIN, data folder, exports, locks, input.

They live in ``<data_home>/kiosk.toml`` (``labelassist.cli.data_home()``: ``LABELASSIST_HOME``
or the platform's data folder). IT staff edit the commented template ``kiosk/kiosk.toml``
before imaging a tablet (see ``kiosk/README.md``)::

    [admin]
    pin_salt = "9f1c..."          # hex, 16 random bytes
    pin_hash = "4be2..."          # hex, PBKDF2-HMAC-SHA256 of the PIN
    pin_iterations = 200000

    [data]
    folder = ""                   # projects and their labels; "" = the data home itself
    project = ""                  # the project the kiosk opens at boot ("" = the demo project)

    [export]
    destinations = ["auto"]       # "auto" = removable drives (USB sticks) as they are plugged
                                  # in; or absolute folders, e.g. "/media/kiosk/LABELS", "E:\\"
    removable_only = true         # refuse to export onto the tablet's own disk

    [lock]
    screens = ["admin"]           # screens that need the admin PIN: admin, queue, settings

    [input]
    palm_size = 150               # a contact wider or higher than this (pixels) is a palm

The data folder is outside the bundle folder on purpose: an update replaces the bundle only
(``packaging/README.md``), the labels stay.

The PIN is never stored: only a salted PBKDF2 hash (:func:`hashlib.pbkdf2_hmac`).

First run (no ``kiosk.toml``, or no PIN in it): the admin PIN is :data:`DEFAULT_PIN`
("0000") and the Admin screen says so in large type and asks to change it. A kiosk
is therefore never locked out of its own settings, and a deployment sets its PIN with
:func:`set_pin` (the ``labelassist kiosk set-pin`` command, or the Admin screen).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import tomllib
from pathlib import Path
from typing import Any

from labelassist.fileio import atomic_write_text

log = logging.getLogger(__name__)

SETTINGS_FILE = "kiosk.toml"
DEFAULT_PIN = "0000"
PIN_ITERATIONS = 200_000
# Screens a kiosk.toml may put behind the admin PIN. "admin" is always locked; "label" (and the
# inspection / post-processing steps of saving) can never be: labelling must always work.
# "queue": the sample queue and its selector weights; "settings": the project settings on the
# Admin screen (pre-label method, pipeline, gamma0, priors) - the Admin screen itself stays PIN-only.
LOCKABLE_SCREENS = ("admin", "queue", "settings")
NEVER_LOCKED = ("home", "label", "inspection", "postprocess")
AUTO = "auto"

DEFAULTS: dict[str, dict[str, Any]] = {
    "admin": {"pin_salt": "", "pin_hash": "", "pin_iterations": PIN_ITERATIONS},
    "data": {"folder": "", "project": ""},
    "export": {"destinations": [AUTO], "removable_only": True},
    "lock": {"screens": ["admin"]},
    "input": {"palm_size": 150.0},
}


def settings_path(home: Path | None = None) -> Path:
    if home is None:
        from labelassist.cli import data_home

        home = data_home()
    return Path(home) / SETTINGS_FILE


def load(home: Path | None = None) -> dict[str, dict[str, Any]]:
    """The kiosk settings, defaults filled in; an unreadable file is logged and ignored."""
    settings = copy.deepcopy(DEFAULTS)
    path = settings_path(home)
    if path.is_file():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            log.error("kiosk settings %s could not be read (%s); using defaults", path, exc)
            raw = {}
        for section, values in raw.items():
            if section in settings and isinstance(values, dict):
                settings[section].update(values)
    return settings


def save(settings: dict[str, dict[str, Any]], home: Path | None = None) -> Path:
    """Write the kiosk settings atomically; returns the file."""
    path = settings_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Label Assistant kiosk settings. The admin PIN is stored as a salted PBKDF2 hash only."]
    for section, values in settings.items():
        lines.append(f"\n[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {toml_value(value)}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def toml_value(value: Any) -> str:
    """A TOML literal for a setting: strings (Windows paths too), numbers, booleans, lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    raise TypeError(f"kiosk settings cannot hold {type(value).__name__} values")


def update(values: dict[str, dict[str, Any]], home: Path | None = None) -> Path:
    """Change some keys of kiosk.toml in place, keeping everything else IT staff wrote
    (comments, order, unknown keys); creates the file when there is none."""
    path = settings_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        log.error("kiosk settings %s could not be read (%s); writing a new file", path, exc)
        text = ""
    if not text:
        text = "# Label Assistant kiosk settings. The admin PIN is stored as a salted PBKDF2 hash only.\n"
    for section, items in values.items():
        text = _update_section(text, section, items)
    tomllib.loads(text)  # never write a file the app could not read back
    atomic_write_text(path, text)
    return path


_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def _update_section(text: str, section: str, items: dict[str, Any]) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if (m := _HEADER.match(line)) and m.group(1).strip() == section), None)
    if start is None:
        lines += ["", f"[{section}]"] + [f"{k} = {toml_value(v)}" for k, v in items.items()]
        return "\n".join(lines) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
    todo = dict(items)
    for i in range(start + 1, end):
        m = _KEY.match(lines[i])
        if m and m.group(1) in todo:
            lines[i] = f"{m.group(1)} = {toml_value(todo.pop(m.group(1)))}"
    insert_at = end
    while insert_at > start + 1 and not lines[insert_at - 1].strip():
        insert_at -= 1  # keep the blank line before the next section
    lines[insert_at:insert_at] = [f"{k} = {toml_value(v)}" for k, v in todo.items()]
    return "\n".join(lines) + "\n"


def _hash(pin: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin.encode("utf-8"), salt, iterations)


def valid_pin(pin: str) -> bool:
    """A PIN is 4 to 12 digits (entered on the on-screen keypad)."""
    return isinstance(pin, str) and pin.isdigit() and 4 <= len(pin) <= 12


def set_pin(pin: str, home: Path | None = None) -> Path:
    """Store a new admin PIN (salted PBKDF2 hash); returns the settings file."""
    if not valid_pin(pin):
        raise ValueError("the PIN must be 4 to 12 digits")
    salt = secrets.token_bytes(16)
    path = update({"admin": {"pin_salt": salt.hex(), "pin_hash": _hash(pin, salt, PIN_ITERATIONS).hex(),
                             "pin_iterations": PIN_ITERATIONS}}, home)  # IT staff's comments stay
    if os.name != "nt":
        os.chmod(path, 0o600)
    log.info("admin PIN changed")
    return path


def pin_is_default(home: Path | None = None) -> bool:
    """True on first run: no PIN was set, so :data:`DEFAULT_PIN` opens the admin screen."""
    return not load(home)["admin"]["pin_hash"]


def check_pin(pin: str, home: Path | None = None) -> bool:
    """Whether ``pin`` is the admin PIN (constant-time comparison)."""
    admin = load(home)["admin"]
    if not admin["pin_hash"]:
        return hmac.compare_digest(pin.encode(), DEFAULT_PIN.encode())
    try:
        salt = bytes.fromhex(admin["pin_salt"])
        expected = bytes.fromhex(admin["pin_hash"])
    except ValueError:
        log.error("the admin PIN hash in %s is damaged; set a new PIN with 'labelassist kiosk set-pin'",
                  settings_path(home))
        return False
    return hmac.compare_digest(_hash(pin, salt, int(admin["pin_iterations"])), expected)


# --------------------------------------------------------------------------- data, exports, locks


def _home(home: Path | None) -> Path:
    return settings_path(home).parent


def data_folder(home: Path | None = None) -> Path:
    """Where the projects (and so the labels) live: ``[data] folder``; relative paths are taken
    from the data home; empty = the data home itself. Never inside the bundle folder."""
    raw = str(load(home)["data"].get("folder") or "").strip()
    base = _home(home)
    folder = Path(os.path.expandvars(os.path.expanduser(raw))) if raw else base
    return folder if folder.is_absolute() else base / folder


def project_folder(home: Path | None = None) -> Path | None:
    """The project the kiosk opens at boot (``[data] project``, relative to the data folder),
    or None for the demo project."""
    raw = str(load(home)["data"].get("project") or "").strip()
    if not raw:
        return None
    path = Path(os.path.expandvars(os.path.expanduser(raw)))
    return path if path.is_absolute() else data_folder(home) / path


def removable_mounts() -> list[Path]:
    """Folders where a USB drive shows up now: Linux ``/media/$USER/*``, ``/run/media/$USER/*``,
    ``/media/*``, ``/mnt/*``; Windows drive letters D: to Z: that are removable (GetDriveType)."""
    found: list[Path] = []
    if os.name == "nt":
        import ctypes
        import string

        DRIVE_REMOVABLE = 2
        for letter in string.ascii_uppercase[3:]:
            root = f"{letter}:\\"
            try:
                if ctypes.windll.kernel32.GetDriveTypeW(root) == DRIVE_REMOVABLE:
                    found.append(Path(root))
            except (AttributeError, OSError):
                if Path(root).exists():
                    found.append(Path(root))
    else:
        user = os.environ.get("USER", "")
        bases = [Path("/media") / user, Path("/run/media") / user] if user else []
        for base in bases + [Path("/media"), Path("/mnt")]:
            try:
                found += [p for p in sorted(base.iterdir())
                          if p.is_dir() and os.path.ismount(p) and os.access(p, os.W_OK)]
            except OSError:
                continue
    unique: list[Path] = []
    for p in found:
        if p not in unique:
            unique.append(p)
    return unique


def export_destinations(home: Path | None = None, mounts=removable_mounts) -> list[Path]:
    """The folders exports may go to now, in the order kiosk.toml lists them: ``"auto"`` expands
    to the removable drives plugged in (``mounts()``), other entries are folders that exist and
    are writable. With ``removable_only`` a fixed folder is kept only when it is a mount point of
    its own (a USB stick mounted there by the image's automounter)."""
    section = load(home)["export"]
    entries = section.get("destinations") or [AUTO]
    if isinstance(entries, str):
        entries = [entries]
    removable_only = bool(section.get("removable_only", True))
    out: list[Path] = []
    for entry in entries:
        if str(entry).strip().lower() == AUTO:
            candidates = list(mounts())
        else:
            candidates = [Path(os.path.expandvars(os.path.expanduser(str(entry))))]
            if removable_only and os.name != "nt" and not os.path.ismount(candidates[0]):
                log.info("export destination %s is not a mounted drive (removable_only): skipped", entry)
                candidates = []
        for path in candidates:
            if path.is_dir() and os.access(path, os.W_OK) and path not in out:
                out.append(path)
    extra = os.environ.get("LABELASSIST_EXPORT_DIR")  # tests and service staff
    if extra and Path(extra) not in out:
        out.insert(0, Path(extra))
    return out


def locked_screens(home: Path | None = None) -> set[str]:
    """The screens behind the admin PIN: ``[lock] screens`` plus "admin" (always); names that
    cannot be locked (the labelling screens) or are unknown are logged and ignored."""
    raw = load(home)["lock"].get("screens", ["admin"])
    if isinstance(raw, str):
        raw = [raw]
    locked = {"admin"}
    for name in raw:
        name = str(name).strip().lower()
        if name in LOCKABLE_SCREENS:
            locked.add(name)
        elif name in NEVER_LOCKED:
            log.warning("kiosk.toml: the %s screen cannot be locked (labelling must always work)", name)
        else:
            log.warning("kiosk.toml: unknown screen %r in [lock] screens (known: %s)", name,
                        ", ".join(LOCKABLE_SCREENS))
    return locked


def is_locked(screen: str, home: Path | None = None) -> bool:
    """Whether opening ``screen`` needs the admin PIN."""
    return screen in locked_screens(home)


def problems(home: Path | None = None) -> list[str]:
    """What is wrong with kiosk.toml, in plain sentences (empty when it is fine): for IT staff
    before imaging, and for the Admin screen."""
    out: list[str] = []
    path = settings_path(home)
    if path.is_file():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            return [f"{path} cannot be read: {exc}"]
        for section, values in raw.items():
            if section not in DEFAULTS:
                out.append(f"unknown section [{section}] (known: {', '.join(DEFAULTS)})")
            elif not isinstance(values, dict):
                out.append(f"{section} must be a [section]")
            else:
                for key in values:
                    if key not in DEFAULTS[section]:
                        out.append(f"unknown key {key!r} in [{section}]")
    settings = load(home)
    if not settings["admin"]["pin_hash"]:
        out.append(f"no admin PIN is set: the default {DEFAULT_PIN} opens the Admin screen "
                   "(set one with 'labelassist kiosk set-pin')")
    folder = data_folder(home)
    exe_dir = Path(os.path.abspath(sys.executable)).parent
    try:
        if getattr(sys, "frozen", False) and folder.resolve().is_relative_to(exe_dir.resolve()):
            out.append(f"the data folder {folder} is inside the bundle folder {exe_dir}: an update would delete "
                       "the labels")
    except OSError:
        pass
    for name in settings["lock"].get("screens", []):
        if str(name).lower() not in LOCKABLE_SCREENS:
            out.append(f"[lock] screens: {name!r} cannot be locked (lockable: {', '.join(LOCKABLE_SCREENS)})")
    try:
        float(settings["input"]["palm_size"])
    except (TypeError, ValueError):
        out.append("[input] palm_size must be a number of pixels")
    return out


__all__ = ["DEFAULT_PIN", "DEFAULTS", "LOCKABLE_SCREENS", "load", "save", "update", "set_pin", "check_pin",
           "pin_is_default", "valid_pin", "settings_path", "data_folder", "project_folder",
           "export_destinations", "removable_mounts", "locked_screens", "is_locked", "problems", "toml_value"]
