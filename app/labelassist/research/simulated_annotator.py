"""A simulated annotator walking a project's labelling session: ``labelassist simulate``.

:func:`simulate` walks the project's :class:`~labelassist.session.Session` as the kiosk does
(selector -> pre-label -> corrections -> inspection -> post-processing -> save), the
"corrections" being whatever turns the start mask into the ground truth. The session runs as on
the tablet: its background thread prepares the next samples and its instant learner
(:mod:`labelassist.session.learning`) learns every saved label on a thread of its own. The kiosk
puts the learner's refreshed pre-label on an untouched canvas when the learner finishes; the
simulated annotator, who draws nothing before the start mask is final, waits for the learner
(``session.learner.wait()``) and then takes that refresh (``learned_prelabel`` /
``use_prelabel``) before measuring its start mask. The time it waited is reported per label.

The kiosk's U-Net trainer (:mod:`labelassist.session.training`) runs too, on its schedule, in
a process of its own; the walk waits for each round before the next label, so every run sees a
round's model at the same label (the rounds are in ``retrains``). ``retrain_every`` > 0 replaces
it with the older research path: a small U-Net (:mod:`.experiment_net`) retrained in memory. ``from_scratch`` leaves out every shipped
and imported model: the honest learning curve of a project that starts with nothing. The
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

__all__ = ["SimulationResult", "simulate", "mean_effort"]


def mean_effort(samples: list[dict[str, Any]], first: int, last: int) -> float | None:
    """Mean correction effort of labels ``first`` to ``last`` (1-based, both included), or None."""
    eff = [s["effort"] for s in samples[first - 1:last] if math.isfinite(s["effort"])]
    return round(float(np.mean(eff)), 4) if eff else None


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
                # The figures: labels 2-10 (the first has nothing to learn from) and the first 30.
                "effort_labels_2_10": mean_effort(self.samples, 2, 10),
                "effort_first_30": mean_effort(self.samples, 1, 30),
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


def _start_from_scratch(project) -> None:
    """No shipped and no imported model in (a working copy of) ``project``; the learner on."""
    settings = project.settings
    settings["prelabel"]["shipped_models"] = False
    settings["prelabel"]["learn"] = True
    project.save_settings(settings, actor="simulated annotator")
    folder = Path(project.folder) / "models"
    # the model history (every model, the switch) and a legacy prelabel.onnx with its card and
    # the .previous files of older installs
    for path in [folder / "current.json", folder / "history.json", *folder.glob("prelabel*")]:
        path.unlink(missing_ok=True)
    shutil.rmtree(folder / "history", ignore_errors=True)


def _learned_start(session, sample_id: int):
    """The open sample as the kiosk shows it once the learner has finished: its learned pre-label
    refreshed on the untouched canvas when the learner has a newer model (see the module's notes)."""
    session.learner.wait()
    if session.background.running:
        # One worker thread runs its jobs in order: a no-op queued now ends after a re-measurement
        # of the pre-labels that opening this sample started (the choice is then settled).
        session.background.submit(lambda: None).result(timeout=600)
    prelabel = session.learned_prelabel(sample_id)
    if prelabel is not None:
        session.use_prelabel(sample_id, prelabel)
    return session.current


def simulate(project: str | Path, ground_truth: str | Path, retrain_every: int | None = None, epochs: int = 12,
             limit: int | None = None, scale: float = 0.25, in_place: bool = False,
             work_dir: str | Path | None = None, net: NetConfig | None = None, seed: int = 0,
             progress: Progress | None = None, from_scratch: bool = False) -> SimulationResult:
    """A simulated annotator walking the labelling session of ``project`` (see the module's notes).

    Parameters
    ----------
    project : path of a project folder
        Its images and settings are used. With ``in_place=False`` (default) the walk runs on a
        fresh copy (same images, same settings) in ``work_dir`` or a temporary folder, so the
        project itself is not changed; ``in_place=True`` saves the labels into it.
    ground_truth : folder of masks, matched to the samples by file name (stem).
    retrain_every : int or None
        None or 0 (default): the kiosk's own trainer trains U-Nets on its schedule (after 5, 10,
        20, 40 ... labels; :mod:`labelassist.session.training`) and the walk waits for each round
        (``retrains``). A number: instead, retrain this module's small U-Net on all labels so far
        in memory after every ``retrain_every`` labels and install it (the older research path).
    epochs, scale, net
        Training schedule and network (see :class:`NetConfig`).
    limit : int, optional
        Stop after this many samples (default: all).
    from_scratch : bool
        No shipped and no imported model: the working copy gets ``prelabel.shipped_models =
        false``, ``prelabel.learn = true`` and no ``onnx`` model (refused with ``in_place``).

    Returns
    -------
    SimulationResult
        Per label (``samples``): the pre-label used, its DSC and the correction effort, and
        ``wait_s``, the wall time from the previous save returning to this start mask (the
        next sample opened, the learner finished, its pre-label refreshed).
    """
    from labelassist import images as images_mod
    from labelassist.project import Project
    from labelassist.session import Session
    from labelassist.workflow.metrics import correction_effort, dice

    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    if retrain_every is None:
        retrain_every = 0  # the kiosk's own trainer trains (session.trainer), on its schedule
    if retrain_every < 0:
        raise LabelAssistError(f"retrain every {retrain_every} labels? Give 0 (never) or more")
    if from_scratch and in_place:
        raise LabelAssistError("--from-scratch changes the project's settings and removes its model: "
                               "it runs on a copy only (leave out --in-place)")
    if retrain_every:
        from labelassist.training import core  # torch: only for the U-Net retraining
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
    if from_scratch:
        _start_from_scratch(proj)
    result = SimulationResult(settings={
        "project": str(project_dir), "ground_truth": str(truth_dir), "retrain_every": int(retrain_every),
        "limit": limit, "in_place": in_place, "from_scratch": from_scratch,
        "network": asdict(cfg) if retrain_every else None, "device": device_for(cfg) if retrain_every else None,
        "selector": proj.settings["selector"]["weights"], "prelabel": proj.settings["prelabel"]["method"],
        "shipped_models": bool(proj.settings["prelabel"]["shipped_models"]),
        "learn": bool(proj.settings["prelabel"]["learn"])})
    model_dir = Path(tempfile.mkdtemp(prefix="labelassist-model-"))
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # sample id -> network input, mask
    try:
        # As the kiosk runs it: samples prepared ahead on the background thread, the learner on its own.
        # The kiosk's U-Net trainer on its schedule (5, 10, 20 ... labels), unless the in-memory
        # retraining of this module replaces it (retrain_every).
        session = Session(proj, author="simulated annotator", background=True, own=True,
                          train=None if not retrain_every else False)
        try:
            total = len(proj.store.samples())
            target = total if limit is None else min(int(limit), total)
            saved_at = time.perf_counter()
            while len(result.samples) < target:
                assisted = session.next()
                if assisted is None:
                    break
                assisted = _learned_start(session, assisted.sample.id)
                wait_s = time.perf_counter() - saved_at
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
                if session.trainer.running:
                    # The tablet trains in the background while the next samples are labelled; the
                    # walk waits for the round, so every run sees its model at the same label (said).
                    waited = time.perf_counter()
                    outcome = session.trainer.wait() or {}
                    result.retrains.append({
                        "after_labels": outcome.get("labelled"), "status": outcome.get("status"),
                        "reason": outcome.get("reason"), "trained_on": outcome.get("trained_on"),
                        "candidate_dsc": outcome.get("candidate_dsc"), "incumbent_dsc": outcome.get("incumbent_dsc"),
                        "incumbent": outcome.get("incumbent"), "recipe": outcome.get("recipe"),
                        "steps": outcome.get("steps"), "seconds": round(time.perf_counter() - waited, 1)})
                    say(f"U-Net round after {outcome.get('labelled')} labels: {outcome.get('status')} "
                        f"({outcome.get('reason')}), waited {time.perf_counter() - waited:.0f} s")
                saved_at = time.perf_counter()
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
                    "learned_from": None if session.learner.model is None else session.learner.model.labels,
                    "wait_s": round(wait_s, 2),
                }
                result.samples.append(entry)
                if retrain_every:
                    cache[sample.id] = (
                        core.resize_for_model(core.percentile_normalise(assisted.image), cfg.scale), truth)
                say(f"{entry['index']}/{target} {sample.name}: {entry['prelabel']} DSC {entry['dsc']:.3f} "
                    f"effort {entry['effort']:.3f} ({wait_s:.1f} s)")
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
                    saved_at = time.perf_counter()
        finally:
            session.close()
    finally:
        if not in_place:  # the copy's training rounds go with the copy
            from labelassist.training.request import round_folder

            shutil.rmtree(round_folder(Path(proj.folder), 0).parent, ignore_errors=True)
        proj.close()
        shutil.rmtree(model_dir, ignore_errors=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    result.seconds = time.perf_counter() - t0
    return result

