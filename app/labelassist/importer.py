"""Bringing images (and existing masks) into a project, and finding moved images again.

Import rules
------------
Images are referenced where they are, never copied; a file whose content (SHA-256)
and page are already in the project is not added twice. A file that cannot be read
(damaged, truncated, impossibly large for its size, a TIFF whose page directories
loop) is named with the reason and the rest is imported: exit 3. Every loop over the
pages or frames of a file is bounded (:data:`labelassist.images.MAX_FRAMES`). File
names whose bytes are not UTF-8 import too; they are stored percent-encoded
(:func:`labelassist.fileio.path_to_text`) and shown with ``\\xNN`` escapes.

If the import stops part-way (the disk is full), what was added before stays in the
project and the report says so: exit 3, never "nothing was changed". Running the
same import again adds the rest (nothing is added twice).

Masks (``--masks DIR``) are matched to images by relative path without extension,
else by file stem, and become label versions with source ``import``:

* an image with no label gets its mask;
* a mask bit for bit equal to the sample's newest label adds nothing ("unchanged");
* a sample that already has a label that differs from the mask keeps it: a newer
  label of another source ("kept your corrections on N samples"), and also an
  earlier import whose mask file has changed since. An import never supersedes a label;
* identical images (one sample) with different masks: neither mask is imported and
  the files are named; with equal masks the mask is imported once;
* a mask drawn only in the alpha channel (colour channels blank) is read from the
  alpha channel, and the report names those files; colour and alpha channels that
  hold different masks are refused (:func:`labelassist.images.read_mask_details`);
* a mask has exactly one page per frame of its image: a single-page mask for a
  5-frame stack, or a 3-page mask for a single image, is refused, not copied to
  every frame or cut; a TIFF page holding several different masks as separate
  colour planes (how tifffile saves a ``(3, H, W)`` array) is refused with a hint;
* masks that match no imported image are listed ("N masks match no image").
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from labelassist import images
from labelassist.fileio import file_hash, path_to_text, text_to_path
from labelassist.textout import printable
from labelassist.errors import ImageReadError, LabelAssistError, MaskError, StoreError
from labelassist.project import Project

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

_SHOWN = 5  # file names listed in one report line before "and N more"


def _listing(names: list[str]) -> str:
    """'a, b, c' or 'a, b, c, d, e and 3 more', printable whatever the names hold."""
    shown = ", ".join(printable(n) for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _unsaved(exc: StoreError) -> str:
    """A store error's reason without its "nothing was changed", which is false for a whole import."""
    return str(exc).replace("; nothing was changed", "").replace("; nothing was saved", "")


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
    masks_kept_corrections: int = 0  # newest label of another source kept
    masks_kept_import: int = 0  # an earlier import kept although the mask file changed
    masks_from_alpha: list[str] = field(default_factory=list)
    masks_unused: list[str] = field(default_factory=list)  # mask files that match no image
    mask_errors: dict[str, str] = field(default_factory=dict)
    sample_ids: list[int] = field(default_factory=list)
    stopped: str | None = None  # why the import stopped part-way (disk full...), else None

    @property
    def ok(self) -> bool:
        """True when every file given was imported (exit 0); False means done in part (exit 3)."""
        return not self.errors and not self.mask_errors and self.stopped is None

    @property
    def changed(self) -> bool:
        """True when the import added anything to the project."""
        return bool(self.added or self.masks_imported)

    def lines(self) -> list[str]:
        """The summary in plain words, one fact per line (printable whatever the file names hold)."""
        out = [f"added {_plural(self.added, 'image')}"
               + (f" ({self.already_present} already in the project)" if self.already_present else "")]
        if self.masks_imported or self.masks_unchanged or self.masks_missing:
            out.append(f"imported {self.masks_imported} mask{'s' * (self.masks_imported != 1)} as labels"
                       + (f", {self.masks_unchanged} unchanged" if self.masks_unchanged else "")
                       + (f", {self.masks_missing} images have no mask" if self.masks_missing else ""))
        if self.masks_kept_corrections:
            out.append(f"kept your corrections on {_plural(self.masks_kept_corrections, 'sample')}: their newest "
                       "label differs from the mask file, and an import never replaces a label")
        if self.masks_kept_import:
            out.append(f"kept the label imported earlier on {_plural(self.masks_kept_import, 'sample')}: their "
                       "mask file has changed since, and an import never replaces a label")
        if self.masks_from_alpha:
            out.append(f"read {_plural(len(self.masks_from_alpha), 'mask')} from the alpha channel (their colour "
                       f"channels are blank): {_listing(self.masks_from_alpha)}")
        if self.masks_unused:
            n = len(self.masks_unused)
            out.append(f"{_plural(n, 'mask')} match{'es' * (n == 1)} no image and {'was' if n == 1 else 'were'} "
                       f"not used: {_listing(self.masks_unused)}")
        if self.skipped:
            out.append(f"skipped {_plural(len(self.skipped), 'file')} that "
                       f"{'are' if len(self.skipped) != 1 else 'is'} not an image: {_listing(self.skipped)}")
        for name, reason in {**self.errors, **self.mask_errors}.items():
            line = f"not imported: {reason}" if name in reason else f"not imported: {name}: {reason}"
            out.append(printable(line))
        return out

    def problem_line(self) -> str | None:
        """One line for the end of a partial import (exit 3): why it stopped, or what was not imported."""
        if self.stopped is not None:
            return self.stop_line()
        failed = [*self.errors.values(), *self.mask_errors.values()]
        if not failed:
            return None
        if len(failed) == 1:
            return printable(f"done in part: {failed[0]}; everything else was imported")
        names = [Path(name).name for name in [*self.errors, *self.mask_errors]]
        return (f"done in part: {len(failed)} files were not imported ({_listing(names)}); "
                "the reasons are listed above, everything else was imported")

    def stop_line(self) -> str | None:
        """One line on why the import stopped part-way and what it had added, or None."""
        if self.stopped is None:
            return None
        done = (f"{_plural(self.added, 'image')}" + (f" and {_plural(self.masks_imported, 'mask')}"
                                                      if self.masks_imported else "")
                + f" {'was' if self.added + self.masks_imported == 1 else 'were'} added before it")
        return printable(f"the import stopped part-way: {self.stopped}; {done} and stay in the project "
                                "(run the same import again to add the rest: nothing is added twice)")


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
    files are reported by name with the reason and the rest is imported. The
    rules for masks are in this module's docstring.

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

    Returns
    -------
    ImportReport
        ``stopped`` is set when a write failed part-way (the disk is full): what
        was added before stays and is counted.

    Raises
    ------
    ImageReadError
        A source does not exist (nothing was changed).
    MaskError
        The mask folder does not exist (nothing was changed).
    StoreError
        The very first write failed (read-only project...), so nothing was changed.
    """
    report = ImportReport()
    sources = [Path(s) for s in sources]
    for source in sources:
        if not source.exists():
            raise ImageReadError(f"{printable(str(source))} does not exist")
    if masks is not None and not Path(masks).is_dir():
        raise MaskError(f"the mask folder {printable(str(masks))} does not exist")
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

    try:
        new_ids = _add_samples(project, found.frames, report)
        if masks is not None and report.stopped is None:
            _import_masks(project, Path(masks), found.frames, new_ids, report, author)
    except StoreError as exc:
        if not report.changed:
            raise  # the first write failed: nothing was changed, and the error says why
        log.exception("import stopped part-way")
        report.stopped = _unsaved(exc)
    try:
        project.store.log_event("import", actor=author, sources=[printable(str(s)) for s in sources],
                                added=report.added, already_present=report.already_present,
                                masks=report.masks_imported,
                                kept_corrections=report.masks_kept_corrections,
                                errors=len(report.errors) + len(report.mask_errors), stopped=report.stopped)
    except StoreError as exc:
        if not report.changed:
            raise
        log.exception("the import event could not be logged")
        report.stopped = report.stopped or f"its entry in the event log could not be written ({_unsaved(exc)})"
    return report


def _add_samples(project: Project, frames: list[images.SourceFrame],
                 report: ImportReport) -> dict[tuple[Path, int], int]:
    """Add the frames' samples file by file (one transaction each); returns (path, page) -> sample id.

    Raises StoreError when a write fails; the files before it stay added (``report.added``).
    """
    store = project.store
    touched_sequences: set[str] = set()
    new_ids: dict[tuple[Path, int], int] = {}
    by_file: dict[Path, list[images.SourceFrame]] = {}
    for frame in frames:
        by_file.setdefault(frame.path, []).append(frame)
    try:
        for path, file_frames in by_file.items():
            try:
                added = _add_file(project, path, file_frames, new_ids, report)
            except StoreError:
                raise  # a write failed: stop here (the caller reports what was added)
            except LabelAssistError as exc:
                report.errors[str(path)] = str(exc)
                continue
            except Exception as exc:  # noqa: BLE001 - one bad file never stops the rest of an import
                log.exception("adding %r failed", path)
                report.errors[str(path)] = f"{path.name} could not be added ({type(exc).__name__}; details in the log)"
                continue
            touched_sequences.update(added)
    finally:
        if touched_sequences:
            # A later import can add frames to an existing sequence: keep 0..n-1 in natural order.
            # Also after a stop part-way, so the frames that were added are in order.
            try:
                store.renumber_frames(touched_sequences, key=_frame_order)
            except StoreError:
                log.exception("the frames of %d sequences could not be renumbered", len(touched_sequences))
    return new_ids


def _add_file(project: Project, path: Path, frames: list[images.SourceFrame],
              new_ids: dict[tuple[Path, int], int], report: ImportReport) -> set[str]:
    """Add the new frames of one file in one transaction (all its pages or none); returns their sequences."""
    store = project.store
    try:
        st = path.stat()  # before hashing: a file changed meanwhile shows a newer time later, and is hashed again
        size = st.st_size
        content_hash = file_hash(path)
    except OSError as exc:  # vanished since it was probed (file_hash says so as an ImageReadError)
        raise ImageReadError(f"{path.name} could not be read: {exc.strerror}") from exc
    rows = []
    for frame in frames:
        existing = store.find_sample(content_hash, frame.page)
        if existing is not None:
            report.already_present += 1
            new_ids[(path, frame.page)] = existing.id
            continue
        rows.append(frame)
    if not rows:
        return set()
    fields = [dict(path=path_to_text(project.relative(path)), page=frame.page,
                   name=printable(frame.name), hash=content_hash, file_size=size,
                   height=frame.info.height, width=frame.info.width, dtype=frame.info.dtype,
                   channels=frame.info.channels, sequence=printable(_sequence_id(project, frame)),
                   frame=frame.frame, mtime_ns=st.st_mtime_ns)
              for frame in rows]
    ids = store.add_samples(fields, what=f"the images of {printable(path.name)}")
    for frame, sample_id in zip(rows, ids):
        new_ids[(path, frame.page)] = sample_id
    report.sample_ids.extend(ids)
    report.added += len(ids)
    return {row["sequence"] for row in fields}


def _frame_order(row) -> tuple:
    """Natural order of a sample row ``(id, sequence, frame, path, page)``: file name, then page."""
    return images.natural_key(PurePosixPath(text_to_path(row[3])).name), row[4]


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
    for root, dirs, files in os.walk(folder):  # symbolic links to folders are not followed: no loops
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files, key=images.natural_key):
            path = Path(root) / name
            if name.startswith(".") or path.suffix.lower() not in images.IMAGE_EXTENSIONS:
                continue
            rel = path.relative_to(folder).with_suffix("").as_posix()
            by_relative[rel] = path
            by_stem.setdefault(path.stem, []).append(path)
    return by_relative, by_stem


@dataclass(frozen=True)
class _Candidate:
    """A mask read for one frame of an image."""

    frame: images.SourceFrame
    path: Path
    read: images.MaskRead


def _import_masks(project, folder, frames, sample_ids, report, author) -> None:
    """Match, read and save the masks of the imported frames (rules: the module docstring)."""
    by_relative, by_stem = mask_index(folder)
    frames_per_file = Counter(frame.path for frame in frames)
    pages_cache: dict[Path, int] = {}
    used: set[Path] = set()
    candidates: dict[int, list[_Candidate]] = {}
    for frame in frames:
        sample_id = sample_ids.get((frame.path, frame.page))  # None: the image itself was not imported
        try:
            mask_path = match_mask(frame, by_relative, by_stem)
        except MaskError as exc:
            if sample_id is not None:
                report.mask_errors[frame.name] = str(exc)
            continue
        if mask_path is not None:
            used.add(mask_path)  # its image exists, even if it could not be added
        if sample_id is None:
            continue
        if mask_path is None:
            report.masks_missing += 1
            continue
        if str(mask_path) in report.mask_errors:
            continue  # refused already for an earlier frame (one line per mask file)
        try:
            read = read_mask_details_for(mask_path, frame, frames_per_file[frame.path], pages_cache)
        except LabelAssistError as exc:
            report.mask_errors[str(mask_path)] = str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - one bad mask never stops the rest
            log.exception("reading the mask %r failed", mask_path)
            report.mask_errors[str(mask_path)] = (f"{mask_path.name} could not be read ({type(exc).__name__}; "
                                                  "details in the log)")
            continue
        candidates.setdefault(sample_id, []).append(_Candidate(frame, mask_path, read))
    # A mask whose image was named but could not be read is not "without an image": that image's
    # own line says what went wrong.
    failed_stems = {Path(name).stem for name in report.errors}
    report.masks_unused = [p.relative_to(folder).as_posix() for p in by_relative.values()
                           if p not in used and p.stem not in failed_stems]

    store = project.store
    for sample_id, found in candidates.items():
        chosen = _agreeing_mask(found, report)
        if chosen is None:
            continue
        if chosen.read.channel == "alpha":
            report.masks_from_alpha.append(chosen.path.name)
        latest = store.latest_label(sample_id)
        if latest is not None:
            if np.array_equal(latest.mask, chosen.read.mask):
                report.masks_unchanged += 1
            elif latest.source != "import":
                report.masks_kept_corrections += 1
            else:
                report.masks_kept_import += 1
            continue
        store.save_label(sample_id, chosen.read.mask, source="import", author=author, parent_id=None,
                         note=f"imported from {printable(chosen.path.name)}", assistance=None)
        report.masks_imported += 1


def _agreeing_mask(found: list[_Candidate], report: ImportReport) -> _Candidate | None:
    """The mask of a sample whose image may be in several files: they must all agree.

    Identical images (same content, so one sample) with different masks would let
    whichever came last win; instead neither is imported and both are named.
    """
    first = found[0]
    differ = [c for c in found[1:] if not np.array_equal(c.read.mask, first.read.mask)]
    if not differ:
        return first
    names = [c.frame.name for c in [first, *differ]]
    masks = [c.path.name for c in [first, *differ]]
    report.mask_errors[" and ".join(names)] = (
        f"{' and '.join(names)} are the same image but their masks {' and '.join(masks)} differ; "
        "neither mask was imported (keep one of them)")
    return None


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


def _check_pages(mask_path: Path, frame: images.SourceFrame, pages: int, frames: int) -> None:
    """One mask page per image frame: never copy one mask to every frame, never drop pages."""
    if pages == frames:
        return
    image = frame.path.name
    planes = images.tiff_planes(mask_path) if pages == 1 and frames > 1 else 1
    if planes == frames > 1:
        raise MaskError(f"{image} has {frames} frames but its mask {mask_path.name} holds {planes} masks as the "
                        f"colour planes of one TIFF page; save them as {planes} pages (one mask per page)")
    if frames == 1:
        raise MaskError(f"{mask_path.name} has {pages} pages but its image {image} is a single image; "
                        "give a mask with one page")
    raise MaskError(f"{image} has {frames} frames but its mask {mask_path.name} has "
                    f"{_plural(pages, 'page')}; give a mask with one page per frame")


def read_mask_details_for(mask_path: Path, frame: images.SourceFrame, frames: int,
                          pages_cache: dict[Path, int] | None = None) -> images.MaskRead:
    """Read the mask of one frame of an image with ``frames`` frames, checking pages and size.

    Parameters
    ----------
    mask_path : Path
    frame : SourceFrame
    frames : int
        How many frames the image file has; the mask must have as many pages.
    pages_cache : dict, optional
        Page counts of mask files already probed (a stack's mask is probed once).

    Raises
    ------
    ImageReadError, MaskError
    """
    cache = pages_cache if pages_cache is not None else {}
    if mask_path not in cache:
        cache[mask_path] = len(images.probe(mask_path))
    _check_pages(mask_path, frame, cache[mask_path], frames)
    read = images.read_mask_details(mask_path, page=frame.page)
    _check_size(mask_path, frame, read.mask)
    return read


def _check_size(mask_path: Path, frame: images.SourceFrame, mask: np.ndarray) -> None:
    if mask.shape != (frame.info.height, frame.info.width):
        raise MaskError(
            f"{mask_path.name} is {mask.shape[1]}x{mask.shape[0]} pixels but its image "
            f"{frame.path.name} is {frame.info.width}x{frame.info.height}"
        )


def read_mask_for(mask_path: Path, frame: images.SourceFrame, frames: int | None = None) -> np.ndarray:
    """Read the mask of one frame (a mask stack gives one page per frame) and check its size.

    With ``frames`` (the image file's frame count) the mask must have exactly
    one page per frame; without it a single-page mask serves every frame (the
    evaluation of a folder of masks, where nothing is stored).
    """
    if frames is not None:
        return read_mask_details_for(mask_path, frame, frames).mask
    pages = len(images.probe(mask_path))
    page = frame.page if pages > 1 else 0
    if pages > 1 and frame.page >= pages:
        raise MaskError(f"{mask_path.name} has {pages} pages but the image has a frame {frame.page}")
    mask = images.read_mask(mask_path, page=page)
    _check_size(mask_path, frame, mask)
    return mask


@dataclass
class RelinkReport:
    relinked: int = 0
    still_missing: list[str] = field(default_factory=list)
    files_checked: int = 0
    unreadable: list[str] = field(default_factory=list)  # candidates that could not be read, skipped


def _resolve(project: Project, stored: str) -> Path:
    """Where a sample's file is, for a path stored by :func:`labelassist.fileio.path_to_text`."""
    return project.resolve(text_to_path(stored))


def relink(project: Project, source: str | Path, progress: Progress | None = None) -> RelinkReport:
    """Find samples whose file moved by looking for files with the same content under ``source``.

    Only files whose size matches a missing file are hashed, so a large folder
    is walked quickly. A file that cannot be read is skipped and named
    (``RelinkReport.unreadable``); the search goes on.
    """
    source = Path(source)
    if not source.is_dir():
        raise LabelAssistError(f"{printable(str(source))} is not a folder")
    store = project.store
    missing: dict[str, list] = {}
    for sample in store.samples():
        if not _resolve(project, sample.path).is_file():
            missing.setdefault(sample.hash, []).append(sample)
    report = RelinkReport()
    if not missing:
        return report
    sizes = {samples[0].file_size for samples in missing.values()}
    unlisted: list[str] = []
    candidates = [
        Path(root) / name
        for root, dirs, files in os.walk(source, onerror=lambda exc: unlisted.append(str(exc.filename)))
        for name in files
        # Only files an import could have taken: never a database (labels.sqlite, its -wal/-shm,
        # a backup), which this process must not open with plain file I/O (the POSIX lock rule).
        if not name.startswith(".") and Path(name).suffix.lower() in images.IMAGE_EXTENSIONS | images.VIDEO_EXTENSIONS
    ]
    report.unreadable.extend(unlisted)
    candidates = [p for p in candidates if _size(p) in sizes]
    for done, path in enumerate(candidates, 1):
        report.files_checked += 1
        try:
            content_hash = file_hash(path)
        except (OSError, ImageReadError):  # unreadable (permissions, I/O error): skip it, name it, go on
            log.warning("relink: %r could not be read", path, exc_info=True)
            report.unreadable.append(str(path))
            continue
        for sample in missing.pop(content_hash, []):
            store.set_sample_path(sample.id, path_to_text(project.relative(path)))
            report.relinked += 1
        if progress:
            progress(done, len(candidates))
        if not missing:
            break
    report.still_missing = [s.name for samples in missing.values() for s in samples]
    store.log_event("relink_done", source=printable(str(source)), relinked=report.relinked,
                    still_missing=len(report.still_missing), unreadable=len(report.unreadable))
    return report


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
