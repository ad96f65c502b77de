"""The kiosk UI's layout files and modules (fast: no Kivy, no window; the sources are read).

One module per screen with its kv file, every kv file loaded in one defined order (app.py
``KV_FILES``) and bundled, the palette in one place, and no screen or kv rule looking another
screen up (the app decides which screen shows).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import labelassist

UI = Path(labelassist.__file__).parent / "ui"
ROOT = Path(labelassist.__file__).parents[2]


def kv_files_in_load_order() -> list[str]:
    tree = ast.parse((UI / "app.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "KV_FILES" for t in node.targets):
            return [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and str(c.value).endswith(".kv")]
    raise AssertionError("app.py defines no KV_FILES")


def test_every_kv_file_is_loaded_once_theme_first_and_every_screen_module_has_its_kv():
    order = kv_files_in_load_order()
    assert sorted(order) == sorted(p.name for p in UI.glob("*.kv")) and len(set(order)) == len(order)
    assert order[:2] == ["theme.kv", "icons.kv"]
    for module in UI.glob("*_screen*.py"):
        assert module.with_suffix(".kv").name in order, f"{module.name} has no kv file"


def test_the_bundle_takes_every_kv_file():
    spec = (ROOT / "packaging" / "labelassist.spec").read_text(encoding="utf-8")
    assert '(APP / "ui").glob("*.kv")' in spec


def test_the_palette_is_in_one_place():
    """theme.py holds the colours; kv files name them (set in theme.kv), Python reads theme."""
    from labelassist.ui import theme

    palette = {name: value for name, value in vars(theme).items() if name.isupper()}
    number = r"\s*(\d*\.?\d+)\s*"
    for path in [*UI.glob("*.py"), *UI.glob("*.kv")]:
        if path.name == "theme.py":
            continue
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"(?<![\w.])" + ",".join([number] * 4) + r"(?![\w.])", text):
            rgba = tuple(float(v) for v in match.groups())
            same = [name for name, value in palette.items() if tuple(map(float, value)) == rgba]
            assert not same, f"{path.name} repeats the palette's {same[0]}: {match.group(0)}"
    theme_kv = (UI / "theme.kv").read_text(encoding="utf-8")
    for name in ("BG", "PANEL", "ACCENT", "GO", "WARN", "STOP", "BUTTON"):
        assert f"#:set {name} theme.{name}" in theme_kv


def test_no_screen_widget_or_kv_rule_looks_another_screen_up():
    for path in [*UI.glob("*.py"), *UI.glob("*.kv")]:
        if path.name == "app.py":  # the app decides which screen shows
            continue
        assert "get_screen(" not in path.read_text(encoding="utf-8"), path.name


def test_the_tool_rail_and_the_keys_come_from_the_tool_table():
    label_kv = (UI / "label_screen.kv").read_text(encoding="utf-8")
    label_py = (UI / "label_screen.py").read_text(encoding="utf-8")
    assert "IconToggleButton:" not in label_kv and "tool_brush" not in label_kv
    assert '"b": "brush"' not in label_py and '"brush", "eraser"' not in label_py, \
        "label_screen.py lists the tools: read ui/tools.py TOOLS and TOOL_KEYS"
    assert "tools.TOOL_KEYS" in label_py and "tools.TOOLS" in label_py
