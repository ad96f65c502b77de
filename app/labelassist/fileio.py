"""Files as files: atomic writes, content hashes, and file names stored as text.

* :func:`atomic_write_bytes` / :func:`atomic_write_text`: a reader (or a power cut) sees the
  old file or the new one, never half;
* :func:`file_hash`: the SHA-256 that tells an image file's content (import, relink);
* :func:`path_to_text` / :func:`text_to_path`: a file name that is not UTF-8 stored in the
  database and found again;
* :func:`read_error`: the one-sentence :class:`~labelassist.errors.ImageReadError` for a
  file that cannot be read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
from pathlib import Path

from labelassist.errors import ImageReadError

__all__ = ["atomic_write_bytes", "atomic_write_text", "fsync_dir", "file_hash", "path_to_text", "text_to_path", "read_error"]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync, then rename over it.

    The folder is fsynced too, so the rename itself survives a power cut.
    Raises OSError (disk full, read-only...) and leaves any earlier file untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file inside ``folder`` durable (POSIX; a no-op on Windows)."""
    if os.name != "posix":  # Windows cannot open a folder for fsync; NTFS journals the rename
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_error(path: Path, reason: str) -> ImageReadError:
    """An :class:`ImageReadError` "<name> could not be read: <reason>" that remembers ``path``."""
    err = ImageReadError(f"{Path(path).name} could not be read: {reason}")
    err.path = Path(path)  # the full path goes to the log; the message stays short
    return err


def file_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content, as 64 hex digits.

    Parameters
    ----------
    path : path-like
        Any file.
    chunk : int, optional
        Read size in bytes.

    Raises
    ------
    ImageReadError
        The file cannot be read.
    """
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    except FileNotFoundError:
        raise read_error(path, "the file does not exist") from None
    except OSError as exc:
        raise read_error(path, exc.strerror or str(exc)) from None
    return digest.hexdigest()


# --------------------------------------------------------------------------- names in the database

# A stored path never starts with "./": Project.relative() returns normalised paths, in which
# pathlib drops "." parts. So this prefix marks, without any ambiguity, a path whose bytes are
# not UTF-8 (SQLite stores text as UTF-8 only) and were percent-encoded.
_BYTES_PREFIX = "./"


def path_to_text(path: str | os.PathLike) -> str:
    """How a path is stored as text: itself, or percent-encoded bytes when it is not UTF-8.

    On Linux a file name is any bytes; Python gives the undecodable ones as lone
    surrogates (``os.fsdecode``, ``surrogateescape``), which SQLite cannot store.
    Such a path becomes ``"./"`` followed by its bytes percent-encoded, which
    :func:`text_to_path` turns back into the same file name. Every other path is
    returned unchanged, so existing projects read as before.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str
        Valid UTF-8 text.
    """
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _BYTES_PREFIX + urllib.parse.quote(os.fsencode(text), safe="/")


def text_to_path(text: str) -> str:
    """The path :func:`path_to_text` stored (the same string for ordinary paths)."""
    if text.startswith(_BYTES_PREFIX):
        return os.fsdecode(urllib.parse.unquote_to_bytes(text[len(_BYTES_PREFIX):]))
    return text
