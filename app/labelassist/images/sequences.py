"""Finding the frames in the files and folders a user imports, and grouping them into sequences."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from labelassist.errors import ImageReadError
from labelassist.fileio import read_error as _read_error
from labelassist.images.decode import probe
from labelassist.images.frames import _SUPPORTED, FrameInfo

__all__ = ["SourceFrame", "DiscoverResult", "natural_key", "discover"]

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"([0-9]+)")


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value ("img2" < "img10").

    Parameters
    ----------
    text : str
        A file name or relative path.

    Returns
    -------
    tuple
        ``(parts, text)`` where ``parts`` alternates case-folded text and
        integers; ``text`` breaks ties ("img02" vs "img2") deterministically.
    """
    parts = _DIGITS.split(text)
    # split() always yields text at even and digits at odd positions, so two keys
    # never compare an int with a str.
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), text


_TRAILING_NUMBER = re.compile(r"[0-9]+$")


def _sequence_prefix(stem: str) -> str:
    """'t01' -> 't', 'img_002' -> 'img', '000' -> ''."""
    stripped = _TRAILING_NUMBER.sub("", stem)
    return stripped.rstrip("_-. ") if stripped != stem else stem


@dataclass(frozen=True)
class SourceFrame:
    """One frame found by :func:`discover`.

    Attributes
    ----------
    path : Path
        Absolute path of the file.
    page : int
        Frame index inside the file (``FrameInfo.page``).
    name : str
        Path relative to the import root (POSIX separators), plus ``#<page>``
        for files with more than one frame.
    sequence : str
        Sequence id: for a multi-frame TIFF or video its relative path without
        extension; for still images ``<relative parent>/<stem prefix>`` where
        the prefix is the stem without its trailing number (``images/t07.png``
        -> ``images/t``; ``000.png`` at the root -> ``/``).
    frame : int
        Position in the sequence (0-based): the page index for stacks, the
        rank in natural order of the name for still images.
    info : FrameInfo
        Geometry and pixel type.
    """

    path: Path
    page: int
    name: str
    sequence: str
    frame: int
    info: FrameInfo


@dataclass(frozen=True)
class DiscoverResult:
    """What :func:`discover` found.

    Attributes
    ----------
    frames : list of SourceFrame
        Every readable frame, files in natural order, pages in order.
    skipped : list of Path
        Files that are not images or videos (by extension), e.g. ``LICENSE``.
    errors : dict of Path -> ImageReadError
        Files that could not be probed (only filled when ``on_error`` is given).

    Iterating over the result, or ``len()``, goes over ``frames``.
    """

    frames: list[SourceFrame] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    errors: dict[Path, ImageReadError] = field(default_factory=dict)

    def __iter__(self) -> Iterator[SourceFrame]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    def sequences(self) -> dict[str, list[SourceFrame]]:
        """Frames grouped by sequence id, each list in frame order."""
        groups: dict[str, list[SourceFrame]] = {}
        for frame in self.frames:
            groups.setdefault(frame.sequence, []).append(frame)
        return {key: sorted(group, key=lambda f: f.frame) for key, group in groups.items()}


def _is_hidden(entry: os.DirEntry) -> bool:
    if entry.name.startswith("."):
        return True
    try:  # Windows "hidden" attribute
        return bool(getattr(entry.stat(), "st_file_attributes", 0) & 2)
    except OSError:
        return False


def _walk(folder: Path, errors: list[tuple[Path, ImageReadError]], seen: set[str]) -> Iterator[Path]:
    """Files under ``folder`` depth-first, entries in natural order, hidden ones left out."""
    real = os.path.realpath(folder)
    if real in seen:  # a symlink loop
        return
    seen.add(real)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: natural_key(e.name))
    except OSError as exc:
        errors.append((folder, _read_error(folder, f"the folder cannot be listed ({exc.strerror or exc})")))
        return
    for entry in entries:
        if _is_hidden(entry):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk(Path(entry.path), errors, seen)
        else:
            yield Path(entry.path)


