"""Fixed-width text tables of the pre-label and box-method evaluations.

One place for both the command line (``labelassist evaluate prelabel|box``, the
detailed form) and the Admin screen (the compact form), so a new column or a
change of order is made once.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

# A column: (title, width, format spec for its values). The first column is left-aligned.
Column = tuple[str, int, str]

_PRELABEL_DETAILED: tuple[Column, ...] = (
    ("method", 12, ""), ("n", 4, ""), ("DSC mean", 9, ".3f"), ("median", 7, ".3f"), ("q1", 6, ".3f"),
    ("q3", 6, ".3f"), ("effort", 7, ".3f"), ("ms/img", 8, ".1f"))
_PRELABEL_COMPACT: tuple[Column, ...] = (
    ("method", 12, ""), ("images", 8, ""), ("mean DSC", 10, ".2f"), ("median", 9, ".2f"), ("ms", 8, ".0f"))
_BOX_DETAILED: tuple[Column, ...] = (("method", 10, ""), ("objects", 7, ""), ("DSC mean", 9, ".3f"),
                                     ("ms/box", 8, ".1f"))
_BOX_COMPACT: tuple[Column, ...] = (("method", 18, ""), ("objects", 8, ""), ("mean DSC", 10, ".2f"),
                                    ("ms per box", 12, ".0f"))

NO_BOX_OBJECTS = "The labels so far have no objects to draw boxes around."

_TAP_DETAILED: tuple[Column, ...] = (("method", 10, ""), ("objects", 7, ""), ("DSC mean", 9, ".3f"),
                                     ("ms/tap", 8, ".1f"))


def text_table(columns: Sequence[Column], rows: Sequence[Sequence[Any]], sep: str = "") -> str:
    """Rows of values under a header line, each column padded to its width.

    Parameters
    ----------
    columns : sequence of (title, width, spec)
        ``spec`` is a format spec without alignment (``".3f"``); the first column is
        left-aligned (and as wide as its longest value), the others right-aligned.
    rows : sequence of sequences
        One value per column.
    sep : str
        Put between columns.

    Returns
    -------
    text : str
        The header and one line per row, joined by newlines.
    """
    # The first column (names: shipped:scratch_assay, a plug-in's) widens to its longest value.
    first = max([columns[0][1]] + [len(str(row[0])) for row in rows]) if columns else 0
    widths = [first] + [width for _, width, _ in columns[1:]]

    def line(values, specs):
        return sep.join(format(v, f"{'<' if i == 0 else '>'}{width}{spec}")
                        for i, (v, width, spec) in enumerate(zip(values, widths, specs)))

    lines = [line([title for title, _, _ in columns], [""] * len(columns))]
    lines += [line(row, [spec for _, _, spec in columns]) for row in rows]
    return "\n".join(lines)


def prelabel_table(evaluation, detailed: bool = True, name: Callable[[str], str] = str) -> str:
    """A pre-label evaluation, best method first.

    Parameters
    ----------
    evaluation : labelassist.research.prelabel_eval.Evaluation
    detailed : bool
        True: the command line's columns (quartiles, effort, 3 decimals); False: the
        Admin screen's (mean and median DSC, 2 decimals).
    name : callable
        How a method's name is shown (``textout.safe`` on a terminal: names may come
        from plug-in files).

    Returns
    -------
    text : str
    """
    if detailed:
        rows = [(name(s.method), s.n, s.dice_mean, s.dice_median, s.dice_q1, s.dice_q3, s.effort_mean, s.ms_mean)
                for s in evaluation.ranking()]
        return text_table(_PRELABEL_DETAILED, rows, sep=" ")
    rows = [(name(s.method), s.n, s.dice_mean, s.dice_median, s.ms_mean) for s in evaluation.ranking()]
    return text_table(_PRELABEL_COMPACT, rows)


def box_table(evaluation, detailed: bool = True, name: Callable[[str], str] = str) -> str:
    """A box-method evaluation (objects, mean DSC, ms per box), highest mean DSC first.

    Parameters
    ----------
    evaluation : labelassist.research.box_eval.BoxEvaluation
    detailed : bool
        True: the command line's form (every method, 3 decimals); False: the Admin
        screen's (methods without objects left out, a sentence when none has any).
    name : callable
        How a method's name is shown.

    Returns
    -------
    text : str
    """
    # a method without objects has a nan mean: last, not wherever nan's comparisons put it
    methods = sorted(evaluation.methods, key=lambda m: -np.nan_to_num(evaluation.mean_dice(m), nan=-1))
    if not detailed:
        methods = [m for m in methods if evaluation.objects(m)]
        if not methods:
            return NO_BOX_OBJECTS
    rows = [(name(m), evaluation.objects(m), evaluation.mean_dice(m), evaluation.mean_ms(m)) for m in methods]
    table = text_table(_BOX_DETAILED if detailed else _BOX_COMPACT, rows, sep=" " if detailed else "")
    taps = sorted(getattr(evaluation, "point_methods", []),
                  key=lambda m: -np.nan_to_num(evaluation.mean_dice(m, "point"), nan=-1))
    if detailed and taps:
        rows = [(name(m), evaluation.objects(m, "point"), evaluation.mean_dice(m, "point"),
                 evaluation.mean_ms(m, "point")) for m in taps]
        table += "\none tap at each object's middle:\n" + text_table(_TAP_DETAILED, rows, sep=" ")
    return table
