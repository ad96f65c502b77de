"""Training jobs: the round trip kiosk -> GPU machine -> kiosk.

``export_job(project, "job.zip")`` writes everything a data scientist needs to
train the project's pre-label U-Net elsewhere, without the kiosk package::

    job.zip
      README.md          how to run it
      requirements.txt   torch, onnx, onnxruntime, numpy, opencv-python-headless, tifffile
      train.py           the self-contained training code (labelassist/training/core.py)
      job.json           items (image, mask, sample), training configuration, the project's
                         pre-processing pipeline, format version
      split.json         train / validation sample ids (seeded)
      images/NNNN.png    the labelled images' pixels as stored (8/16-bit PNG; float32 TIFF)
      masks/NNNN.png     their newest labels (0/255)

The answer is ``model.onnx`` + ``model.json`` (the card), installed with
:func:`labelassist.models.install_model` (``labelassist model import PROJECT model.onnx``).

This module needs numpy and OpenCV only (no torch): it runs on the kiosk.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from labelassist.errors import ImageReadError, LabelAssistError

__all__ = ["JOB_FORMAT", "JobSummary", "export_job", "unpack_job", "run_job", "default_config"]

JOB_FORMAT = "labelassist-training-job/1"
CORE = Path(__file__).with_name("core.py")

_README = """# Label Assistant training job: {name}

{n_train} training and {n_val} validation images from project "{project}", exported {created}.

    python -m pip install -r requirements.txt      # a CUDA build of torch for GPUs
    python train.py . --out result                 # GPU when present, CPU otherwise
    python train.py . --out result --int8          # also a static int8 (QDQ) model
    torchrun --nproc_per_node 4 train.py . --out result   # several GPUs (DistributedDataParallel)

Options: --epochs, --patch, --batch, --base (U-Net width), --scale, --device cpu|cuda, --seed.
The defaults are in job.json ("config").

Send back result/model.onnx and result/model.json (the model card: normalisation, threshold,
validation DSC, training data); import them on the kiosk with

    labelassist model import PROJECT model.onnx

