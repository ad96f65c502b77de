"""The admin PIN's back-off (labelassist.ui.pin_policy): pure Python, no Kivy, no window."""

from __future__ import annotations

from labelassist.ui.pin_policy import PinBackoff


def test_a_few_wrong_pins_are_free_then_each_try_waits_twice_as_long_up_to_a_cap():
    backoff = PinBackoff()
    now = 1000.0
    waits = []
    for _ in range(15):
        assert backoff.wait_left(now) == 0
        waits.append(backoff.wrong_pin(now))
        now += waits[-1]
    free = PinBackoff.FREE_TRIES - 1
    assert waits[:free] == [0.0] * free
    assert waits[free:free + 4] == [2.0, 4.0, 8.0, 16.0]
    assert max(waits) == PinBackoff.MAX_WAIT_S == waits[-1]


def test_the_right_pin_waits_for_the_back_off_too_and_then_starts_the_count_again():
    backoff = PinBackoff()
    for _ in range(PinBackoff.FREE_TRIES):
        wait = backoff.wrong_pin(0.0)
    assert wait > 0 and backoff.wait_left(wait / 2) == wait / 2 and backoff.wait_left(wait) == 0
    backoff.right_pin()
    assert backoff.wrong == 0 and backoff.wrong_pin(wait) == 0.0


def test_the_policy_imports_no_kivy():
    import ast
    from pathlib import Path

    import labelassist.ui.pin_policy as policy

    tree = ast.parse(Path(policy.__file__).read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any("kivy" in name for name in names)
