"""Bad input and faults around the kiosk's own settings and its log (issue 12, items 9, 10, 17).

Each row: what IT staff (or a full disk) leave behind, the command run on it, the exit code, the
words of its one plain line, kiosk.toml byte for byte as it was, and the stored labels of a real
project bit for bit unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from badinput import REPO, assert_plain_failure, labels_digest, run_cli, scratch_template
from labelassist import kiosk_settings

TEMPLATE = (REPO / "kiosk" / "kiosk.toml").read_text(encoding="utf-8")  # what IT staff start from
GOOD_HASH = "ab" * 32
GOOD_SALT = "cd" * 16


@pytest.fixture(scope="module")
def project(tmp_path_factory, datasets) -> Path:
    """A scratch_assay project with imported labels, whose digest every row checks."""
    project = scratch_template(tmp_path_factory.mktemp("kiosk-bad-input"), datasets, images=4)
    conn = sqlite3.connect((project / "labels.sqlite").as_uri() + "?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT count(*) FROM labels").fetchone()[0] >= 3
    finally:
        conn.close()
    return project


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _template_with(old: str, new: str) -> str:
    assert old in TEMPLATE, old
    return TEMPLATE.replace(old, new, 1)


def _line(text: str, needle: str, last: bool = False) -> str:
    """"line N" of the (first or last) line of ``text`` that holds ``needle``, as the message names it."""
    numbers = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return f"line {numbers[-1] if last else numbers[0]}"


BAD_PATH = _template_with('folder = ""', 'folder = "D:\\Labels"')
TWICE = TEMPLATE + '\n[data]\nfolder = "x"\n'
UNFINISHED = TEMPLATE + "\n[notes]\nwho ="


def _admin(salt: str, digest: str, iterations: str) -> str:
    return _template_with('pin_salt = ""\npin_hash = ""\npin_iterations = 200000',
                          f"pin_salt = {salt}\npin_hash = {digest}\npin_iterations = {iterations}")


# (id, kiosk.toml text (str) or bytes, argv after "kiosk", stdin, exit code, words of the one plain line)
CASES = [
    # 9: an unparseable kiosk.toml is never replaced by one holding only [admin]
    ("set-pin-windows-path-escape", BAD_PATH, ["set-pin", "--pin-stdin"], "482915\n", 1,
     [_line(BAD_PATH, "D:\\Labels") + ' (folder = "D:\\Labels")', "not valid TOML", "nothing was changed"]),
    ("set-pin-section-twice", TWICE, ["set-pin", "--pin-stdin"], "482915\n", 1,
     [_line(TWICE, "[data]", last=True) + " ([data])", "not valid TOML", "nothing was changed"]),
    ("set-pin-unfinished-value", UNFINISHED, ["set-pin", "--pin-stdin"], "482915\n", 1,
     [_line(UNFINISHED, "who =", last=True), "not valid TOML", "nothing was changed"]),
    ("set-pin-not-utf8", TEMPLATE.replace("# Label Assistant", "# \u00dcberblick: Label Assistant", 1)
     .encode("cp1252"), ["set-pin", "--pin-stdin"], "482915\n", 1, ["not UTF-8", "nothing was changed"]),
    # low: an inline [admin] table gave "unexpected error"
    ("set-pin-inline-admin-table", 'admin = {pin_hash = ""}\n\n[data]\nfolder = "D:/Labels"\n',
     ["set-pin", "--pin-stdin"], "482915\n", 1, ["[admin]", "inline table", "nothing was changed"]),
    ("set-pin-dotted-admin-keys", 'admin.pin_hash = ""\n\n[data]\nfolder = "D:/Labels"\n',
     ["set-pin", "--pin-stdin"], "482915\n", 1, ["[admin]", "dotted keys", "nothing was changed"]),
    # 10: PINs the keypad (ASCII 0-9, 4 to 12 of them) cannot type would lock the admin out
    ("pin-fullwidth-digits", TEMPLATE, ["set-pin", "--pin-stdin"], "\uff11\uff12\uff13\uff14\n", 1,
     ["digits 0-9", "nothing was changed"]),
    ("pin-arabic-indic-digits", TEMPLATE, ["set-pin", "--pin-stdin"], "\u0661\u0662\u0663\u0664\n", 1,
     ["digits 0-9", "nothing was changed"]),
    ("pin-superscripts", TEMPLATE, ["set-pin", "--pin-stdin"], "\u00b2\u00b2\u00b2\u00b2\n", 1,
     ["digits 0-9", "nothing was changed"]),
    ("pin-devanagari-digits", TEMPLATE, ["set-pin", "--pin-stdin"], "\u0967\u0968\u0969\u096a\n", 1,
     ["digits 0-9", "nothing was changed"]),
    ("pin-13-digits", TEMPLATE, ["set-pin", "--pin-stdin"], "1234567890123\n", 1, ["4 to 12 digits"]),
    ("pin-3-digits", TEMPLATE, ["set-pin", "--pin-stdin"], "123\n", 1, ["4 to 12 digits"]),
    ("pin-with-a-space", TEMPLATE, ["set-pin", "--pin-stdin"], "12 34\n", 1, ["digits 0-9"]),
    ("pin-empty", TEMPLATE, ["set-pin", "--pin-stdin"], "\n", 1, ["digits 0-9"]),
    # 10: "kiosk check" said "no problems found" for hashes the kiosk cannot use
    ("check-hash-not-hex", _admin(f'"{GOOD_SALT}"', '"not-a-hash"', "200000"), ["check"], None, 1,
     ["pin_hash is not hex"]),
    ("check-hash-too-short", _admin(f'"{GOOD_SALT}"', '"abcd"', "200000"), ["check"], None, 1,
     ["pin_hash holds 2 bytes", "32 bytes"]),
    ("check-salt-not-hex", _admin('"salt"', f'"{GOOD_HASH}"', "200000"), ["check"], None, 1,
     ["pin_salt is not hex"]),
    ("check-salt-empty", _admin('""', f'"{GOOD_HASH}"', "200000"), ["check"], None, 1, ["pin_salt is empty"]),
    ("check-salt-a-number", _admin("1234", f'"{GOOD_HASH}"', "200000"), ["check"], None, 1,
     ["pin_salt must be a quoted hex string"]),
    ("check-iterations-many", _admin(f'"{GOOD_SALT}"', f'"{GOOD_HASH}"', '"many"'), ["check"], None, 1,
     ["pin_iterations", "'many'"]),
    ("check-iterations-zero", _admin(f'"{GOOD_SALT}"', f'"{GOOD_HASH}"', "0"), ["check"], None, 1,
     ["pin_iterations", "whole number"]),
    ("check-iterations-negative", _admin(f'"{GOOD_SALT}"', f'"{GOOD_HASH}"', "-5"), ["check"], None, 1,
     ["pin_iterations"]),
    ("check-iterations-huge", _admin(f'"{GOOD_SALT}"', f'"{GOOD_HASH}"', "1000000000000"), ["check"], None, 1,
     ["pin_iterations"]),
    ("check-iterations-float", _admin(f'"{GOOD_SALT}"', f'"{GOOD_HASH}"', "2e5"), ["check"], None, 1,
     ["pin_iterations"]),
    ("check-iterations-bool", _admin(f'"{GOOD_SALT}"', f'"{GOOD_HASH}"', "true"), ["check"], None, 1,
     ["pin_iterations"]),
    ("check-unparseable", BAD_PATH, ["check"], None, 1, [_line(BAD_PATH, "D:\\Labels"), "not valid TOML"]),
    ("check-not-utf8", TEMPLATE.replace("# Label Assistant", "# \u00dcberblick: Label Assistant", 1).encode("cp1252"),
     ["check"], None, 1, ["not UTF-8"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_kiosk_settings(case, project, tmp_path):
    _name, content, argv, stdin, code, words = case
    home = tmp_path / "home"
    home.mkdir()
    settings = home / "kiosk.toml"
    if isinstance(content, bytes):
        settings.write_bytes(content)
    else:
        settings.write_text(content, encoding="utf-8")
    before_file, before_labels = _digest(settings), labels_digest(project)

    result = run_cli("kiosk", *argv, home=home, stdin=stdin, timeout=60)

    assert_plain_failure(result, code, *words)
    assert "no problems found" not in result.out
    assert _digest(settings) == before_file, "kiosk.toml was changed"
    assert not [p.name for p in home.iterdir() if p.name.startswith(".kiosk.toml")], "a temporary file was left"
    assert labels_digest(project) == before_labels


def test_set_pin_keeps_every_setting_and_the_pin_opens_admin(tmp_path):
    """The good path next to the table: a valid file gets the hash, nothing else changes."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "kiosk.toml").write_text(_template_with('folder = ""', 'folder = "D:\\\\Labels"'), encoding="utf-8")
    result = run_cli("kiosk", "set-pin", "--pin-stdin", home=home, stdin="482915\n", timeout=60)
    assert result.code == 0, result.err
    assert kiosk_settings.load(home)["data"]["folder"] == "D:\\Labels"
    assert kiosk_settings.check_pin("482915", home) and not kiosk_settings.check_pin("0000", home)
    assert kiosk_settings.problems(home) == []


