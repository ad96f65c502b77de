"""Exporting the latest label of every labelled sample: PNG masks or COCO JSON with RLE."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from labelassist import __version__
from labelassist.errors import LabelAssistError
from labelassist.fileio import atomic_write_bytes
from labelassist.project import Project
from labelassist.store import Sample, utc_now

FORMATS = ("png", "coco")


@dataclass
class ExportReport:
    written: list[Path] = field(default_factory=list)
    labels: int = 0


def mask_file_name(sample: Sample) -> str:
    """Relative POSIX path of a sample's exported mask: named like its image, ``.png``.

    Pages of a stack and frames of a video get ``_p0003`` (page 3) added.
    """
    name = PurePosixPath(sample.name.split("#", 1)[0])
    stem = name.stem + (f"_p{sample.page:04d}" if "#" in sample.name else "")
    return (name.parent / f"{stem}.png").as_posix()


def export_png(project: Project, out: str | Path, progress: Callable[[int, int], None] | None = None) -> ExportReport:
    """Write each labelled sample's latest mask as an 8-bit PNG (0 background, 255 object)."""
    out = _prepare(out)
    report = ExportReport()
    pairs = list(project.store.latest_labels())
    used: set[str] = set()
    for done, (sample, label) in enumerate(pairs, 1):
        rel = mask_file_name(sample)
        if rel in used:  # two images named alike (a.tif and a.png): keep both, tell them apart
            rel = rel[:-4] + f"__{sample.id}.png"
        used.add(rel)
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".png", label.mask.astype(np.uint8) * 255)
        if not ok:
            raise LabelAssistError(f"the mask of {sample.name} could not be encoded as PNG")
        _write(target, buf.tobytes())
        report.written.append(target)
        report.labels += 1
        if progress:
            progress(done, len(pairs))
    project.store.log_event("export", format="png", out=str(out), labels=report.labels)
    return report


def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a bool mask: column-major runs, starting with a run of zeros."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of :func:`rle_encode`."""
    height, width = rle["size"]
    values = np.zeros(len(rle["counts"]), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, rle["counts"])
    if flat.size != height * width:
        raise ValueError(f"RLE covers {flat.size} pixels, expected {height * width}")
    return flat.reshape((height, width), order="F")


def export_coco(project: Project, out: str | Path, progress: Callable[[int, int], None] | None = None) -> ExportReport:
    """Write ``annotations.json``: one COCO annotation (RLE) per connected segment of each latest label."""
    out = _prepare(out)
    pairs = list(project.store.latest_labels())
    coco = {
        "info": {"description": project.name, "version": __version__, "date_created": utc_now(),
                 "contributor": "Label Assistant kiosk"},
        "licenses": [],
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": project.settings["labels"]["classes"][0], "supercategory": "object"}],
    }
    ann_id = 0
    for done, (sample, label) in enumerate(pairs, 1):
        coco["images"].append({
            "id": sample.id, "file_name": sample.name.split("#", 1)[0], "width": sample.width,
            "height": sample.height, "frame": sample.page, "sequence": sample.sequence,
            "labelassist": {"label_version": label.id, "author": label.author, "source": label.source,
                            "created_at": label.created_at, "sha256": sample.hash},
        })
        mask = label.mask
        n, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        for k in range(1, n):
            ann_id += 1
            x, y, w, h, area = (int(v) for v in stats[k])
            coco["annotations"].append({
                "id": ann_id, "image_id": sample.id, "category_id": 1, "iscrowd": 0,
                "segmentation": rle_encode(components == k), "area": area, "bbox": [x, y, w, h],
            })
        if progress:
            progress(done, len(pairs))
    target = out / "annotations.json"
    _write(target, json.dumps(coco).encode("utf-8"))
    project.store.log_event("export", format="coco", out=str(out), labels=len(pairs))
    return ExportReport(written=[target], labels=len(pairs))


def _prepare(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LabelAssistError(f"{out} is a file; give a folder to export into")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabelAssistError(f"the export folder {out} could not be created: {exc.strerror}") from exc
    return out


def _write(target: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise LabelAssistError(f"{target} could not be written: {exc.strerror}; the labels are unchanged") from exc

