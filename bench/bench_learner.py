"""Instant-learner figures (issue 14 item 2): the pixel classifier against Otsu, and its times.

Run: ``python bench/bench_learner.py [--quick] [--jobs N]``. Prints plain tables; asserts nothing.

For each data set (scratch_assay, isbi2012_membrane, usiigaci_phase), with fixed seeds:

* **labels**: train :mod:`labelassist.learning.pixel_classifier` on the first k
  labelled images (k = 1, 2, 5; 10 000 balanced pixels each, at most 10 000 in
  a training) and measure the mean DSC of the learned pre-label (probability
  > 0.5) on the evaluation images (files 6-15, or as many as there are after
  the first 5), against the registry's ``otsu`` pre-label on the same images;
* **scribbles**: on the first evaluation image, simulate strokes from its true
  mask (pieces of the skeleton of the eroded object and of the eroded
  background, 3 pixels wide) and measure the proposal's DSC on that image;
* **times** (``time.perf_counter``): features of one image, training, the
  forest's prediction of one image given its features; "save->next" is what
  the session would spend after a save when the next image's features are
  already computed (train + forest), "scribble->proposal" is features + train
  + forest on the scribbled image.

A last table times training against the number of training pixels, and the
forest on the largest image, for one and two threads.

``--session`` measures the issue's two timing figures through a real
:class:`~labelassist.session.Session` instead (``--session`` alone runs only these):

* **save -> learned pre-label on the next image**, per data set: a project of
  the set's first 12 images with no shipped and no imported model
  (``prelabel.shipped_models = false``, as ``simulate --from-scratch``), a
  session with its background threads as in the kiosk; the user labels a
  sample (its true mask), everything settles (as while a person draws), then
  ``save()``. The figure is the time from ``save()`` returning to the
  learner's listener hearing of the new model, which runs after the look-ahead
  remade the next prepared sample's pre-label with it
  (``Lookahead.refresh_learned``); median and max over labels 3-8. The
  alternative in the same run: the same learning on the caller's thread
  (``Session(background=False)``: ``save()`` then ``learner.wait()``, which
  runs the learning there): how long the caller is blocked.
* **scribbles -> proposal** on usiigaci_phase (1022 x 1024, the largest set):
  ``Session.teach`` with strokes simulated from the true mask, the image's
  features computed ahead (``prepare_teach``, when the kiosk's teach tool is
  picked), and the alternative: cold, features computed at the first strokes.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion
from skimage.morphology import disk, skeletonize

from labelassist.images import read_image, read_mask
from labelassist.workflow import REGISTRY
from labelassist.learning import pixel_classifier as pc
from labelassist.workflow.metrics import dice

DATASETS = Path(os.environ.get("LABELASSIST_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
SETS = ("scratch_assay", "isbi2012_membrane", "usiigaci_phase")
SEED = 20261129


def _files(name: str) -> tuple[list[Path], list[Path]]:
    images = sorted((DATASETS / name / "images").iterdir())
    masks = sorted((DATASETS / name / "masks").iterdir())
    assert len(images) == len(masks) > 0, name
    return images, masks


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def simulate_strokes(mask: np.ndarray, rng: np.random.Generator, strokes: int = 3, length: int = 50,
                     width: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A few pen strokes of object and of background, drawn from a true mask.

    Each stroke is the part of the skeleton of the eroded class (object, then
    background) within ``length / 2`` pixels of a random skeleton pixel,
    widened to ``width`` pixels: about ``strokes * length * width`` pixels a
    class, well inside it.
    """
    out = []
    for region in (mask, ~mask):
        eroded = binary_erosion(region, structure=disk(4))
        if not eroded.any():
            eroded = region
        skeleton = skeletonize(eroded)
        ys, xs = np.nonzero(skeleton)
        painted = np.zeros(mask.shape, bool)
        yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
        for i in rng.choice(ys.size, size=min(strokes, ys.size), replace=False):
            near = (yy - ys[i]) ** 2 + (xx - xs[i]) ** 2 <= (length // 2) ** 2
            painted |= skeleton & near
        out.append(binary_dilation(painted, structure=disk(width // 2)) & region)
    return out[0], out[1]


def bench_set(name: str, ks: tuple[int, ...], n_eval: int, jobs: int) -> tuple[list[dict], dict]:
    """Rows of the labels table for one data set, and its scribble row."""
    images, masks = _files(name)
    otsu = REGISTRY.get("prelabel", "otsu")
    first_eval = 5
    eval_idx = list(range(first_eval, min(len(images), first_eval + n_eval)))
    shape = read_image(images[0]).shape
    # Training rows of the first max(k) labelled images, as the session would keep them after each save.
    train_rows, train_labels, feature_s = [], [], []
    for i in range(max(ks)):
        stack, t = _timed(pc.features, read_image(images[i]))
        feature_s.append(t)
        r, c, y = pc.sample_training_pixels(read_mask(masks[i]), pc.DEFAULT_PIXELS_PER_IMAGE,
                                            np.random.default_rng(SEED + i))
        train_rows.append(stack[r, c])
        train_labels.append(y)
        del stack
    evals = []
    for i in eval_idx:
        image, truth = read_image(images[i]), read_mask(masks[i])
        stack, t = _timed(pc.features, image)
        feature_s.append(t)
        evals.append((stack, truth, dice(otsu(image).mask, truth)))
    otsu_dsc = float(np.mean([e[2] for e in evals]))
    rows = []
    for k in ks:
        model, train_s = _timed(pc.train, train_rows[:k], train_labels[:k], n_jobs=jobs, seed=SEED)
        dscs, forest_s = [], []
        for stack, truth, _ in evals:
            prob, t = _timed(pc.predict, model, None, stack=stack)
            forest_s.append(t)
            dscs.append(dice(prob > 0.5, truth))
        rows.append({"set": name, "size": f"{shape[1]}x{shape[0]}", "k": k, "n_eval": len(evals),
                     "pixels": min(sum(len(y) for y in train_labels[:k]), pc.DEFAULT_MAX_TRAINING_PIXELS),
                     "dsc": float(np.mean(dscs)), "otsu": otsu_dsc, "train_s": train_s,
                     "features_s": float(np.median(feature_s)), "forest_s": float(np.median(forest_s)),
                     "save_next_s": train_s + float(np.median(forest_s))})
    # Scribbles on the first evaluation image.
    i = eval_idx[0]
    image, truth = read_image(images[i]), read_mask(masks[i])
    obj, bg = simulate_strokes(truth, np.random.default_rng(SEED))
    stack, feat_s = _timed(pc.features, image)
    r, c, y = pc.sample_training_pixels((obj, bg), pc.DEFAULT_PIXELS_PER_IMAGE, np.random.default_rng(SEED))
    model, train_s = _timed(pc.train, [stack[r, c]], [y], n_jobs=jobs, seed=SEED)
    prob, forest_s = _timed(pc.predict, model, None, stack=stack)
    scribble = {"set": name, "image": images[i].name, "object_px": int(obj.sum()), "background_px": int(bg.sum()),
                "dsc": dice(prob > 0.5, truth), "otsu": dice(otsu(image).mask, truth),
                "features_s": feat_s, "train_s": train_s, "forest_s": forest_s,
                "total_s": feat_s + train_s + forest_s}
    return rows, scribble


def bench_sizes(pixels: tuple[int, ...], jobs: tuple[int, ...]) -> list[dict]:
    """Training time against training pixels, and the forest on the largest image, for 1 and 2 threads."""
    images, masks = _files("usiigaci_phase")
    stacks, labels = [], []
    for i in range(3):
        stack = pc.features(read_image(images[i]))
        r, c, y = pc.sample_training_pixels(read_mask(masks[i]), max(pixels), np.random.default_rng(SEED + i))
        stacks.append(stack[r, c])
        labels.append(y)
    big = pc.features(read_image(images[5]))
    x, y = np.concatenate(stacks), np.concatenate(labels)
    out = []
    for n in pixels:
        for j in jobs:
            model, train_s = _timed(pc.train, [x], [y], max_pixels=n, n_jobs=j, seed=SEED)
            _, forest_s = _timed(pc.predict, model, None, stack=big)
            out.append({"pixels": n, "jobs": j, "train_s": train_s, "forest_s": forest_s,
                        "size": f"{big.shape[1]}x{big.shape[0]}"})
    return out


def _settle(session) -> None:
    """Wait for the learner and the background thread, as the seconds a person spends drawing do."""
    session.learner.wait()
    session.wait_prepared()
    if session.background.running:
        session.background.submit(lambda: None).result(timeout=600)  # one thread: jobs end in order


def _bench_project(folder: Path, name: str, count: int):
    from labelassist.importer import import_images
    from labelassist.project import Project

    images, masks = _files(name)
    project = Project.create(folder)
    import_images(project, images[:count])
    settings = project.settings
    settings["prelabel"]["shipped_models"] = False  # from scratch: the learner against otsu and previous
    settings["prelabel"]["learn"] = True
    project.save_settings(settings)
    truth = {p.stem: p for p in masks}
    return project, truth


def bench_save_to_learned(name: str, labels: int, folder: Path) -> dict:
    """Save -> the learner's new model and the next sample's pre-label remade with it (kiosk threads),
    and the alternative: learning at the save on the caller's thread."""
    import threading

    from labelassist.session import Session

    out = {"set": name, "size": None, "async_s": [], "refreshed": [], "choice": None, "sync_save_s": []}
    for threaded in (True, False):
        project, truth = _bench_project(folder / f"{name}-{'threads' if threaded else 'sync'}", name, 12)
        heard = threading.Event()
        session = Session(project, author="bench", background=threaded, own=True)
        session.learner.listeners.append(lambda model: heard.set())  # after the look-ahead's refresh
        try:
            opened = None
            for k in range(1, labels + 1):
                assisted = opened or session.next()
                _settle(session)
                out["size"] = f"{assisted.image.shape[1]}x{assisted.image.shape[0]}"
                mask = read_mask(truth[Path(assisted.sample.name).stem])
                heard.clear()
                start = time.perf_counter()
                session.save(assisted.sample.id, mask, seconds=1.0)
                saved = time.perf_counter()
                if not threaded:
                    session.learner.wait()  # without a thread the learning runs here, on the caller's
                    if k >= 3:
                        out["sync_save_s"].append(time.perf_counter() - start)
                    continue
                heard.wait(timeout=300)
                learned = time.perf_counter()
                if k >= 3:
                    out["async_s"].append(learned - saved)
                    choice = session.assistance.current_choice()
                    out["choice"] = None if choice is None else choice.method
                    opened = session.next()  # the refreshed sample opens next
                    out["refreshed"].append(opened.prelabel is not None and opened.prelabel.method == "learned"
                                            and f"{k} of your labels" in (opened.prelabel.note or ""))
        finally:
            session.close()
            project.close()
    return out


def bench_teach(name: str, folder: Path, repeats: int = 3) -> dict:
    """Scribbles -> proposal through Session.teach: features prepared ahead, and cold (two images a repeat)."""
    from labelassist.session import Session

    project, truth = _bench_project(folder / f"{name}-teach", name, 2 * repeats)
    rng = np.random.default_rng(SEED)
    out = {"set": name, "prepared_s": [], "cold_s": [], "dsc": [], "object_px": [], "background_px": []}
    with Session(project, author="bench", background=True, own=True) as session:
        ids = [s.id for s in project.store.samples()]
        for r in range(repeats):
            for prepared, sample_id in ((False, ids[2 * r]), (True, ids[2 * r + 1])):
                assisted = session.open(sample_id)
                out["size"] = f"{assisted.image.shape[1]}x{assisted.image.shape[0]}"
                mask = read_mask(truth[Path(assisted.sample.name).stem])
                obj, bg = simulate_strokes(mask, rng)
                if prepared:
                    session.prepare_teach(sample_id)  # the teach tool was picked: features ahead
                _settle(session)
                proposal, seconds = _timed(session.teach, sample_id, obj, bg)
                out["prepared_s" if prepared else "cold_s"].append(seconds)
                out["dsc"].append(dice(proposal.mask, mask))
                out["object_px"].append(int(obj.sum()))
                out["background_px"].append(int(bg.sum()))
    project.close()
    return out


def session_tables(quick: bool) -> None:
    """The issue's two timing figures through a real Session (see the module's notes)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-learner-") as tmp:
        folder = Path(tmp)
        print("Save -> learned pre-label on the next image (real Session, kiosk threads; labels 3-"
              f"{5 if quick else 8}); alternative: learning at the save on the caller's thread")
        print(f"{'set':<18} {'size':>9} {'choice':>8} {'median s':>8} {'max s':>6} {'refreshed':>9} "
              f"{'sync save+learn s':>17}")
        for name in SETS:
            r = bench_save_to_learned(name, 5 if quick else 8, folder)
            sync = float(np.median(r["sync_save_s"])) if r["sync_save_s"] else float("nan")
            print(f"{name:<18} {r['size']:>9} {str(r['choice']):>8} {np.median(r['async_s']):>8.2f} "
                  f"{max(r['async_s']):>6.2f} {sum(r['refreshed']):>4}/{len(r['refreshed']):<4} {sync:>17.2f}")
        t = bench_teach("usiigaci_phase", folder, 2 if quick else 3)
        print(f"\nScribbles -> proposal, Session.teach on usiigaci_phase ({t['size']}, median "
              f"{np.median(t['object_px']):.0f} object and {np.median(t['background_px']):.0f} background "
              "stroke pixels)")
        print(f"{'features prepared: median s':>28} {'cold (alternative): median s':>29} {'DSC':>6}")
        print(f"{np.median(t['prepared_s']):>28.2f} {np.median(t['cold_s']):>29.2f} {np.mean(t['dsc']):>6.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="k = 1 only, 3 evaluation images, a short size table")
    parser.add_argument("--jobs", type=int, default=1, help="threads for training and prediction (default 1)")
    parser.add_argument("--session", action="store_true",
                        help="only the save -> learned pre-label and scribbles -> proposal figures, "
                             "through a real Session")
    args = parser.parse_args(argv)
    if args.session:
        start = time.perf_counter()
        session_tables(args.quick)
        print(f"\nwall {time.perf_counter() - start:.0f} s")
        return 0
    ks, n_eval = ((1,), 3) if args.quick else ((1, 2, 5), 10)
    start = time.perf_counter()
    rows, scribbles = [], []
    for name in SETS:
        r, s = bench_set(name, ks, n_eval, args.jobs)
        rows += r
        scribbles.append(s)
    print(f"Learned pre-label from k labels (threads: {args.jobs}); DSC = mean over the evaluation images")
    print(f"{'set':<18} {'size':>9} {'k':>2} {'eval':>4} {'pixels':>6} {'DSC':>6} {'Otsu':>6} "
          f"{'features s':>10} {'train s':>7} {'forest s':>8} {'save->next s':>12}")
    for r in rows:
        print(f"{r['set']:<18} {r['size']:>9} {r['k']:>2} {r['n_eval']:>4} {r['pixels']:>6} {r['dsc']:>6.3f} "
              f"{r['otsu']:>6.3f} {r['features_s']:>10.2f} {r['train_s']:>7.2f} {r['forest_s']:>8.2f} "
              f"{r['save_next_s']:>12.2f}")
    print("\nScribbles -> proposal on one image (strokes simulated from its true mask)")
    print(f"{'set':<18} {'image':>8} {'obj px':>6} {'bg px':>6} {'DSC':>6} {'Otsu':>6} "
          f"{'features s':>10} {'train s':>7} {'forest s':>8} {'total s':>7}")
    for s in scribbles:
        print(f"{s['set']:<18} {s['image']:>8} {s['object_px']:>6} {s['background_px']:>6} {s['dsc']:>6.3f} "
              f"{s['otsu']:>6.3f} {s['features_s']:>10.2f} {s['train_s']:>7.2f} {s['forest_s']:>8.2f} "
              f"{s['total_s']:>7.2f}")
    sizes = bench_sizes((5_000, 20_000) if args.quick else (5_000, 10_000, 20_000, 40_000),
                        (1,) if args.quick else (1, 2))
    print("\nTraining time against training pixels; forest prediction of one usiigaci image given its features")
    print(f"{'pixels':>6} {'threads':>7} {'train s':>7} {'forest s':>8} {'image':>9}")
    for s in sizes:
        print(f"{s['pixels']:>6} {s['jobs']:>7} {s['train_s']:>7.2f} {s['forest_s']:>8.2f} {s['size']:>9}")
    print(f"\nwall {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
