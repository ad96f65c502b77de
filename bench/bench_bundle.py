"""Bundle figures: size, cold start to the first frame, start to the first pre-label shown.

Run (Linux, from the repository root)::

    python bench/bench_bundle.py                          # dist/labelassist, built before
    python bench/bench_bundle.py --build                  # build it first (timed)
    python bench/bench_bundle.py --untrimmed DIR          # + the size of an untrimmed bundle
    python bench/bench_bundle.py --without-trainer DIR    # + a bundle built with --without-trainer:
                                                          # sizes, and starts alternated with it
    sudo python bench/bench_bundle.py --drop-caches       # truly cold: empties the page cache
                                                          # before each run (whole machine!)

Every start runs ``labelassist --smoke`` (the real kiosk UI on a fresh demo project) and reads
its step lines:

* first frame: seconds from the process start (``/proc/self/stat``, so the bootloader and the
  unpacking of nothing - it is one-dir - are included) until the window drew its first frame.
  The smoke mode first creates the demo project (imports six images) and installs the shipped
  model into it; those times are printed separately and subtracted for "first frame, app only" - the figure for ``labelassist demo``
  on an existing demo project and for the kiosk at boot.
* label screen: the first sample open on the Label screen with its automatic pre-label - with
  the shipped model installed in the demo project the session picks the ONNX pre-label, so this
  is "start to the first pre-label shown".
* ONNX pre-label accepted: the smoke test's explicit ``Session.prelabel(..., "onnx")`` shown and
  accepted on the canvas.

With ``--without-trainer`` the two bundles start alternately (trainer, without, trainer, ...), so
that the machine's load falls on both alike; ``--first-frame-only`` skips the full smoke runs.

Under ``xvfb-run`` when there is no display. Prints medians (and min/max); asserts nothing.
Results also go to ``bench/results/bundle.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging"))
import bundle_tools  # noqa: E402

STEP = re.compile(r"smoke: \[\s*([\d.]+) s\] (\S.*?)\s{2,}\s*([\d.]+) ms\s+(.*)")
AGE = re.compile(r"([\d.]+) s after the process started")


def _display() -> list[str]:
    if os.environ.get("DISPLAY") or not shutil.which("xvfb-run"):
        return []
    return ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24"]


def _drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def run_smoke(cmd: list[str], stop_after: str | None, drop: bool) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("LABELASSIST_MODELS", None)
    if stop_after:
        env["LABELASSIST_SMOKE_STOP_AFTER"] = stop_after
    if drop:
        _drop_caches()
    proc = subprocess.run(_display() + cmd + ["--smoke"], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"smoke failed:\n{proc.stdout}\n{proc.stderr[-2000:]}")
    steps, age = {}, None
    for line in proc.stdout.splitlines():
        m = STEP.match(line)
        if m:
            steps[m.group(2).strip()] = float(m.group(1))
            a = AGE.search(m.group(4))
            if a:
                age = float(a.group(1))
            if m.group(2).strip() in ("demo project", "model"):  # set-up the kiosk at boot does not repeat
                steps["setup ms"] = steps.get("setup ms", 0.0) + float(m.group(3))
    if age is None or "first frame" not in steps:
        raise SystemExit("the smoke output has no first-frame line:\n" + proc.stdout)
    offset = age - steps["first frame"]  # process start -> smoke clock zero
    out = {"first_frame_s": age,
           "first_frame_app_only_s": age - steps["setup ms"] / 1000}
    if "label screen" in steps:
        out["label_screen_s"] = offset + steps["label screen"] - steps["setup ms"] / 1000
    if "pre-label" in steps:
        out["onnx_prelabel_shown_s"] = offset + steps["pre-label"] - steps["setup ms"] / 1000
    return out


def summarise(name: str, runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = sorted({k for r in runs for k in r})
    result = {}
    for key in keys:
        values = [r[key] for r in runs if key in r]
        result[key] = {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}
        print(f"  {name:<15} {key:<26} median {result[key]['median']:6.2f} s   "
              f"(min {result[key]['min']:.2f}, max {result[key]['max']:.2f}, n={len(values)})")
    return result


def bundle_size(bundle: Path) -> dict[str, int]:
    """Folder size and file count of a bundle, and the size of the newest zip beside it."""
    size = bundle_tools.folder_size(bundle)
    files = len([p for p in bundle_tools._files(bundle) if not p.is_dir()])
    out = {"trimmed_bytes": size, "files": files}
    print(f"bundle: {size / 1e6:.0f} MB in {files} files ({bundle})")
    zips = sorted(bundle.parent.glob("labelassist-*-linux-*.zip"), key=lambda p: p.stat().st_mtime)
    if zips:
        out["zip_bytes"] = zips[-1].stat().st_size
        print(f"zip:    {zips[-1].stat().st_size / 1e6:.0f} MB ({zips[-1].name})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(ROOT / "dist" / "labelassist"))
    parser.add_argument("--build", action="store_true", help="build with packaging/build.sh first (timed)")
    parser.add_argument("--untrimmed", help="an untrimmed bundle folder (build.sh --untrimmed) to compare sizes")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--drop-caches", action="store_true", help="empty the page cache before each start (root)")
    parser.add_argument("--no-source", action="store_true", help="skip the from-source comparison")
    parser.add_argument("--without-trainer", help="a bundle built with build.sh --without-trainer to compare")
    parser.add_argument("--first-frame-only", action="store_true", help="only the starts to the first frame")
    args = parser.parse_args()

    results: dict = {"machine": {"cpus": os.cpu_count()}}
    bundle = Path(args.bundle)
    if args.build:
        t = time.monotonic()
        subprocess.run(["bash", str(ROOT / "packaging" / "build.sh"), "--venv", sys.prefix], cwd=ROOT, check=True)
        results["build_s"] = time.monotonic() - t
        print(f"build: {results['build_s']:.0f} s")
    if not (bundle / "labelassist").is_file():
        raise SystemExit(f"no bundle in {bundle}: run packaging/build.sh (or pass --build)")

    results["size"] = bundle_size(bundle)
    size = results["size"]["trimmed_bytes"]
    without = Path(args.without_trainer) if args.without_trainer else None
    if without is not None:
        if not (without / "labelassist").is_file():
            raise SystemExit(f"no bundle in {without}")
        results["size_without_trainer"] = bundle_size(without)
    if args.untrimmed:
        untrimmed = bundle_tools.folder_size(Path(args.untrimmed))
        results["size"]["untrimmed_bytes"] = untrimmed
        print(f"untrimmed: {untrimmed / 1e6:.0f} MB -> trimmed {size / 1e6:.0f} MB "
              f"({100 * (1 - size / untrimmed):.0f} % smaller)")

    cold = args.drop_caches and _drop_caches()
    if args.drop_caches and not cold:
        print("cannot drop the page cache (not root?): the starts below are warm")
    print(f"starts ({'cold: page cache dropped before each' if cold else 'warm page cache'}), {args.runs} runs:")
    variants = [("bundle", [str(bundle / "labelassist")])]
    if without is not None:
        variants.append(("without trainer", [str(without / "labelassist")]))
    if not args.no_source:
        variants.append(("source", [sys.executable, "-m", "labelassist"]))
    runs: dict[str, list] = {name: [] for name, _ in variants}
    for _ in range(args.runs):  # alternated: the machine's load falls on every variant alike
        for name, cmd in variants:
            runs[name].append(run_smoke(cmd, "first frame", cold))
    if not args.first_frame_only:
        for _ in range(max(1, args.runs // 2)):
            for name, cmd in variants:
                runs[name].append(run_smoke(cmd, None, cold))
    for name, _ in variants:
        results[name.replace(" ", "_")] = summarise(name, runs[name])
    results["cold"] = cold
    out = ROOT / "bench" / "results" / "bundle.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
