"""Settings of the kiosk itself (not of a project): the admin PIN and input thresholds.

They live in ``<data_home>/kiosk.toml`` (``labelassist.cli.data_home()``: ``LABELASSIST_HOME``
or the platform's data folder)::

    [admin]
    pin_salt = "9f1c..."          # hex, 16 random bytes
    pin_hash = "4be2..."          # hex, PBKDF2-HMAC-SHA256 of the PIN
    pin_iterations = 200000

    [input]
    palm_size = 60                # a contact wider or higher than this (pixels) is a palm

The PIN is never stored: only a salted PBKDF2 hash (:func:`hashlib.pbkdf2_hmac`).

First run (no ``kiosk.toml``, or no PIN in it): the admin PIN is :data:`DEFAULT_PIN`
("0000") and the Admin screen says so in large type and asks to change it. A kiosk
is therefore never locked out of its own settings, and a deployment sets its PIN with
:func:`set_pin` (the ``labelassist kiosk set-pin`` command, or the Admin screen).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any

from labelassist.fileio import atomic_write_text

log = logging.getLogger(__name__)

SETTINGS_FILE = "kiosk.toml"
DEFAULT_PIN = "0000"
PIN_ITERATIONS = 200_000
DEFAULTS: dict[str, dict[str, Any]] = {
    "admin": {"pin_salt": "", "pin_hash": "", "pin_iterations": PIN_ITERATIONS},
    "input": {"palm_size": 60.0},
}


def settings_path(home: Path | None = None) -> Path:
    if home is None:
        from labelassist.cli import data_home

        home = data_home()
    return Path(home) / SETTINGS_FILE


def load(home: Path | None = None) -> dict[str, dict[str, Any]]:
    """The kiosk settings, defaults filled in; an unreadable file is logged and ignored."""
    settings = {section: dict(values) for section, values in DEFAULTS.items()}
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
            if isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            else:
                lines.append(f"{key} = {value!r}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _hash(pin: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin.encode("utf-8"), salt, iterations)


def valid_pin(pin: str) -> bool:
    """A PIN is 4 to 12 digits (entered on the on-screen keypad)."""
    return isinstance(pin, str) and pin.isdigit() and 4 <= len(pin) <= 12


def set_pin(pin: str, home: Path | None = None) -> Path:
    """Store a new admin PIN (salted PBKDF2 hash); returns the settings file."""
    if not valid_pin(pin):
        raise ValueError("the PIN must be 4 to 12 digits")
    settings = load(home)
    salt = secrets.token_bytes(16)
    settings["admin"].update(pin_salt=salt.hex(), pin_hash=_hash(pin, salt, PIN_ITERATIONS).hex(),
                             pin_iterations=PIN_ITERATIONS)
    path = save(settings, home)
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


__all__ = ["DEFAULT_PIN", "load", "save", "set_pin", "check_pin", "pin_is_default", "valid_pin", "settings_path"]
