#!/usr/bin/env bash
# Build the Linux one-dir bundle: dist/labelassist/ and dist/labelassist-<version>-linux-<arch>.zip
#
#   packaging/build.sh                 # fresh build venv in build/bundle-venv (pip install '.[build]')
#   packaging/build.sh --venv .venv    # reuse a venv that already has the package and PyInstaller
#   packaging/build.sh --no-zip        # only dist/labelassist/ (+ VERSION.txt, MANIFEST.sha256)
#   packaging/build.sh --untrimmed     # LABELASSIST_TRIM=0: the size comparison of packaging/README.md
#   packaging/build.sh --without-trainer   # LABELASSIST_TRAINER=0: no torch/onnx (the kiosk without
#                                          # U-Net training on the tablet; it says "not installed")
#
# Steps: (1) a Python 3.11+ venv with the package and its `build` extra (PyInstaller);
# (2) PyInstaller on packaging/labelassist.spec (Kivy's recipe; trimmed; no display needed);
# (3) VERSION.txt (version, commit, date) and MANIFEST.sha256 (every file) inside the bundle;
# (4) the zip with the version stamp in its name, and its own .sha256;
# (5) a self-check: the manifest verifies and `labelassist --version` runs.
# Needs: python3 (3.11+), binutils' `strip`; the smoke test needs a display (xvfb-run) and is
# run separately: `xvfb-run -a dist/labelassist/labelassist --smoke`.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="build/bundle-venv"
ZIP=1
export LABELASSIST_TRIM="${LABELASSIST_TRIM:-1}"
export LABELASSIST_TRAINER="${LABELASSIST_TRAINER:-1}"
DIST="dist"
WORK="build/pyinstaller"

while [ $# -gt 0 ]; do
    case "$1" in
        --venv) VENV="$2"; REUSE=1; shift 2 ;;
        --no-zip) ZIP=0; shift ;;
        --untrimmed) export LABELASSIST_TRIM=0; shift ;;
        --without-trainer) export LABELASSIST_TRAINER=0; shift ;;
        --dist) DIST="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

started=$(date +%s)
say() { printf '[build %4ds] %s\n' "$(( $(date +%s) - started ))" "$*"; }

# -- 1. the build environment ---------------------------------------------------------------
if [ -z "${REUSE:-}" ]; then
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    say "installing the package and PyInstaller into $VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet ".[build]"
fi
PY="$VENV/bin/python"
"$PY" -c "import PyInstaller, kivy, labelassist" 2>/dev/null || {
    echo "build.sh: $VENV lacks PyInstaller, Kivy or labelassist: pip install -e '.[build]' into it" >&2; exit 1; }
command -v strip >/dev/null || say "warning: no 'strip' (binutils): Kivy's extensions stay unstripped (+45 MB)"

VERSION="$("$PY" -c 'import labelassist; print(labelassist.__version__)')"
COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    COMMIT="${COMMIT}-modified"
    say "warning: the checkout has uncommitted changes; the stamp says ${COMMIT}"
fi
ARCH="$(uname -m)"
STAMP="${VERSION}+${COMMIT}"
NAME="labelassist-${VERSION}-${COMMIT}-linux-${ARCH}"

# -- 2. PyInstaller ---------------------------------------------------------------------------
say "PyInstaller (trim=${LABELASSIST_TRIM}, trainer=${LABELASSIST_TRAINER}) -> $DIST/labelassist"
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$DIST" --workpath "$WORK" packaging/labelassist.spec
BUNDLE="$DIST/labelassist"
[ -x "$BUNDLE/labelassist" ] || { echo "build.sh: $BUNDLE/labelassist was not built" >&2; exit 1; }

# -- 3. deployment kit, version stamp and manifest ----------------------------------------------
# IT staff get the kiosk kit with the bundle (deploy/: kiosk.toml template, Shell Launcher XML and
# PowerShell, systemd unit, udev rules, verify.ps1), covered by the manifest like everything else.
rm -rf "$BUNDLE/deploy"
mkdir -p "$BUNDLE/deploy"
cp -R kiosk/. "$BUNDLE/deploy/"
cp packaging/verify.ps1 "$BUNDLE/deploy/verify.ps1"
"$PY" packaging/bundle_tools.py stamp "$BUNDLE" --version "$VERSION" --commit "$COMMIT" >/dev/null
"$PY" packaging/bundle_tools.py manifest "$BUNDLE"

# -- 4. zip -----------------------------------------------------------------------------------
if [ "$ZIP" = 1 ]; then
    rm -f "$DIST/$NAME.zip" "$DIST/$NAME.zip.sha256"
    "$PY" packaging/bundle_tools.py zip "$BUNDLE" "$DIST/$NAME.zip"
fi

# -- 5. self-check ----------------------------------------------------------------------------
"$PY" packaging/bundle_tools.py verify "$BUNDLE"
"$BUNDLE/labelassist" --version
SIZE_MB=$(( $("$PY" packaging/bundle_tools.py size "$BUNDLE") / 1000000 ))
say "done: $BUNDLE (${SIZE_MB} MB, $(find "$BUNDLE" -type f | wc -l) files), stamp ${STAMP}"
[ "$ZIP" = 1 ] && say "zip: $DIST/$NAME.zip ($(cut -c1-16 "$DIST/$NAME.zip.sha256")...)"
exit 0
