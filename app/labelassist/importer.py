"""Bringing images (and existing masks) into a project, and finding moved images again."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from labelassist import images
from labelassist.errors import ImageReadError, LabelAssistError, MaskError
from labelassist.project import Project

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass
class ImportReport:
    """What an import did, for the CLI's summary and the event log."""

    added: int = 0
    already_present: int = 0
    skipped: list[str] = field(default_factory=list)  # files that are not images
    errors: dict[str, str] = field(default_factory=dict)  # file -> reason
    masks_imported: int = 0
    masks_unchanged: int = 0
    masks_missing: int = 0
    mask_errors: dict[str, str] = field(default_factory=dict)
    sample_ids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.mask_errors

    def lines(self) -> list[str]:
        """The summary in plain words, one fact per line."""
        out = [f"added {self.added} image{'s' * (self.added != 1)}"
               + (f" ({self.already_present} already in the project)" if self.already_present else "")]
        if self.masks_imported or self.masks_unchanged or self.masks_missing:
            out.append(f"imported {self.masks_imported} mask{'s' * (self.masks_imported != 1)} as labels"
                       + (f", {self.masks_unchanged} unchanged" if self.masks_unchanged else "")
                       + (f", {self.masks_missing} images have no mask" if self.masks_missing else ""))
        if self.skipped:
            shown = ", ".join(self.skipped[:5]) + (f" and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else "")
            out.append(f"skipped {len(self.skipped)} file{'s' * (len(self.skipped) != 1)} that "
                       f"{'are' if len(self.skipped) != 1 else 'is'} not an image: {shown}")
        for name, reason in {**self.errors, **self.mask_errors}.items():
            out.append(f"not imported: {reason}" if name in reason else f"not imported: {name}: {reason}")
        return out


def import_images(
    project: Project,
    sources: Iterable[str | Path],
    masks: str | Path | None = None,
    author: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Add every readable image under ``sources`` to the project.

    Files are referenced where they are (nothing is copied). A file already in
    the project (same content hash and page) is not added twice. Unreadable
    files are reported by name with the reason and the rest is imported.

    Parameters
    ----------
    project : Project
    sources : paths
        Image files, TIFF stacks, videos or folders (walked recursively).
    masks : path, optional
        Folder of existing binary masks, matched to the images by relative
        path and file stem; each becomes a label version with source ``import``.
    author : str, optional
        Recorded with the imported labels and the event.
    progress : callable, optional
        ``progress(done, total)`` while files are read.
    """
    report = ImportReport()
    sources = [Path(s) for s in sources]
    for source in sources:
        if not source.exists():
            raise ImageReadError(f"{source} does not exist")
    found = images.discover(sources, on_error=lambda path, exc: None, progress=progress)
    report.errors = {str(p): str(exc) for p, exc in found.errors.items()}
    named = {s.absolute() for s in sources if s.is_file()}
    for path in found.skipped:
        if path in named:  # a file the user named explicitly is not silently skipped
            try:
                images.probe(path)
            except ImageReadError as exc:
                report.errors[str(path)] = str(exc)
    report.skipped = [str(p) for p in found.skipped if p not in named]

    store = project.store
    touched_sequences: set[str] = set()
    new_ids: dict[tuple[Path, int], int] = {}
    by_file: dict[Path, list[images.SourceFrame]] = {}
    for frame in found.frames:
        by_file.setdefault(frame.path, []).append(frame)
    for path, frames in by_file.items():
        try:
            file_hash = images.file_hash(path)
            size = path.stat().st_size
        except OSError as exc:
            report.errors[str(path)] = f"{path.name} could not be read: {exc.strerror}"
            continue
        rows = []
        for frame in frames:
            existing = store.find_sample(file_hash, frame.page)
            if existing is not None:
                report.already_present += 1
                new_ids[(path, frame.page)] = existing.id
                continue
            rows.append(frame)
        if not rows:
            continue
        fields = [dict(path=project.relative(path), page=frame.page, name=frame.name, hash=file_hash,
                       file_size=size, height=frame.info.height, width=frame.info.width, dtype=frame.info.dtype,
                       channels=frame.info.channels, sequence=_sequence_id(project, frame), frame=frame.frame)
                  for frame in rows]
        ids = store.add_samples(fields, what=f"the images of {path.name}")  # one file: all pages or none
        for frame, row, sample_id in zip(rows, fields, ids):
            new_ids[(path, frame.page)] = sample_id
            touched_sequences.add(row["sequence"])
        report.sample_ids.extend(ids)
        report.added += len(ids)
    if touched_sequences:
        # A later import can add frames to an existing sequence: keep 0..n-1 in natural order.
        store.renumber_frames(touched_sequences, key=lambda r: (images.natural_key(PurePosixPath(r[3]).name), r[4]))
    if masks is not None:
        _import_masks(project, Path(masks), found.frames, new_ids, report, author)
    store.log_event("import", actor=author, sources=[str(s) for s in sources], added=report.added,
                    already_present=report.already_present, masks=report.masks_imported,
                    errors=len(report.errors) + len(report.mask_errors))
    return report


def _sequence_id(project: Project, frame: images.SourceFrame) -> str:
    """Sequence id in the store: tied to where the files are, so separate imports never mix.

    A stack or video is its own sequence (its path); still images are grouped by
    folder and file-name prefix (``images/t01.png`` ... -> ``images/t``).
    """
    if "#" in frame.name:
        return project.relative(frame.path)
    prefix = frame.sequence.rsplit("/", 1)[-1]
    return f"{project.relative(frame.path.parent)}/{prefix}"


def mask_index(folder: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Mask files by relative path without extension, and by bare stem."""
    by_relative: dict[str, Path] = {}
    by_stem: dict[str, list[Path]] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files, key=images.natural_key):
            path = Path(root) / name
            if name.startswith(".") or path.suffix.lower() not in images.IMAGE_EXTENSIONS:
                continue
            rel = path.relative_to(folder).with_suffix("").as_posix()
            by_relative[rel] = path
            by_stem.setdefault(path.stem, []).append(path)
    return by_relative, by_stem


def _import_masks(project, folder, frames, sample_ids, report, author) -> None:
    if not folder.is_dir():
        raise MaskError(f"the mask folder {folder} does not exist")
    by_relative, by_stem = mask_index(folder)
    store = project.store
    for frame in frames:
        sample_id = sample_ids.get((frame.path, frame.page))
        if sample_id is None:
            continue
        try:
            mask_path = match_mask(frame, by_relative, by_stem)
        except MaskError as exc:
            report.mask_errors[frame.name] = str(exc)
            continue
        if mask_path is None:
            report.masks_missing += 1
            continue
        try:
            mask = read_mask_for(mask_path, frame)
        except LabelAssistError as exc:
            report.mask_errors[str(mask_path)] = str(exc)
            continue
        latest = store.latest_label(sample_id)
        if latest is not None and np.array_equal(latest.mask, mask):
            report.masks_unchanged += 1
            continue
        store.save_label(sample_id, mask, source="import", author=author,
                         parent_id=latest.id if latest else None,
                         note=f"imported from {mask_path.name}", assistance=None)
        report.masks_imported += 1


def match_mask(frame: images.SourceFrame, by_relative: dict[str, Path],
               by_stem: dict[str, list[Path]]) -> Path | None:
    """The mask file of an image: same relative path without extension, else the same stem.

    Raises MaskError when several masks share the stem and none matches by path.
    """
    name = PurePosixPath(frame.name.split("#", 1)[0])
    found = by_relative.get(name.with_suffix("").as_posix())
    if found is not None:
        return found
    candidates = by_stem.get(name.stem, [])
    if len(candidates) > 1:
        raise MaskError(
            f"{frame.name}: {len(candidates)} masks are called {name.stem} "
            f"({', '.join(c.name for c in candidates[:3])}); put them in the same sub-folders as the images"
        )
    return candidates[0] if candidates else None


def read_mask_for(mask_path: Path, frame: images.SourceFrame) -> np.ndarray:
    """Read the mask of one frame (a mask stack gives one page per frame) and check its size."""
    pages = len(images.probe(mask_path))
    page = frame.page if pages > 1 else 0
    if pages > 1 and frame.page >= pages:
        raise MaskError(f"{mask_path.name} has {pages} pages but the image has a frame {frame.page}")
    mask = images.read_mask(mask_path, page=page)
    if mask.shape != (frame.info.height, frame.info.width):
        raise MaskError(
            f"{mask_path.name} is {mask.shape[1]}x{mask.shape[0]} pixels but its image "
            f"{frame.path.name} is {frame.info.width}x{frame.info.height}"
        )
    return mask


@dataclass
class RelinkReport:
    relinked: int = 0
    still_missing: list[str] = field(default_factory=list)
    files_checked: int = 0


def relink(project: Project, source: str | Path, progress: Progress | None = None) -> RelinkReport:
    """Find samples whose file moved by looking for files with the same content under ``source``.

    Only files whose size matches a missing file are hashed, so a large folder
    is walked quickly.
    """
    source = Path(source)
    if not source.is_dir():
        raise LabelAssistError(f"{source} is not a folder")
    store = project.store
    missing: dict[str, list] = {}
    for sample in store.samples():
        if not project.resolve(sample.path).is_file():
            missing.setdefault(sample.hash, []).append(sample)
    report = RelinkReport()
    if not missing:
        return report
    sizes = {samples[0].file_size for samples in missing.values()}
    candidates = [
        Path(root) / name
        for root, dirs, files in os.walk(source)
        for name in files
        if not name.startswith(".")
    ]
    candidates = [p for p in candidates if _size(p) in sizes]
    for done, path in enumerate(candidates, 1):
        report.files_checked += 1
        try:
            file_hash = images.file_hash(path)
        except OSError:
            continue
        for sample in missing.pop(file_hash, []):
            store.set_sample_path(sample.id, project.relative(path))
            report.relinked += 1
        if progress:
            progress(done, len(candidates))
        if not missing:
            break
    report.still_missing = [s.name for samples in missing.values() for s in samples]
    store.log_event("relink_done", source=str(source), relinked=report.relinked,
                    still_missing=len(report.still_missing))
    return report


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
