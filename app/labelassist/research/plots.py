"""The PNG figures of the evaluations and experiments, drawn with OpenCV (no plotting library).

:func:`plot_evaluation` (pre-labels), :func:`plot_selector` (the selector comparison) and
:func:`plot_simulation` (the simulated annotator) each take a result or its ``to_dict()``
JSON and write one PNG.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import cv2
import numpy as np

from labelassist.errors import LabelAssistError

if TYPE_CHECKING:
    from labelassist.research.prelabel_eval import Evaluation
    from labelassist.research.selector_experiment import SelectorResult
    from labelassist.research.simulated_annotator import SimulationResult

__all__ = ["plot_evaluation", "plot_selector", "plot_simulation"]


def _canvas(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), 255, np.uint8)


def _write_png(img: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise LabelAssistError(f"{path} could not be encoded")
    path.write_bytes(buf.tobytes())
    return path


def _as_dict(result: Any) -> dict[str, Any]:
    """A result's JSON (``to_dict()``), or the JSON itself (a result read back from a file)."""
    return result if isinstance(result, dict) else result.to_dict()


def _dsc_axes(img: np.ndarray, left: int, top: int, plot_h: int, label: str) -> Callable[[float], int]:
    """Draw a 0..1 DSC axis with grid lines on ``img``; returns the row of a DSC value (clipped to 0..1)."""
    def y_of(v: float) -> int:
        return int(round(top + (1.0 - min(max(v, 0.0), 1.0)) * plot_h))

    font = cv2.FONT_HERSHEY_SIMPLEX
    for tick in np.linspace(0, 1, 6):
        y = y_of(tick)
        cv2.line(img, (left, y), (img.shape[1] - 20, y), (225, 225, 225), 1)
        cv2.putText(img, f"{tick:.1f}", (left - 45, y + 5), font, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, label, (10, top - 20), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return y_of


def plot_evaluation(evaluation: Evaluation, path: Path, title: str = "") -> Path:
    """Box plots of the DSC per method (median, quartiles, 5-95 % whiskers) as a PNG."""
    methods = [s.method for s in evaluation.ranking()]
    width, height, left, top, bottom = max(480, 150 * len(methods) + 120), 420, 70, 50, 60
    img = np.full((height, width, 3), 255, np.uint8)
    plot_h = height - top - bottom
    y_of = _dsc_axes(img, left, top, plot_h, "DSC")
    font = cv2.FONT_HERSHEY_SIMPLEX
    if title:
        cv2.putText(img, title, (left, 28), font, 0.65, (0, 0, 0), 1, cv2.LINE_AA)
    step = (width - left - 20) / max(1, len(methods))
    for k, method in enumerate(methods):
        values = np.array([r.dice for r in evaluation.rows_of(method)], dtype=float)
        cx = int(left + step * (k + 0.5))
        p5, q1, med, q3, p95 = np.percentile(values, [5, 25, 50, 75, 95])
        cv2.line(img, (cx, y_of(p5)), (cx, y_of(p95)), (90, 90, 90), 1)
        cv2.rectangle(img, (cx - 30, y_of(q3)), (cx + 30, y_of(q1)), (200, 140, 60), -1)
        cv2.line(img, (cx - 30, y_of(med)), (cx + 30, y_of(med)), (0, 0, 0), 2)
        for v in values:
            cv2.circle(img, (cx + 40, y_of(v)), 2, (60, 60, 200), -1)
        label = f"{method} ({values.mean():.2f})"
        size = cv2.getTextSize(label, font, 0.5, 1)[0][0]
        cv2.putText(img, label, (cx - size // 2, height - bottom + 25), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return _write_png(img, path)


def plot_selector(result: SelectorResult | dict, path: str | Path, title: str = "") -> Path:
    """Bars of the mean test DSC per strategy (± std whiskers, one dot per seed) and the baseline as a
    dashed line, as a PNG."""
    d = _as_dict(result)
    names = list(d["strategies"])
    width, height, left, top, bottom = max(520, 130 * len(names) + 120), 420, 70, 50, 70
    img = _canvas(width, height)
    plot_h = height - top - bottom
    font = cv2.FONT_HERSHEY_SIMPLEX
    y_of = _dsc_axes(img, left, top, plot_h, "test DSC")
    if title:
        cv2.putText(img, title, (left + 90, 28), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    step = (width - left - 20) / max(1, len(names))
    for k, name in enumerate(names):
        r = d["strategies"][name]
        cx = int(left + step * (k + 0.5))
        cv2.rectangle(img, (cx - 30, y_of(r["mean"])), (cx + 30, y_of(0)), (200, 140, 60), -1)
        cv2.line(img, (cx, y_of(r["mean"] - r["std"])), (cx, y_of(r["mean"] + r["std"])), (0, 0, 0), 2)
        for v in r["dsc"]:
            cv2.circle(img, (cx + 38, y_of(v)), 3, (60, 60, 200), -1)
        for text, dy in ((name, 22), (f"{100 * r['mean']:.1f}+-{100 * r['std']:.1f}", 44)):
            size = cv2.getTextSize(text, font, 0.45, 1)[0][0]
            cv2.putText(img, text, (cx - size // 2, height - bottom + dy), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    b = d.get("baseline") or {}
    if b.get("dsc"):
        y = y_of(b["mean"])
        for x in range(left, width - 20, 12):
            cv2.line(img, (x, y), (min(x + 6, width - 20), y), (40, 160, 40), 2)
        cv2.putText(img, f"baseline, {b['labels']} labels: {100 * b['mean']:.1f}", (left + 5, y - 6), font, 0.45,
                    (40, 120, 40), 1, cv2.LINE_AA)
    return _write_png(img, path)


def plot_simulation(result: SimulationResult | dict, path: str | Path, title: str = "") -> Path:
    """Correction effort per sample (dots coloured by pre-label method), its running mean over the
    retrain block and vertical lines at each retraining, as a PNG."""
    d = _as_dict(result)
    samples = d["samples"]
    width, height, left, top, bottom, right = 760, 420, 70, 50, 70, 20
    img = _canvas(width, height)
    font = cv2.FONT_HERSHEY_SIMPLEX
    ymax = 1.5
    plot_h, plot_w = height - top - bottom, width - left - right
    n = max(1, len(samples))

    def y_of(v: float) -> int:
        v = min(max(v if math.isfinite(v) else ymax, 0.0), ymax)
        return int(round(top + (1.0 - v / ymax) * plot_h))

    def x_of(i: float) -> int:
        return int(round(left + (i - 0.5) / n * plot_w))

    for tick in np.arange(0, ymax + 1e-9, 0.25):
        y = y_of(tick)
        cv2.line(img, (left, y), (width - right, y), (225, 225, 225), 1)
        cv2.putText(img, f"{tick:.2f}", (left - 50, y + 5), font, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, "correction effort (0 = perfect pre-label, 1 = from scratch)", (10, top - 20), font, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    if title:
        cv2.putText(img, title, (left, height - 12), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for r in d.get("retrains", []):
        x = x_of(r["after_labels"] + 0.5)
        cv2.line(img, (x, top), (x, top + plot_h), (150, 200, 150), 1)
    colours = {"onnx": (200, 110, 30), "previous": (40, 150, 40), "otsu": (40, 40, 200), "none": (120, 120, 120)}
    for s in samples:
        cv2.circle(img, (x_of(s["index"]), y_of(s["effort"])), 3, colours.get(s["prelabel"], (160, 60, 160)), -1)
    size = int(d["settings"].get("retrain_every") or 10)
    for b, start in enumerate(range(0, len(samples), size)):
        part = [s["effort"] for s in samples[start:start + size] if math.isfinite(s["effort"])]
        if part:
            y = y_of(float(np.mean(part)))
            cv2.line(img, (x_of(start + 0.5), y), (x_of(start + len(samples[start:start + size]) + 0.5), y),
                     (0, 0, 0), 2)
    x = left
    for name, c in colours.items():
        cv2.circle(img, (x + 5, height - bottom + 30), 4, c, -1)
        cv2.putText(img, name, (x + 14, height - bottom + 35), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += 110
    cv2.putText(img, "black: block mean; green lines: retraining", (x, height - bottom + 35), font, 0.45,
                (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"sample 1 .. {len(samples)} in labelling order", (left, height - bottom + 12), font, 0.4,
                (80, 80, 80), 1, cv2.LINE_AA)
    return _write_png(img, path)
