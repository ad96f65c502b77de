"""Writing TOML (the standard library's ``tomllib`` only reads it).

One writer for the two settings files people edit by hand: ``project.toml`` (written
whole by :func:`dump_toml`) and the kiosk's ``kiosk.toml`` (changed line by line with
:func:`toml_value`, keeping IT's comments).
"""

from __future__ import annotations

import os
from typing import Any

# Basic strings may not hold control characters: those without a short escape become \uXXXX.
_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def toml_value(value: Any) -> str:
    """A TOML literal for one value.

    Parameters
    ----------
    value : bool, int, float, str, os.PathLike, list, tuple or dict
        Paths are written as strings (Windows backslashes escaped); a dict becomes an
        inline table without its ``None`` values.

    Returns
    -------
    literal : str

    Raises
    ------
    TypeError
        Any other type.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        return '"' + "".join(_TOML_ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F
                                                        else ch) for ch in value) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def toml_key(key: str) -> str:
    """A key as written: bare when it is letters, digits, ``_`` and ``-`` only, else quoted."""
    return key if key.replace("_", "").replace("-", "").isalnum() else toml_value(key)


def dump_toml(data: dict[str, dict[str, Any]], header: str = "") -> str:
    """Two-level settings (tables of values) as TOML text.

    Parameters
    ----------
    data : dict of dict
        One ``[section]`` per key. A ``None`` value is written as a comment
        (``# key = (not set)``); a list of tables one table per line.
    header : str
        Comment lines put first.

    Returns
    -------
    text : str
        Ends with a newline.
    """
    lines = [header.rstrip("\n")] if header else []
    for section, table in data.items():
        lines.append(f"\n[{toml_key(section)}]")
        for key, value in table.items():
            if value is None:
                lines.append(f"# {key} = (not set)")
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                lines.append(f"{toml_key(key)} = [")
                lines.extend(f"    {toml_value(v)}," for v in value)
                lines.append("]")
            else:
                lines.append(f"{toml_key(key)} = {toml_value(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"