@pytest.mark.parametrize("iterations, salt, digest", [('"many"', GOOD_SALT, GOOD_HASH), ("0", GOOD_SALT, GOOD_HASH),
                                                       ("200000", "zz", GOOD_HASH), ("200000", GOOD_SALT, "ab")])
def test_a_damaged_pin_hash_never_crashes_the_admin_screen_and_never_opens_it(tmp_path, iterations, salt, digest):
    """check_pin is what the Admin keypad calls: int("many") raised inside the kiosk."""
    (tmp_path / "kiosk.toml").write_text(_admin(f'"{salt}"', f'"{digest}"', iterations), encoding="utf-8")
    assert kiosk_settings.check_pin("0000", tmp_path) is False
    assert kiosk_settings.check_pin("482915", tmp_path) is False
    assert kiosk_settings.pin_hash_problems(kiosk_settings.load(tmp_path)["admin"])


def test_valid_pin_is_exactly_what_the_keypad_types():
    assert all(kiosk_settings.valid_pin(p) for p in ("0000", "482915", "123456789012"))
    assert not any(kiosk_settings.valid_pin(p) for p in ("\uff11\uff12\uff13\uff14", "\u0661\u0662\u0663\u0664",
                                                         "\u00b2\u00b2\u00b2\u00b2", "1234\n", "123", "1" * 13, 1234))


