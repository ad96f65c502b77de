"""Store figures: cost of one durable label save, and import speed on real data.

Run: ``python bench/bench_store.py [--quick]``. Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path


from timing import median_ms  # bench/timing.py (bench/ is on sys.path when run)
from labelassist.images import read_mask
from labelassist.importer import import_images
from labelassist.project import Project
from labelassist.store import Store

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _median_ms(fn, repeat: int) -> float:
    return median_ms(fn, repeat, warmup=0)  # every save is a real one: no untimed warm-up save


def bench_save_label(repeat: int = 50) -> list[dict]:
    """One label save (512x512 real mask) with synchronous=FULL against NORMAL, same WAL database."""
    mask = read_mask(DATASETS / "isbi2012_membrane" / "masks" / "000.png")
    rows = {}
    for mode in ("FULL", "NORMAL"):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "labels.sqlite", create=True)
            store.conn.execute(f"PRAGMA synchronous = {mode}")
            sid = store.add_sample(path="x.png", page=0, name="x.png", hash="0" * 64, file_size=1, height=512,
                                   width=512, dtype="uint8", channels=1, sequence="/", frame=0)
            rows[mode] = _median_ms(lambda: store.save_label(sid, mask, source="manual"), repeat)
            store.close()
    return [{"name": "save_label 512² (synchronous=FULL)", "median_ms": rows["FULL"],
             "alternative": "synchronous=NORMAL", "alternative_ms": rows["NORMAL"],
             "ratio": rows["FULL"] / rows["NORMAL"]}]


def bench_scaling_label_versions(counts=(10_000, 100_000)) -> list[dict]:
    """Appending label versions in one transaction, and reading the latest per sample, at scale."""
    mask = read_mask(DATASETS / "scratch_assay" / "masks" / "000.png")
    out = []
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "labels.sqlite", create=True)
            ids = store.add_samples([dict(path=f"{k}.png", page=0, name=f"{k}.png", hash=f"{k:064d}",
                                          file_size=1, height=mask.shape[0], width=mask.shape[1],
                                          dtype="uint8", channels=1, sequence="/", frame=k)
                                     for k in range(n // 10)])
            t = time.perf_counter()
            for k in range(n):
                store.save_label(ids[k % len(ids)], mask, source="manual")
            per_save = (time.perf_counter() - t) * 1000 / n
            t = time.perf_counter()
            latest = sum(1 for _ in store.latest_labels())
            scan_ms = (time.perf_counter() - t) * 1000
            store.close()
        out.append({"name": f"save_label with {n} versions in the store (per save)", "median_ms": per_save,
                    "alternative": f"latest_labels() over {latest} samples", "alternative_ms": scan_ms,
                    "ratio": None})
    return out


def bench_import(repeat: int = 3) -> list[dict]:
    """Import of the 12 usiigaci_phase 16-bit TIFFs, with and without their masks."""
    src = DATASETS / "usiigaci_phase"
    results = {}
    for masks in (None, src / "masks"):
        times = []
        for _ in range(repeat):
            tmp = Path(tempfile.mkdtemp())
            project = Project.create(tmp / "p")
            t = time.perf_counter()
            import_images(project, [src / "images"], masks=masks)
            times.append((time.perf_counter() - t) * 1000)
            project.close()
            shutil.rmtree(tmp)
        results[masks is not None] = statistics.median(times)
    return [{"name": "import 12 usiigaci_phase TIFFs + masks", "median_ms": results[True],
             "alternative": "images only", "alternative_ms": results[False],
             "ratio": results[True] / results[False]}]


def run(quick: bool = False) -> list[dict]:
    figures = bench_save_label(repeat=10 if quick else 50)
    figures += bench_import(repeat=1 if quick else 3)
    figures += bench_scaling_label_versions((1_000,) if quick else (10_000, 100_000))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(args.quick):
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] else ""
        print(f"{row['name']:<58} {row['median_ms']:9.3f} ms   {row['alternative']:<36} "
              f"{row['alternative_ms']:9.3f} ms {ratio}")


if __name__ == "__main__":
    main()
