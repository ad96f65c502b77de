"""Text from files made safe to print on a terminal.

Names and fields the CLI prints often come from files someone else wrote: a project name in
``project.toml``, a sample name taken from an image's file name, a model card's ``name`` or
``description``. Printed raw, a newline in one of them forges an extra output line, and an ANSI
escape sequence (``ESC [ 2 J``) clears the screen, recolours it or retitles the window. Every
such value goes through :func:`safe` before it reaches the terminal; the control characters come
out as visible escapes (``\\n``, ``\\x1b``, ``\\u202e``), so nothing is hidden either.

Text that may hold a file name whose bytes are not UTF-8 goes through :func:`printable`,
which shows those bytes as the bytes they are (``caf\\xe9.png``) before the same escapes.

The app's own text (messages, table layout) is printed as it is; only values from files pass
through here. JSON output needs none of this: ``json.dumps`` escapes control characters itself.
"""

from __future__ import annotations

import os

__all__ = ["safe", "printable"]

# Short escapes people recognise; every other control character becomes \xNN or \uNNNN.
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Characters that change how the rest of a line is shown without being control characters
# (category Cc): bidirectional overrides and isolates (a name that reads backwards, the
# "Trojan Source" trick), and the Unicode line and paragraph separators (a line break on
# some terminals).
_INVISIBLE_LAYOUT = {0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _escape(ch: str) -> str:
    code = ord(ch)
    return _SHORT.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


# Built once: str.translate with a dict is fast enough for every line the CLI prints.
# C0 and C1 controls with DEL are exactly Unicode's category Cc.
_TABLE = {code: _escape(chr(code)) for code in [*range(0x00, 0x20), *range(0x7F, 0xA0), *_INVISIBLE_LAYOUT]}


def safe(value: object) -> str:
    """``str(value)`` with every control character shown as an escape, for printing on a terminal.

    Parameters
    ----------
    value : object
        A name or field read from a file (a ``str``; anything else goes through ``str``).

    Returns
    -------
    str
        The same text on one line: newlines, carriage returns, tabs, escape sequences (ESC),
        C1 controls, bidirectional overrides, line separators and lone surrogates are written
        as ``\\n``, ``\\r``, ``\\t``, ``\\x1b``, ``\\x9b``, ``\\u202e``, ``\\u2028``, ``\\udcff``.
        Printable text (any script, emoji) and backslashes (Windows paths) are unchanged.

    Examples
    --------
    >>> safe("cells\\x1b[2J")
    'cells\\\\x1b[2J'
    >>> safe("two\\nlines")
    'two\\\\nlines'
    """
    text = (value if isinstance(value, str) else str(value)).translate(_TABLE)
    # Lone surrogates come from file names that are not valid UTF-8 (os.fsdecode): a terminal
    # cannot show them and a strict encoder raises on them.
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        text = "".join(_escape(ch) if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)
    return text


def printable(text: str) -> str:
    """``text`` safe to print and to store: undecodable bytes as ``\\xNN``, control characters escaped.

    File names may hold bytes that are not UTF-8 (lone surrogates once decoded) and
    characters such as newlines or terminal escape sequences; a report line or a
    sample name must neither fail to print or store nor change the terminal. The
    undecodable bytes are shown as the bytes they are (``caf\\xe9.png``); every other
    control character as :func:`safe` shows it.
    """
    if _has_surrogates(text):
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return safe(text)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True
