"""Exporting the latest label of every labelled sample: PNG masks or COCO JSON with RLE.

Two promises hold for every file written here (README, "Nothing is lost"):

- an export never overwrites a sample's source image and never writes into the project folder:
  the output folder and every output path are checked, by resolved path and by file identity,
  *before* anything is written (:func:`prepare_output`);
- one damaged label (a mask blob that no longer decodes) is named and left out, the rest is
  exported (:class:`DamagedLabel`).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from labelassist import __version__
from labelassist.errors import LabelAssistError, StoreError
from labelassist.fileio import atomic_write_bytes, atomic_write_text
from labelassist.project import Project
from labelassist.store import LabelVersion, Sample, Store, utc_now

log = logging.getLogger(__name__)

FORMATS = ("png", "coco")
COCO_FILE = "annotations.json"


@dataclass(frozen=True)
class DamagedLabel:
    """A label version whose stored mask no longer decodes (disk damage): left out of an export."""

    sample: Sample
    label_id: int
    reason: str
    earlier: int = 0

    def line(self, project_folder: str | Path) -> str:
        """One plain line: which sample, why, and how to get the label back."""
        kept = "" if not self.earlier else (
            f"its {self.earlier} earlier version{'s are' if self.earlier > 1 else ' is'} kept; ")
        return (f"{self.sample.name}: its latest label (version {self.label_id}) is damaged ({self.reason}) and was "
                f"left out; {kept}to get it back, put a backup from before the damage in place with "
                f"'labelassist restore {project_folder}' (it lists them; the replaced database is kept)")


def damaged_lines(damaged: list[DamagedLabel], project_folder: str | Path, limit: int = 10) -> list[str]:
    """One line per damaged label (at most ``limit``, then how many more), for the terminal."""
    lines = [d.line(project_folder) for d in damaged[:limit]]
    if len(damaged) > limit:
        lines.append(f"and {len(damaged) - limit} more damaged labels (listed in the log file)")
        for d in damaged[limit:]:
            log.warning("%s", d.line(project_folder))
    return lines


@dataclass
class ExportReport:
    """What an export wrote, what it left out, and whether the event log has it.

    Attributes
    ----------
    written : list of Path
        The files written.
    labels : int
        Labels exported.
    damaged : list of DamagedLabel
        Labels left out because their stored mask is damaged (the CLI exits 3 when there are any).
    not_logged : str or None
        Why the export could not be recorded in the project's event log (a read-only or busy
        project); the files are complete all the same.
    """

    written: list[Path] = field(default_factory=list)
    labels: int = 0
    damaged: list[DamagedLabel] = field(default_factory=list)
    not_logged: str | None = None


def mask_file_name(sample: Sample) -> str:
    """Relative POSIX path of a sample's exported mask: named like its image, ``.png``.

    Pages of a stack and frames of a video get ``_p0003`` (page 3) added.
    """
    name = PurePosixPath(sample.name.split("#", 1)[0])
    stem = name.stem + (f"_p{sample.page:04d}" if "#" in sample.name else "")
    return (name.parent / f"{stem}.png").as_posix()


def plan_mask_names(samples: Iterable[Sample]) -> list[str]:
    """The relative output path of each sample's mask, in order, with no two alike.

    Two images named alike (``a.tif`` and ``a.png``) keep both masks, told apart by the sample id.
    Names are compared case-insensitively because exports often go to USB sticks (FAT, exFAT)
    where ``A.png`` and ``a.png`` are one file. A name that would leave the export folder
    (absolute, or with ``..``) keeps only its file name.
    """
    used: set[str] = set()
    names = []
    for sample in samples:
        rel = mask_file_name(sample)
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts:
            rel = pure.name
        if rel.casefold() in used:
            rel = rel[:-4] + f"__{sample.id}.png"
        used.add(rel.casefold())
        names.append(rel)
    return names


# -- where an export may write --------------------------------------------------------------

def _identity(path: str | Path) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of what ``path`` names, following links; None when nothing is there.

    ``os.stat`` opens nothing, so this is safe on the database files too (the POSIX lock rule).
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def resolve_path(path: Path) -> Path:
    """``path.resolve()``, with a symlink loop as a plain error (Python 3.11 raises RuntimeError)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:
        raise LabelAssistError(f"{path} cannot be used: {exc} (a loop of links?); nothing was written") from None


def _path_key(path: Path) -> str:
    """A resolved path as a comparable string; case-folded because a FAT stick or NTFS ignores case."""
    return os.path.normcase(str(resolve_path(path))).casefold()


# Database files of any project: never an output, whatever folder they are in.
_STORE_NAMES = ("labels.sqlite", "labels.sqlite-wal", "labels.sqlite-shm", "labels.sqlite-journal")
# Written into an export folder: the names this app wrote there, so a later export may replace
# them and nothing else (a folder of ground-truth masks or another project's images is never overwritten).
EXPORT_MARKER = ".labelassist-export.json"