def discover(
    sources: Iterable[str | os.PathLike],
    on_error: Callable[[Path, ImageReadError], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DiscoverResult:
    """Find the frames in image files, stacks, videos and folders.

    Parameters
    ----------
    sources : iterable of path-like
        Files or folders; folders are walked recursively (natural order,
        hidden files and folders ignored). A file listed twice is read once.
    on_error : callable, optional
        ``on_error(path, error)`` for a file that cannot be probed; the file is
        then recorded in ``DiscoverResult.errors`` and skipped. Without it the
        first :class:`ImageReadError` is raised.
    progress : callable, optional
        ``progress(done, total)`` after each image or video file is probed.

    Returns
    -------
    DiscoverResult
        ``frames``, ``skipped`` (not images by extension) and ``errors``.

    Notes
    -----
    Names are relative to the folder for a folder source and to the file's
    parent for a file source. When a later source would repeat a name or a
    sequence id of an earlier one (two folders both holding ``000.png``), its
    names and sequences get the source folder's name as a prefix
    (``B/000.png``). A file with a single frame is a still image whatever its
    type, so single-page TIFFs group with their numbered neighbours.
    """
    walk_errors: list[tuple[Path, ImageReadError]] = []
    candidates: list[tuple[int, Path, Path]] = []  # (source index, root, file)
    skipped: list[Path] = []
    roots: list[Path] = []
    seen_files: set[Path] = set()
    seen_dirs: set[str] = set()
    for index, source in enumerate(sources):
        source = Path(os.path.abspath(source))
        if source.is_dir():
            root, files = source, _walk(source, walk_errors, seen_dirs)
        else:
            root, files = source.parent, [source]
        roots.append(root)
        for file in files:
            if file in seen_files:
                continue
            seen_files.add(file)
            if file.suffix.lower() in _SUPPORTED:
                candidates.append((index, root, file))
            else:
                skipped.append(file)

    errors: dict[Path, ImageReadError] = {}

    def fail(path: Path, exc: ImageReadError) -> None:
        if on_error is None:
            raise exc
        errors[path] = exc
        on_error(path, exc)

    for path, exc in walk_errors:
        fail(path, exc)

    probed: dict[int, list[tuple[PurePosixPath, list[FrameInfo]]]] = {}
    for done, (index, root, file) in enumerate(candidates, start=1):
        try:
            infos = probe(file)
        except ImageReadError as exc:
            fail(file, exc)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the rest of an import
            log.exception("probing %r failed", file)
            fail(file, _read_error(file, f"its reader failed ({type(exc).__name__}; details in the log)"))
        else:
            probed.setdefault(index, []).append((PurePosixPath(file.relative_to(root).as_posix()), infos))
        if progress is not None:
            progress(done, len(candidates))

    frames: list[SourceFrame] = []
    used_names: set[str] = set()
    used_sequences: set[str] = set()
    for index in sorted(probed):
        files = probed[index]
        prefix = None
        own = _frames_of_source(files, prefix)
        attempt = 1
        while any(f.name in used_names for f in own) or {f.sequence for f in own} & used_sequences:
            label = roots[index].name or f"source{index + 1}"
            prefix = label if attempt == 1 else f"{label} ({attempt})"
            own = _frames_of_source(files, prefix)
            attempt += 1
        used_names.update(f.name for f in own)
        used_sequences.update(f.sequence for f in own)
        frames.extend(own)
    return DiscoverResult(frames=frames, skipped=skipped, errors=errors)


def _frames_of_source(files: list[tuple[PurePosixPath, list[FrameInfo]]], prefix: str | None) -> list[SourceFrame]:
    """Names, sequence ids and frame numbers for the probed files of one source."""
    rels = [(PurePosixPath(prefix, rel) if prefix else rel, infos) for rel, infos in files]
    image_sequence: dict[str, str] = {}  # name -> sequence, still images only
    for rel, infos in rels:
        if len(infos) == 1:
            parent = "" if str(rel.parent) == "." else str(rel.parent)
            image_sequence[str(rel)] = f"{parent}/{_sequence_prefix(rel.stem)}"
    # Rank still images within their sequence by natural order of the name.
    members: dict[str, list[str]] = {}
    for name, seq in image_sequence.items():
        members.setdefault(seq, []).append(name)
    rank = {}
    for seq, names in members.items():
        for k, name in enumerate(sorted(names, key=natural_key)):
            rank[name] = k

    stack_ids: set[str] = set()
    out = []
    for rel, infos in rels:
        name = str(rel)
        if len(infos) == 1:
            out.append(SourceFrame(infos[0].path, 0, name, image_sequence[name], rank[name], infos[0]))
            continue
        sequence = str(rel.with_suffix(""))
        if sequence in members or sequence in stack_ids:  # e.g. a.tif beside a.avi
            sequence = name
        stack_ids.add(sequence)
        for info in infos:
            out.append(SourceFrame(info.path, info.page, f"{name}#{info.page}", sequence, info.page, info))
    return out
