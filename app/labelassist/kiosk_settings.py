"""Settings of the kiosk itself (not of a project): admin PIN, data folder, exports, locks, input.

They live in ``<data_home>/kiosk.toml`` (``labelassist.paths.data_home()``: ``LABELASSIST_HOME``
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
import logging
import os
import re
import secrets
import sys
import tomllib
from pathlib import Path
from typing import Any

from labelassist.errors import LabelAssistError
from labelassist.fileio import atomic_write_text
from labelassist.paths import data_home
from labelassist.tomlout import toml_value

log = logging.getLogger(__name__)

SETTINGS_FILE = "kiosk.toml"
DEFAULT_PIN = "0000"
PIN_ITERATIONS = 200_000
# The on-screen keypad has the ASCII digits 0-9 only and takes at most 12 of them: a PIN outside
# this (fullwidth or Arabic-Indic digits, superscripts) could be stored but never typed again.
PIN_MIN_DIGITS, PIN_MAX_DIGITS = 4, 12
_PIN = re.compile(r"[0-9]{%d,%d}" % (PIN_MIN_DIGITS, PIN_MAX_DIGITS))
# A stored hash is SHA-256 (32 bytes); set_pin writes a 16-byte salt, 8 is the least we accept.
PIN_HASH_BYTES, PIN_SALT_MIN_BYTES, PIN_SALT_MAX_BYTES = 32, 8, 64
# Below 1,000 PBKDF2 rounds a stolen kiosk.toml gives the PIN away at once; above 10 million one
# try keeps a tablet CPU busy for tens of seconds (the default, 200,000, takes about 0.1 s).
PIN_ITERATIONS_RANGE = (1_000, 10_000_000)
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


class SettingsError(LabelAssistError):
    """kiosk.toml cannot be changed safely (unreadable, or written in a form we cannot edit);
    the file was left as it was."""


def update(values: dict[str, dict[str, Any]], home: Path | None = None) -> Path:
    """Change some keys of kiosk.toml in place, keeping everything else IT staff wrote
    (comments, order, unknown keys); creates the file when there is none.

    Raises
    ------
    SettingsError
        The file cannot be read or parsed (the message names the line), or a section is written
        in a form that cannot be edited line by line (an inline table, dotted keys). The file is
        then left byte for byte as it was: rewriting it would lose every other setting.
    """
    path = settings_path(home)
    text = _read_for_update(path)
    if not text:
        text = "# Label Assistant kiosk settings. The admin PIN is stored as a salted PBKDF2 hash only.\n"
    before = tomllib.loads(text)
    for section, items in values.items():
        if section in before and not _has_header(text, section):
            raise SettingsError(f"{path}: [{section}] is written as an inline table or with dotted keys, which "
                                f"cannot be changed safely; write it as a [{section}] section of its own lines; "
                                "nothing was changed")
        text = _update_section(text, section, items)
    _check_written(path, text, values)  # never write a file the app could not read back as meant
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)  # the old file stays whole when this fails
    except OSError as exc:
        log.error("kiosk settings %s could not be written", path, exc_info=True)
        raise SettingsError(f"{path} could not be written ({exc.strerror or exc}); nothing was changed") from None
    return path


def _read_for_update(path: Path) -> str:
    """The text of kiosk.toml ("" when there is none); SettingsError when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
    except UnicodeDecodeError:
        raise SettingsError(f"{path} is not UTF-8 text; save it as UTF-8, then try again; nothing was changed") \
            from None
    except OSError as exc:
        raise SettingsError(f"{path} cannot be read: {exc.strerror or exc}; nothing was changed") from None
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: {toml_error(text, exc)}; fix that line, then try again; "
                            "nothing was changed") from None
    return text


_WHERE = re.compile(r"\s*\(at (?:line (\d+), column \d+|end of document)\)\s*$")


def toml_error(text: str, exc: tomllib.TOMLDecodeError) -> str:
    """A TOML parse error in plain words, naming and quoting its line.

    For example ``line 3 (folder = "D:\\Labels") is not valid TOML: Unescaped '\\' in a string``.
    tomllib ends its message with "(at line L, column C)" or "(at end of document)"; the line is
    quoted (shortened, control characters escaped) so IT staff see at once what to fix.
    """
    message = str(exc)
    match = _WHERE.search(message)
    if not match:
        return f"it is not valid TOML: {message}"
    reason = message[:match.start()].strip()
    lines = text.splitlines()
    number = int(match.group(1)) if match.group(1) else max(len(lines), 1)
    shown = lines[number - 1].strip() if 0 < number <= len(lines) else ""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    # The usual cause: a Windows path typed with single backslashes inside double quotes.
    hint = ' (write Windows paths as "D:/Labels" or "D:\\\\Labels")' if "\\" in shown and (
        "escape" in reason.lower()) else ""
    quoted = f" ({shown})" if shown else ""
    return f"line {number}{quoted} is not valid TOML: {reason}{hint}"


