"""Session.next(): warm (prepared in the background) against cold (prepared on demand).

Run: ``python bench/bench_session.py [--quick]``. Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from labelassist.importer import import_images
from labelassist.project import Project
from labelassist.session import Session

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def bench_next(dataset: str = "usiigaci_phase", rounds: int = 6) -> list[dict]:
    """Open ``rounds`` samples in selector order, saving an empty label after each."""
    tmp = Path(tempfile.mkdtemp())
    try:
        timings = {}
        for warm in (True, False):
            folder = tmp / f"p-{warm}"
            project = Project.create(folder)
            import_images(project, [DATASETS / dataset / "images"])
            with Session(project, background=warm, lookahead=2) as session:
                session.update_features()
                times = []
                for _ in range(rounds):
                    if warm:
                        session.wait_prepared()  # an annotator takes far longer than the worker
                    start = time.perf_counter()
                    assisted = session.next()
                    times.append((time.perf_counter() - start) * 1000)
                    session.save(assisted.sample.id, np.zeros(assisted.image.shape[:2], bool))
                timings[warm] = statistics.median(times[1:])  # the first opening is cold either way
            project.close()
    finally:
        shutil.rmtree(tmp)
    return [{"name": f"Session.next() warm cache ({dataset})", "median_ms": timings[True],
             "alternative": "cold (prepared on demand)", "alternative_ms": timings[False],
             "ratio": timings[True] / timings[False]}]


def run(quick: bool = False) -> list[dict]:
    return bench_next(rounds=4 if quick else 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(args.quick):
        print(f"{row['name']:<48} {row['median_ms']:8.2f} ms   {row['alternative']:<28} "
              f"{row['alternative_ms']:8.2f} ms  ratio {row['ratio']:.3f}")


if __name__ == "__main__":
    main()