def project_holding(folder: Path) -> Path | None:
    """The project folder ``folder`` is (or lies inside), of any project: by ``project.toml`` or
    ``labels.sqlite`` beside it, looked at with ``os.stat`` only (the POSIX lock rule)."""
    for up in (folder, *folder.parents):
        if any(os.path.lexists(up / name) for name in ("project.toml", "labels.sqlite")):
            return up
    return None


def refuse_project_files(target: Path, walk: bool = True) -> None:
    """Refuse an output path that is a label database or lies in any project's folder (``walk``
    False: its folder was already checked)."""
    if target.name.lower() in _STORE_NAMES:
        raise LabelAssistError(f"{target} is a label database; give another file name (nothing was written)")
    if not walk:
        return
    holder = project_holding(resolve_path(target.parent) if target.parent.exists() else target.parent.absolute())
    if holder is not None:
        raise LabelAssistError(f"{target} would be inside the project folder {holder}; give a place outside "
                               "every project (nothing was written)")


def _claimed(out: Path) -> set[str]:
    """Names an earlier export wrote into ``out`` (from its marker file; empty when none)."""
    try:
        data = json.loads((out / EXPORT_MARKER).read_text(encoding="utf-8"))
        return {str(n) for n in data.get("files", [])}
    except (OSError, ValueError, AttributeError):
        return set()


@dataclass(frozen=True)
class _Guard:
    """What an export must never touch: the project folder and every sample's source image."""

    project: Path
    project_id: tuple[int, int] | None
    source_ids: dict[tuple[int, int], str]
    source_keys: dict[str, str]

    @classmethod
    def of(cls, project: Project) -> "_Guard":
        source_ids: dict[tuple[int, int], str] = {}
        source_keys: dict[str, str] = {}
        seen: set[str] = set()
        for sample in project.store.samples():
            if sample.path in seen:  # the other pages of a stack, frames of a video
                continue
            seen.add(sample.path)
            path = project.resolve(sample.path)
            ident = _identity(path)
            if ident is not None:
                source_ids.setdefault(ident, sample.name)
            source_keys.setdefault(_path_key(path), sample.name)
        folder = Path(project.folder)
        return cls(resolve_path(folder), _identity(folder), source_ids, source_keys)

    def inside_project(self, folder: Path) -> bool:
        """Whether ``folder`` is the project folder or lies inside it.

        By resolved path (symlinks), and by identity of each existing folder on the way up, which
        also catches a bind mount or another spelling of the name on a case-insensitive disk.
        """
        resolved = resolve_path(folder)
        if resolved == self.project or self.project in resolved.parents:
            return True
        if self.project_id is None:
            return False
        return any(_identity(up) == self.project_id for up in (resolved, *resolved.parents))

    def image_at(self, target: Path) -> str | None:
        """The name of the sample whose source image ``target`` is (same file or same path), else None."""
        ident = _identity(target)
        if ident is not None and ident in self.source_ids:
            return self.source_ids[ident]
        return self.source_keys.get(_path_key(target))