The network sees the raw pixels normalised by each image's own 0.5/99.5 percentiles (see the card);
the project's display pre-processing ({preprocess}) is recorded in job.json for reference only.
"""

_REQUIREMENTS = "torch>=2.2\nonnx>=1.16\nonnxruntime>=1.17\nnumpy>=1.26\nopencv-python-headless>=4.8\ntifffile>=2023.7\n"


@dataclass(frozen=True)
class JobSummary:
    """What :func:`export_job` wrote."""

    path: Path
    train: list[str]
    validation: list[str]
    skipped: list[str]
    bytes: int


def default_config(name: str, shapes: list[tuple[int, int]]) -> dict[str, Any]:
    """Training defaults for a GPU run; images whose short side is 384 px or more are halved."""
    short = min((min(s) for s in shapes), default=512)
    scale = 0.5 if short >= 384 else 1.0
    patch = int(min(256, max(64, (short * scale) // 16 * 16)))
    return {"name": name, "scale": scale, "base": 16, "depth": 4, "patch": patch, "batch": 8, "epochs": 60,
            "patches_per_image": 8, "lr": 2e-3, "seed": 0, "threshold": 0.5}


def _encode_image(image: np.ndarray) -> tuple[bytes, str]:
    if image.dtype == np.float32:
        import tifffile

        buf = io.BytesIO()
        tifffile.imwrite(buf, image)
        return buf.getvalue(), ".tif"
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"cannot export {image.dtype} pixels")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ImageReadError("PNG encoding failed")
    return data.tobytes(), ".png"


def export_job(project, out_zip: str | os.PathLike, *, validation_fraction: float = 0.2, seed: int = 0,
               config: dict[str, Any] | None = None,
               progress: Callable[[int, int], None] | None = None) -> JobSummary:
    """Write a training-job zip of every labelled sample of ``project`` (newest label each).

    Parameters
    ----------
    project : labelassist.project.Project
    out_zip : path of the zip to write (replaced atomically; its folder must exist)
    validation_fraction : share of samples held out for validation (at least one when there are 2+)
    seed : seeds the split (and the training run, via ``config``)
    config : overrides of :func:`default_config` (``epochs``, ``scale``...)
    progress : called with (done, total)

    Raises
    ------
    LabelAssistError
        When the project has fewer than 2 readable labelled samples, ``validation_fraction`` is
        not in [0, 1), ``out_zip`` is a folder, a sample's image or lies inside the project folder
        (``PROJECT/labels.sqlite`` would be replaced by the zip), or the zip cannot be written.
        Nothing is written then. A sample whose image cannot be read or whose stored label is
        damaged is left out and named in ``skipped``.
    """
    from labelassist.export import prepare_output

    out_zip = Path(out_zip)
    if not (isinstance(validation_fraction, (int, float)) and 0.0 <= validation_fraction < 1.0):
        raise LabelAssistError(f"the validation share must be at least 0 and below 1 (0.2 holds out a fifth), "
                               f"got {validation_fraction}")
    if out_zip.is_dir():
        raise LabelAssistError(f"{out_zip} is a folder; give the name of the zip to write, e.g. job.zip "
                               "(nothing was written)")
    pairs = list(project.store.latest_labels())
    if len(pairs) < 2:
        raise LabelAssistError(f"a training job needs at least 2 labelled images; the project has {len(pairs)}")
    # The same guard as an export: never over a sample's image, never into the project folder.
    out_zip = prepare_output(project, out_zip.absolute().parent, [out_zip.name], claim=False) / out_zip.name
    tmp = out_zip.with_name(f".{out_zip.name}.tmp")
    try:
        return _write_job(project, out_zip, tmp, pairs, validation_fraction, seed, config, progress)
    except OSError as exc:
        raise LabelAssistError(f"the training job {out_zip} could not be written: {exc.strerror or exc} "
                               "(nothing was written)") from exc


def _write_job(project, out_zip: Path, tmp: Path, pairs: list, validation_fraction: float, seed: int,
               config: dict[str, Any] | None, progress: Callable[[int, int], None] | None) -> JobSummary:
    """Write the zip to ``tmp``, then rename it to ``out_zip`` (see :func:`export_job`)."""
    from labelassist.export import DamagedLabel, decode_label

    items, skipped, shapes = [], [], []
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for done, (sample, label) in enumerate(pairs, start=1):
                # A damaged label is left out and named; it must not stop the job for the others.
                mask = decode_label(sample, label, project.store)
                if isinstance(mask, DamagedLabel):
                    skipped.append(f"{sample.name}: its latest label (version {label.id}) is damaged "
                                   f"({mask.reason})")
                    continue
                try:
                    image = project.read_image(sample)
                except ImageReadError as exc:
                    skipped.append(f"{sample.name}: {exc}")
                    continue
                if mask.shape != image.shape[:2]:
                    skipped.append(f"{sample.name}: its label is {mask.shape[1]}x{mask.shape[0]} but the image is "
                                   f"{image.shape[1]}x{image.shape[0]}")
                    continue
                key = f"{len(items):04d}"
                data, ext = _encode_image(image)
                zf.writestr(f"images/{key}{ext}", data)
                ok, mdata = cv2.imencode(".png", mask.astype(np.uint8) * 255)
                zf.writestr(f"masks/{key}.png", mdata.tobytes())
                items.append({"id": key, "image": f"images/{key}{ext}", "mask": f"masks/{key}.png",
                              "sample_id": sample.id, "sample": sample.name, "sequence": sample.sequence,
                              "frame": sample.frame, "label_id": label.id, "height": int(image.shape[0]),
                              "width": int(image.shape[1]), "dtype": str(image.dtype)})
                shapes.append(image.shape[:2])
                if progress:
                    progress(done, len(pairs))
            if len(items) < 2:
                raise LabelAssistError(f"a training job needs at least 2 readable labelled images; found {len(items)}"
                                       + (f" ({'; '.join(skipped[:3])})" if skipped else ""))
            ids = [it["id"] for it in items]
            order = np.random.default_rng(seed).permutation(len(ids))
            n_val = max(1, round(len(ids) * validation_fraction)) if validation_fraction > 0 else 0
            n_val = min(n_val, len(ids) - 1)
            validation = sorted(ids[i] for i in order[:n_val])
            train = sorted(ids[i] for i in order[n_val:])
            name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in (project.name or "project")) + "_unet"
            cfg = default_config(name, shapes)
            cfg["seed"] = seed
            cfg.update(config or {})
            pipeline = project.settings["preprocess"]["pipeline"]
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            job = {"format": JOB_FORMAT, "name": name, "project": project.name, "created": created,
                   "items": items, "config": cfg, "preprocess": pipeline,
                   "normalisation": {"kind": "percentile", "low": 0.5, "high": 99.5,
                                     "note": "applied by the network's card to raw pixels"},
                   "skipped": skipped}
            zf.writestr("job.json", json.dumps(job, indent=2) + "\n")
            zf.writestr("split.json", json.dumps({"train": train, "validation": validation, "seed": seed}, indent=2))
            zf.writestr("train.py", CORE.read_text(encoding="utf-8"))
            zf.writestr("requirements.txt", _REQUIREMENTS)
            zf.writestr("README.md", _README.format(name=name, n_train=len(train), n_val=len(validation),
                                                    project=project.name, created=created,
                                                    preprocess=", ".join(p.get("step", "?") for p in pipeline)
                                                    or "none"))
        os.replace(tmp, out_zip)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        project.store.log_event("job_export", path=str(out_zip), train=len(train), validation=len(validation))
    except Exception:  # noqa: BLE001 - the log is a courtesy
        pass
    return JobSummary(out_zip, train, validation, skipped, out_zip.stat().st_size)


def unpack_job(job_zip: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Extract a job zip (refusing paths that would leave ``folder``) and check its format."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    root = folder.resolve()
    with zipfile.ZipFile(job_zip) as zf:
        for info in zf.infolist():
            target = (root / info.filename).resolve()
            if root not in target.parents and target != root:
                raise LabelAssistError(f"the job archive holds an unsafe path: {info.filename}")
        zf.extractall(root)
    job = json.loads((root / "job.json").read_text(encoding="utf-8"))
    if job.get("format") != JOB_FORMAT:
        raise LabelAssistError(f"not a Label Assistant training job (format {job.get('format')!r})")
    return root


def run_job(job: str | os.PathLike, out_dir: str | os.PathLike, *args: str, python: str | None = None,
            timeout: float | None = None) -> Path:
    """Run a job's ``train.py`` (a zip is unpacked beside ``out_dir`` first); returns ``out_dir/model.onnx``.

    ``args`` go to the script (``"--epochs", "2", "--device", "cpu"``). Needs the
    training requirements (torch, onnx) in ``python`` (default: this interpreter).
    """
    job, out_dir = Path(job), Path(out_dir)
    if job.is_file():
        job = unpack_job(job, out_dir.parent / f"{out_dir.name}_job")
    cmd = [python or sys.executable, str(job / "train.py"), str(job), "--out", str(out_dir), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise LabelAssistError(f"the training job failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return out_dir / "model.onnx"
