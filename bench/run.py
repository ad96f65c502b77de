"""Run every benchmark and write ``bench/results/latest.json``.

Usage: ``python bench/run.py [--quick] [--json]`` (also ``labelassist bench`` from a source checkout).
Each figure is a median of repeated runs with, where there is one, the obvious alternative
measured in the same run (``alternative_ms``, ``ratio`` = ours / alternative). Nothing is asserted:
figures are read, not tested. The GUI figures (bench_canvas, bench_ui_open) need a GL context: each
runs in a subprocess under ``xvfb-run`` when there is no display.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
MODULES = ["bench_store", "bench_session", "bench_workflow", "bench_prelabel", "bench_selector", "bench_models",
           "bench_coco"]
# Need a window: each runs as its own process (left out with --skip-canvas).
GUI_MODULES = ["bench_canvas", "bench_ui_open"]
QUICK_FLAG = {"bench_ui_open"}  # GUI modules that take --quick


def machine() -> dict:
    """What the figures were measured on."""
    import cv2
    import numpy as np

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = None
    info = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory, 1) if memory else None,
            "os": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "opencv": cv2.__version__, "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def run_gui(module: str, quick: bool) -> dict:
    """A benchmark that needs a window (bench_canvas, bench_ui_open): run it as its own process
    (under ``xvfb-run`` when there is no display) and keep its printout. A ``FIGURES [...]`` line
    in it carries figures in the same form as the other modules' (read by :func:`main`)."""
    command = [sys.executable, str(BENCH / f"{module}.py")]
    if quick and module in QUICK_FLAG:
        command.append("--quick")
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
        command = ["xvfb-run", "-a", "-s", "-screen 0 1920x1200x24", *command]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    figures = []
    for line in done.stdout.splitlines():
        if line.startswith("FIGURES "):
            figures = json.loads(line[len("FIGURES "):])
    output = "\n".join(line for line in done.stdout.splitlines() if not line.startswith("FIGURES "))
    return {"module": module, "returncode": done.returncode, "seconds": round(time.perf_counter() - start, 1),
            "output": output[-20000:], "errors": done.stderr[-4000:] if done.returncode else "",
            "figures": figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes (CI)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--skip-canvas", action="store_true",
                        help="leave out the GUI figures (bench_canvas, bench_ui_open)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(BENCH))
    results = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
               "machine": machine(), "figures": [], "failed": {}, "printed": []}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
            for row in module.run(args.quick):
                results["figures"].append({"module": name, **row})
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            results["failed"][name] = f"{type(exc).__name__}: {exc}"
        if not args.json:
            print(f"done: {name}", file=sys.stderr)
    if not args.skip_canvas:
        for module in GUI_MODULES:
            block = run_gui(module, args.quick)
            for row in block.pop("figures"):
                results["figures"].append({"module": module, **row})
            if block["returncode"]:
                results["failed"][module] = f"exit code {block['returncode']}: {block['errors'][-300:]}"
            results["printed"].append(block)
            if not args.json:
                print(f"done: {module}", file=sys.stderr)
    out = BENCH / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'figure':<62} {'median ms':>10}  {'alternative':<40} {'alt ms':>10} {'ratio':>7}")
        for r in results["figures"]:
            alt = r.get("alternative") or ""
            alt_ms = f"{r['alternative_ms']:10.2f}" if r.get("alternative_ms") is not None else " " * 10
            ratio = f"{r['ratio']:7.2f}" if r.get("ratio") is not None else ""
            print(f"{r['name'][:62]:<62} {r['median_ms']:10.2f}  {alt[:40]:<40} {alt_ms} {ratio}")
        for block in results["printed"]:
            print(f"\n{block['module']} ({block['seconds']} s):\n{block['output']}")
        for name, reason in results["failed"].items():
            print(f"FAILED {name}: {reason}")
        print(f"\nwritten to {out}")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