def prepare_output(project: Project, out: str | Path, names: Iterable[str], claim: bool = True) -> Path:
    """Check an output folder and the relative ``names`` to be written there, then create the folder.

    Refuses (LabelAssistError, one plain line) before anything is written or created when ``out``
    is a file, is the project folder or inside it, lies in any other project's folder, when an
    output would be a label database, or when any output path would be a sample's source image
    (also through a symlink, a hard link or a differently-cased name). With ``claim`` (exports of
    many files), an existing file is replaced only if an earlier export wrote it (the folder's
    marker file lists what this app wrote there): a folder of ground-truth masks or another
    project's images is never overwritten. The names are added to the marker before writing.

    Returns
    -------
    Path
        The folder, created if it did not exist.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LabelAssistError(f"{out} is a file; give a folder to write into (nothing was written)")
    guard = _Guard.of(project)
    if guard.inside_project(out):
        raise LabelAssistError(
            f"{out} is inside the project folder {project.folder}; give a folder outside the project "
            "(nothing was written)")
    names = list(names)  # walked twice below: a generator would be empty the second time
    checked: dict[Path, bool] = {}
    for rel in names:
        target = out / rel
        parent = target.parent
        if parent not in checked:
            checked[parent] = guard.inside_project(parent)
        if checked[parent]:
            raise LabelAssistError(
                f"{target} would be inside the project folder {project.folder}; give a folder outside the "
                "project (nothing was written)")
        image = guard.image_at(target)
        if image is not None:
            raise LabelAssistError(
                f"{target} is the image of sample {image} itself (masks are named like their images); "
                f"give a folder that does not hold the images (nothing was written)")
    parents_seen: set[Path] = set()
    for rel in names:  # the names one by one, the walk up to any project once per folder
        target = out / rel
        refuse_project_files(target, walk=target.parent not in parents_seen)
        parents_seen.add(target.parent)
    if claim:
        claimed = _claimed(out)
        foreign = [rel for rel in names if os.path.lexists(out / rel) and rel not in claimed]
        if foreign:
            raise LabelAssistError(
                f"{out} already holds {foreign[0]}"
                + (f" and {len(foreign) - 1} more file(s)" if len(foreign) > 1 else "")
                + " that this app did not write there; give an empty or new folder (nothing was written)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabelAssistError(f"the folder {out} could not be created: {exc.strerror}") from exc
    if claim:
        try:
            atomic_write_text(out / EXPORT_MARKER, json.dumps(
                {"written_by": "labelassist", "files": sorted(_claimed(out) | set(names))}, indent=1))
        except OSError as exc:
            raise LabelAssistError(f"the folder {out} could not be written: {exc.strerror}") from exc
    return out


# -- reading the labels ---------------------------------------------------------------------

def decode_label(sample: Sample, label: LabelVersion, store: Store | None = None) -> np.ndarray | DamagedLabel:
    """The label's mask, or a :class:`DamagedLabel` naming the sample when the stored blob is damaged.

    With ``store``, the damaged label also says how many earlier versions of the sample are kept.
    """
    try:
        return label.mask
    except (zlib.error, ValueError, StoreError) as exc:
        log.warning("label version %s of sample %s (%s) does not decode", label.id, sample.id, sample.name,
                    exc_info=True)
        reason = "its stored mask no longer decompresses" if isinstance(exc, zlib.error) else str(exc)
        earlier = 0
        if store is not None:
            earlier = sum(1 for v in store.label_history(sample.id) if v.id < label.id)
        return DamagedLabel(sample, label.id, reason, earlier)


def _record(project: Project, report: ExportReport, **details) -> None:
    """Log the export in the project's event log; a read-only or busy project does not undo it.

    Exporting from a write-protected USB stick is a normal use, so the files stand and the reason
    goes to the report (and the log file) instead of failing the whole export.
    """
    try:
        project.store.log_event("export", **details)
    except LabelAssistError as exc:
        log.warning("the export to %s is not in the event log: %s", details.get("out"), exc)
        report.not_logged = str(exc)


# -- PNG --------------------------------------------------------------------------------------

def export_png(project: Project, out: str | Path, progress: Callable[[int, int], None] | None = None) -> ExportReport:
    """Write each labelled sample's latest mask as an 8-bit PNG (0 background, 255 object).

    Damaged labels are left out and listed in ``report.damaged``; see :func:`prepare_output`
    for where an export refuses to write.
    """
    pairs = list(project.store.latest_labels())
    names = plan_mask_names(sample for sample, _ in pairs)
    out = prepare_output(project, out, names)
    report = ExportReport()
    for done, ((sample, label), rel) in enumerate(zip(pairs, names), 1):
        mask = decode_label(sample, label, project.store)
        if isinstance(mask, DamagedLabel):
            report.damaged.append(mask)
        else:
            target = out / rel
            _mkdir(target.parent)
            _write(target, encode_png(mask, sample.name))
            report.written.append(target)
            report.labels += 1
        if progress:
            progress(done, len(pairs))
    _record(project, report, format="png", out=str(out), labels=report.labels, damaged=len(report.damaged))
    return report


def encode_png(mask: np.ndarray, name: str) -> bytes:
    """A bool mask as 8-bit PNG bytes (0 background, 255 object)."""
    ok, buf = cv2.imencode(".png", np.asarray(mask).astype(np.uint8) * 255)
    if not ok:
        raise LabelAssistError(f"the mask of {name} could not be encoded as PNG")
    return buf.tobytes()


# -- COCO -------------------------------------------------------------------------------------

def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a bool mask: column-major runs, starting with a run of zeros.

    Encodes the whole image, so its cost grows with the image, not the segment: the reference
    for :func:`rle_encode_box`, which the export uses.
    """
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_encode_box(crop: np.ndarray, top: int, left: int, shape: tuple[int, int]) -> dict:
    """The same RLE as :func:`rle_encode` for a mask that is zero outside one box, from the box alone.

    Parameters
    ----------
    crop : (h, w) bool array
        The mask inside the box.
    top, left : int
        Where the box sits in the image.
    shape : (height, width)
        The image size.

    Returns
    -------
    dict
        ``{"size": [height, width], "counts": [...]}``, identical to ``rle_encode`` of the whole
        image (so bit-exact against pycocotools as before), in time proportional to the box.
    """
    height, width = int(shape[0]), int(shape[1])
    h, w = crop.shape
    # A zero row above and below each column keeps runs from joining across columns inside the box.
    padded = np.zeros((h + 2, w), dtype=np.int8)
    padded[1:-1] = crop
    steps = np.diff(padded.ravel(order="F"))
    starts = _image_index(np.flatnonzero(steps == 1) + 1, h, top, left, height)
    ends = _image_index(np.flatnonzero(steps == -1) + 1, h, top, left, height)
    if starts.size > 1:
        # A box as tall as the image: a run reaching the bottom row goes on at the top of the next column.
        joined = ends[:-1] == starts[1:]
        starts = starts[np.concatenate([[True], ~joined])]
        ends = ends[np.concatenate([~joined, [True]])]
    total = height * width
    bounds = np.empty(2 * starts.size + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, total
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    counts = np.diff(bounds).tolist()
    if starts.size and ends[-1] == total:
        counts.pop()  # the last pixel is set: no closing run of zeros, as in rle_encode
    return {"size": [height, width], "counts": counts}


def _image_index(padded_index: np.ndarray, h: int, top: int, left: int, height: int) -> np.ndarray:
    """Column-major image index of positions in the column-padded box of :func:`rle_encode_box`."""
    column, row = np.divmod(padded_index.astype(np.int64), h + 2)
    return (left + column) * height + top + row - 1


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of :func:`rle_encode`."""
    height, width = rle["size"]
    values = np.zeros(len(rle["counts"]), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, rle["counts"])
    if flat.size != height * width:
        raise ValueError(f"RLE covers {flat.size} pixels, expected {height * width}")
    return flat.reshape((height, width), order="F")


def segment_annotations(mask: np.ndarray) -> Iterator[tuple[dict, list[int], int]]:
    """(RLE, bbox ``[x, y, w, h]``, area) of each 8-connected segment of a mask, in label order."""
    n, components, stats, _ = cv2.connectedComponentsWithStats(np.asarray(mask).astype(np.uint8), connectivity=8)
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        crop = components[y:y + h, x:x + w] == k
        yield rle_encode_box(crop, y, x, mask.shape), [x, y, w, h], area


def coco_category(project: Project) -> str:
    """The COCO category name: the project's first label class; a project without one is refused."""
    classes = project.settings.get("labels", {}).get("classes") or []
    if not isinstance(classes, list) or not classes or not str(classes[0]).strip():
        raise LabelAssistError(
            f"{Path(project.folder) / 'project.toml'} names no label class ([labels] classes is empty); "
            'add one, for example classes = ["cell"] (nothing was written)')
    return str(classes[0])


def export_coco(project: Project, out: str | Path, progress: Callable[[int, int], None] | None = None) -> ExportReport:
    """Write ``annotations.json``: one COCO annotation (RLE) per connected segment of each latest label.

    A damaged label is left out (with its image entry) and listed in ``report.damaged``.
    """
    category = coco_category(project)
    out = prepare_output(project, out, [COCO_FILE])
    pairs = list(project.store.latest_labels())
    coco = {
        "info": {"description": project.name, "version": __version__, "date_created": utc_now(),
                 "contributor": "Label Assistant kiosk"},
        "licenses": [],
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": category, "supercategory": "object"}],
    }
    report = ExportReport()
    ann_id = 0
    for done, (sample, label) in enumerate(pairs, 1):
        mask = decode_label(sample, label, project.store)
        if isinstance(mask, DamagedLabel):
            report.damaged.append(mask)
        else:
            coco["images"].append({
                "id": sample.id, "file_name": sample.name.split("#", 1)[0], "width": sample.width,
                "height": sample.height, "frame": sample.page, "sequence": sample.sequence,
                "labelassist": {"label_version": label.id, "author": label.author, "source": label.source,
                                "created_at": label.created_at, "sha256": sample.hash},
            })
            for rle, bbox, area in segment_annotations(mask):
                ann_id += 1
                coco["annotations"].append({"id": ann_id, "image_id": sample.id, "category_id": 1, "iscrowd": 0,
                                            "segmentation": rle, "area": area, "bbox": bbox})
            report.labels += 1
        if progress:
            progress(done, len(pairs))
    target = out / COCO_FILE
    _write(target, json.dumps(coco).encode("utf-8"))
    report.written.append(target)
    _record(project, report, format="coco", out=str(out), labels=report.labels, damaged=len(report.damaged))
    return report


# -- writing ------------------------------------------------------------------------------------

def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabelAssistError(
            f"the folder {folder} could not be created: {exc.strerror}; the labels are unchanged") from exc


def _write(target: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise LabelAssistError(f"{target} could not be written: {exc.strerror}; the labels are unchanged") from exc


def write_file(target: Path, data: bytes) -> None:
    """Write ``data`` atomically into ``target`` (its folder created), with a plain error when that fails."""
    _mkdir(target.parent)
    _write(target, data)
