"""A simulated annotator walking a project's labelling session: ``labelassist simulate``.

:func:`simulate` walks the project's :class:`~labelassist.session.Session` as the UI does
(selector -> pre-label -> corrections -> inspection -> post-processing -> save), the
"corrections" being whatever turns the start mask into the ground truth, and retrains the
project's pre-label model (:mod:`.experiment_net`) every ``retrain_every`` labels. The
correction effort per sample shows how the assistance improves as labels accumulate;
:func:`labelassist.research.plots.plot_simulation` draws it.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from labelassist.errors import LabelAssistError
from labelassist.research.experiment_net import NetConfig, Progress, device_for, train_net

__all__ = ["SimulationResult", "simulate"]


@dataclass
class SimulationResult:
    """Outcome of :func:`simulate`; ``to_dict()`` is the JSON of the CLI."""

    settings: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    retrains: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def blocks(self, size: int | None = None) -> list[dict[str, Any]]:
        """Mean effort and DSC of the start mask per block of ``size`` labels (default: retrain_every)."""
        size = size or int(self.settings["retrain_every"]) or 10
        out = []
        for start in range(0, len(self.samples), size):
            part = self.samples[start:start + size]
            eff = [s["effort"] for s in part if math.isfinite(s["effort"])]
            out.append({"labels": f"{start + 1}-{start + len(part)}",
                        "effort_mean": round(float(np.mean(eff)), 4) if eff else None,
                        "dsc_mean": round(float(np.mean([s["dsc"] for s in part])), 4),
                        "methods": dict(sorted({m: sum(s["prelabel"] == m for s in part)
                                                for m in {s["prelabel"] for s in part}}.items()))})
        return out

    def to_dict(self) -> dict[str, Any]:
        eff = [s["effort"] for s in self.samples if math.isfinite(s["effort"])]
        return {"experiment": "simulate", "settings": self.settings, "samples": self.samples,
                "retrains": self.retrains, "blocks": self.blocks(),
                "effort_mean": round(float(np.mean(eff)), 4) if eff else None,
                "effort_total": round(float(np.sum(eff)), 4) if eff else None,
                "warnings": sum(bool(s["warning"]) for s in self.samples),
                "seconds": round(self.seconds, 1)}


def _truth_index(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            out.setdefault(p.stem, p)
            out.setdefault(p.name, p)
    return out


def _working_copy(project_dir: Path, into: Path):
    """A copy of the project in ``into``: same samples (sequences, frames, names), settings, labels and
    model; image files stay where they are (the copy's sample paths point at them absolutely)."""
    from labelassist.project import Project

    # The database is copied through SQLite's backup API, never as files: a plain copy of a
    # project that is open elsewhere is torn (database and -wal at different moments), and plain
    # file I/O on it would drop this process's SQLite locks (labelassist.store, "the POSIX lock rule").
    shutil.copytree(project_dir, into, ignore=shutil.ignore_patterns(
        ".lock", "backups", "cache", "labels.sqlite", "labels.sqlite-*", "labels.sqlite.*"))
    src = Project.open(project_dir)
    try:
        where = {s.id: src.resolve(s.path).as_posix() for s in src.store.samples()}
        src.store.copy_to(into / "labels.sqlite")
    finally:
        src.close()
    work = Project.open(into)
    work.store.set_sample_paths(where)
    return work


def simulate(project: str | Path, ground_truth: str | Path, retrain_every: int = 10, epochs: int = 12,
             limit: int | None = None, scale: float = 0.25, in_place: bool = False,
             work_dir: str | Path | None = None, net: NetConfig | None = None, seed: int = 0,
             progress: Progress | None = None) -> SimulationResult:
    """A simulated annotator walking the labelling session of ``project`` (see the module's notes).

    Parameters
    ----------
    project : path of a project folder
        Its images and settings are used. With ``in_place=False`` (default) the walk runs on a
        fresh copy (same images, same settings) in ``work_dir`` or a temporary folder, so the
        project itself is not changed; ``in_place=True`` saves the labels into it.
    ground_truth : folder of masks, matched to the samples by file name (stem).
    retrain_every : int
        Retrain the project's U-Net on all labels so far after every ``retrain_every`` saved
        labels, export it to ONNX with its card and install it as the project's model
        (0 = never).
    epochs, scale, net
        Training schedule and network (see :class:`NetConfig`).
    limit : int, optional
        Stop after this many samples (default: all).
    """
    from labelassist import images as images_mod
    from labelassist.project import Project
    from labelassist.session import Session
    from labelassist.training import core
    from labelassist.workflow.metrics import correction_effort, dice

    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    cfg = replace(net or NetConfig(), epochs=int(epochs), scale=float(scale))
    project_dir, truth_dir = Path(project), Path(ground_truth)
    if not truth_dir.is_dir():
        raise LabelAssistError(f"the ground-truth folder {truth_dir} does not exist")
    truth_files = _truth_index(truth_dir)
    tmp = None
    if in_place:
        proj = Project.open(project_dir)
    else:
        if work_dir is None:
            tmp = tempfile.mkdtemp(prefix="labelassist-simulate-")
            work_dir = Path(tmp) / "project"
        proj = _working_copy(project_dir, Path(work_dir))
    result = SimulationResult(settings={
        "project": str(project_dir), "ground_truth": str(truth_dir), "retrain_every": int(retrain_every),
        "limit": limit, "in_place": in_place, "network": asdict(cfg), "device": device_for(cfg),
        "selector": proj.settings["selector"]["weights"], "prelabel": proj.settings["prelabel"]["method"]})
    model_dir = Path(tempfile.mkdtemp(prefix="labelassist-model-"))
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # sample id -> network input, mask
    try:
        session = Session(proj, author="simulated annotator", background=False, own=True)
        try:
            total = len(proj.store.samples())
            target = total if limit is None else min(int(limit), total)
            while len(result.samples) < target:
                assisted = session.next()
                if assisted is None:
                    break
                sample = assisted.sample
                path = truth_files.get(Path(sample.name).stem) or truth_files.get(sample.name)
                if path is None:
                    raise LabelAssistError(f"no ground-truth mask for {sample.name} in {truth_dir}")
                truth = images_mod.read_mask(path)
                if truth.shape != (sample.height, sample.width):
                    raise LabelAssistError(f"the ground truth of {sample.name} is {truth.shape[1]}x{truth.shape[0]}, "
                                           f"the image {sample.width}x{sample.height}")
                start = assisted.start_mask
                method = assisted.prelabel.method if assisted.prelabel is not None else None
                effort = correction_effort(start, truth)
                # The corrections turn the start mask into the truth; then inspection and post-processing.
                submission = session.submit(sample.id, truth)
                accepted = []
                for s in submission.suggestions:  # accept a suggestion only when it does not move away from truth
                    if int(np.count_nonzero(s.mask ^ truth)) == 0:
                        accepted.append(s.step)
                changed = int(np.count_nonzero(start ^ truth))
                session.save(sample.id, truth, seconds=0.0, strokes=1 if changed else 0, source="simulated",
                             report=submission.report)
                report = submission.report
                entry = {
                    "index": len(result.samples) + 1, "name": sample.name, "sequence": sample.sequence,
                    "prelabel": method or "none", "dsc": round(dice(start, truth), 4),
                    "effort": round(effort, 4) if math.isfinite(effort) else effort,
                    "pixels_changed": changed, "inspection_score": None if report is None else round(report.score, 4),
                    "warning": bool(report is not None and report.warning),
                    "failed_checks": [] if report is None else [c.message for c in report.failed],
                    "suggestions": [{"step": s.step, "added": s.change.added, "removed": s.change.removed}
                                    for s in submission.suggestions],
                    "accepted_suggestions": accepted,
                    "model": None if session.model() is None else session.model().card.version,
                }
                result.samples.append(entry)
                cache[sample.id] = (
                    core.resize_for_model(core.percentile_normalise(assisted.image), cfg.scale), truth)
                say(f"{entry['index']}/{target} {sample.name}: {entry['prelabel']} DSC {entry['dsc']:.3f} "
                    f"effort {entry['effort']:.3f}")
                n = len(result.samples)
                if retrain_every and n % int(retrain_every) == 0 and n < target:
                    data = [(x, core.resize_mask(t, x.shape)) for x, t in cache.values()]
                    net_, info = train_net(data, cfg, seed)
                    version = f"1.0.{n}"
                    tc = core.TrainConfig(name="simulated-unet", version=version, scale=cfg.scale, base=cfg.base,
                                          depth=cfg.depth, patch=cfg.patch, batch=cfg.batch, epochs=cfg.epochs,
                                          patches_per_image=cfg.patches_per_image, lr=cfg.lr, seed=seed,
                                          threshold=cfg.threshold,
                                          description=f"retrained by the simulated annotator on {n} labels")
                    names = [(proj.store.sample(sid).name,) * 2 for sid in cache]
                    card = core.make_card(tc, net_, names, [], [], info)
                    onnx_path = core.export_onnx(net_, model_dir / f"model_{n}.onnx", multiple=2 ** cfg.depth)
                    core.write_card(card, model_dir / f"model_{n}.json")
                    # As the Admin screen does: install, and the next sample re-measures the pre-labels.
                    session.import_model(onnx_path, card)
                    result.retrains.append({"after_labels": n, "seconds": round(info["train_seconds"], 1),
                                            "final_loss": round(info["losses"][-1], 4), "version": version})
                    say(f"retrained on {n} labels in {info['train_seconds']:.0f} s")
        finally:
            session.close()
    finally:
        proj.close()
        shutil.rmtree(model_dir, ignore_errors=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    result.seconds = time.perf_counter() - t0
    return result