# -- 17: the log folder on a full disk -------------------------------------------------------

def _fill(folder: Path) -> None:
    """Write until the file system says it is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # unbuffered: nothing left to flush
    try:
        while True:
            os.write(fd, b"\0" * 1024)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.fixture()
def full_home(tmp_path):
    """LABELASSIST_HOME on a full 64 KiB tmpfs (root only: skipped elsewhere)."""
    home = tmp_path / "full"
    home.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(home)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"tmpfs could not be mounted: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        (home / "logs").mkdir()
        _fill(home)
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


@pytest.fixture()
def dev_full_home(tmp_path):
    """LABELASSIST_HOME whose log file is /dev/full (every write: "No space left on device")."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "labelassist.log").symlink_to("/dev/full")
    return home


def _assert_one_quiet_note(result) -> None:
    err = result.err
    assert "Logging error" not in err and "Traceback" not in err and "Exception ignored" not in err, err
    notes = [line for line in err.splitlines() if "log file" in line and "could not be written" in line]
    assert len(notes) == 1, err
    assert "No space left on device" in notes[0]


@pytest.mark.parametrize("home_kind", ["full_home", "dev_full_home"])
def test_a_full_log_disk_prints_one_plain_line_and_the_command_still_works(home_kind, project, request):
    home = request.getfixturevalue(home_kind)
    before = labels_digest(project)
    result = run_cli("status", project, home=home, timeout=120)
    assert result.code == 0, result.err
    assert "4" in result.out
    _assert_one_quiet_note(result)
    assert labels_digest(project) == before


@pytest.mark.parametrize("home_kind", ["full_home", "dev_full_home"])
def test_a_failing_command_on_a_full_log_disk_still_ends_with_its_own_plain_line(home_kind, request, tmp_path):
    home = request.getfixturevalue(home_kind)
    result = run_cli("status", tmp_path / "no-such-project", home=home, timeout=120)
    assert_plain_failure(result, 1, "no-such-project", "does not exist")
    _assert_one_quiet_note(result)


def test_set_pin_on_a_full_disk_says_so_and_keeps_the_file(full_home):
    settings = full_home / "kiosk.toml"
    # the template is written before the disk filled up: make room for it, then fill again
    (full_home / "filler").unlink()
    settings.write_text(TEMPLATE, encoding="utf-8")
    _fill(full_home)
    before = _digest(settings)
    result = run_cli("kiosk", "set-pin", "--pin-stdin", home=full_home, stdin="482915\n", timeout=60)
    assert_plain_failure(result, 1, "could not be written", "No space left on device", "nothing was changed")
    assert _digest(settings) == before
    assert "Logging error" not in result.err
