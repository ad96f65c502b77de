"""The benchmark suite runs in its quick mode: figures printed and stored, nothing asserted about time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_quick_benchmarks_produce_every_figure_with_its_alternative(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--skip-canvas", "--json"],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(done.stdout)
    print("\n".join(f"{r['name']}: {r['median_ms']:.2f} ms" for r in results["figures"]))
    assert results["failed"] == {}
    assert {"cpu", "cores", "python", "numpy", "opencv", "onnxruntime"} <= set(results["machine"])
    modules = {r["module"] for r in results["figures"]}
    assert modules == {"bench_store", "bench_session", "bench_workflow", "bench_prelabel", "bench_selector",
                       "bench_models", "bench_coco"}
    for row in results["figures"]:
        assert row["median_ms"] > 0, row
        if row.get("ratio") is not None:  # ours / alternative, both measured in the same run
            assert abs(row["ratio"] - row["median_ms"] / row["alternative_ms"]) < 1e-6 * max(1.0, row["ratio"]), row
    assert json.loads((BENCH / "results" / "latest.json").read_text())["figures"] == results["figures"]