def _has_header(text: str, section: str) -> bool:
    return any((m := _HEADER.match(line)) and m.group(1).strip() == section for line in text.splitlines())


def _check_written(path: Path, text: str, values: dict[str, dict[str, Any]]) -> None:
    """The new text parses and holds exactly the values asked for (else SettingsError, nothing written)."""
    try:
        after = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        after = {}
    for section, items in values.items():
        table = after.get(section)
        if not isinstance(table, dict) or any(table.get(k) != v for k, v in items.items()):
            log.error("kiosk settings %s: the change of [%s] did not read back; not written", path, section)
            raise SettingsError(f"{path}: [{section}] is written in a form that cannot be changed safely; write "
                                f"it as a plain [{section}] section with one key per line; nothing was changed")


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
    """A PIN is 4 to 12 ASCII digits 0-9: exactly what the on-screen keypad can type."""
    return isinstance(pin, str) and _PIN.fullmatch(pin) is not None


def set_pin(pin: str, home: Path | None = None) -> Path:
    """Store a new admin PIN (salted PBKDF2 hash); returns the settings file."""
    if not valid_pin(pin):
        raise ValueError(f"the PIN must be {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits 0-9")
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
    """Whether ``pin`` is the admin PIN (constant-time comparison); False when the stored hash is damaged."""
    admin = load(home)["admin"]
    if not admin["pin_hash"]:
        return hmac.compare_digest(pin.encode(), DEFAULT_PIN.encode())
    damage = pin_hash_problems(admin)
    if damage:
        log.error("the admin PIN hash in %s is damaged (%s); set a new PIN with 'labelassist kiosk set-pin'",
                  settings_path(home), "; ".join(damage))
        return False
    salt, expected = bytes.fromhex(admin["pin_salt"]), bytes.fromhex(admin["pin_hash"])
    return hmac.compare_digest(_hash(pin, salt, admin["pin_iterations"]), expected)


def _hex_problem(name: str, value: Any, low: int, high: int) -> str | None:
    """What is wrong with a hex-encoded byte string of ``low`` to ``high`` bytes, or None."""
    if not isinstance(value, str):
        return f"{name} must be a quoted hex string, not {type(value).__name__}"
    if not value:
        return f"{name} is empty"
    if not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", value):
        return f"{name} is not hex (digits 0-9 and letters a-f, in pairs)"
    size = len(value) // 2
    if not low <= size <= high:
        wanted = f"{low} bytes" if low == high else f"{low} to {high} bytes"
        return f"{name} holds {size} bytes, it must hold {wanted} ({2 * low} hex digits" + \
            ("" if low == high else f" or more, up to {2 * high}") + ")"
    return None


def pin_hash_problems(admin: dict[str, Any]) -> list[str]:
    """What is wrong with a stored PIN hash (``[admin]`` of kiosk.toml), in plain words; [] when
    no PIN is set or the hash, salt and iteration count can be used."""
    if not admin.get("pin_hash"):
        return []
    out = [p for p in (_hex_problem("pin_hash", admin.get("pin_hash"), PIN_HASH_BYTES, PIN_HASH_BYTES),
                       _hex_problem("pin_salt", admin.get("pin_salt"), PIN_SALT_MIN_BYTES, PIN_SALT_MAX_BYTES))
           if p]
    iterations = admin.get("pin_iterations")
    low, high = PIN_ITERATIONS_RANGE
    # bool is an int in Python: "pin_iterations = true" is not a count
    if not isinstance(iterations, int) or isinstance(iterations, bool) or not low <= iterations <= high:
        out.append(f"pin_iterations must be a whole number from {low:,} to {high:,}, not {iterations!r}")
    return out


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
            text = path.read_text(encoding="utf-8")
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            return [f"{path}: {toml_error(text, exc)}"]
        except UnicodeDecodeError:
            return [f"{path} is not UTF-8 text: save it as UTF-8"]
        except OSError as exc:
            return [f"{path} cannot be read: {exc.strerror or exc}"]
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
    damage = pin_hash_problems(settings["admin"])
    out += [f"[admin] {p}: the admin PIN cannot be checked (set it again with 'labelassist kiosk set-pin')"
            for p in damage]
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


__all__ = ["DEFAULT_PIN", "DEFAULTS", "LOCKABLE_SCREENS", "load", "update", "set_pin", "check_pin",
           "pin_is_default", "valid_pin", "pin_hash_problems", "SettingsError", "toml_error", "settings_path",
           "data_folder", "project_folder",
           "export_destinations", "removable_mounts", "locked_screens", "is_locked", "problems"]
