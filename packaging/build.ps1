<#
.SYNOPSIS
    Builds the Windows one-dir bundle: dist\labelassist\ and dist\labelassist-<version>-<commit>-windows-<arch>.zip

.DESCRIPTION
    NOT RUN: there is no Windows machine in this project's CI. Written to mirror packaging/build.sh
    step by step and reviewed by reading. Run it from a clean checkout in PowerShell 5.1 or 7:

        powershell -ExecutionPolicy Bypass -File packaging\build.ps1
        powershell -ExecutionPolicy Bypass -File packaging\build.ps1 -Venv .venv     # reuse a venv
        powershell -ExecutionPolicy Bypass -File packaging\build.ps1 -Smoke          # + self-test
        powershell -ExecutionPolicy Bypass -File packaging\build.ps1 -WithoutTrainer # no torch (as build.sh --without-trainer)

    Steps:
      1. a Python 3.11+ venv (build\bundle-venv) with the package and its `build` extra
         (PyInstaller). Kivy's Windows wheels pull in kivy_deps.sdl2, kivy_deps.glew and
         kivy_deps.angle; the spec adds their dep_bins trees (Kivy's recipe).
      2. PyInstaller on packaging\labelassist.spec: labelassist.exe (console: CLI, --smoke) and
         labelassistw.exe (no console: the kiosk shell for Shell Launcher) share one _internal\.
      3. deploy\ (the kiosk kit), VERSION.txt and MANIFEST.sha256 inside the bundle
      4. the zip with the version stamp in its name, and its .sha256
      5. a self-check: the manifest verifies, `labelassist.exe --version` runs; -Smoke also runs
         `labelassist.exe --smoke` (needs a desktop session: it opens a window).
#>
param(
    [string]$Python = "py",
    [string[]]$PythonArgs = @("-3.11"),
    [string]$Venv = "",
    [switch]$NoZip,
    [switch]$Untrimmed,
    [switch]$WithoutTrainer,
    [switch]$Smoke
)
Set-StrictMode -Version Latest
$ErrorActionPreference = "Stop"
$root = Split-Path -Parent $PSScriptRoot
Set-Location $root
$started = Get-Date
function Say([string]$Text) { Write-Host ("[build {0,4:N0}s] {1}" -f ((Get-Date) - $started).TotalSeconds, $Text) }
function Check([string]$What) { if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" } }

$env:LABELASSIST_TRIM = if ($Untrimmed) { "0" } else { "1" }
# The trainer (torch, onnx, onnxruntime.quantization) ships unless -WithoutTrainer (packaging/README.md)
$env:LABELASSIST_TRAINER = if ($WithoutTrainer) { "0" } else { "1" }

# -- 1. the build environment -------------------------------------------------------------------
if (-not $Venv) {
    $Venv = "build\bundle-venv"
    if (-not (Test-Path "$Venv\Scripts\python.exe")) {
        Say "creating $Venv"
        & $Python @PythonArgs -m venv $Venv; Check "python -m venv"
    }
    $py = Join-Path $root "$Venv\Scripts\python.exe"
    Say "installing the package and PyInstaller into $Venv"
    & $py -m pip install --quiet --upgrade pip; Check "pip upgrade"
    & $py -m pip install --quiet ".[build]"; Check "pip install .[build]"
} else {
    $py = Join-Path (Resolve-Path $Venv).Path "Scripts\python.exe"
}
& $py -c "import PyInstaller, kivy, labelassist; from kivy_deps import sdl2, glew" 2>$null
Check "the build venv lacks PyInstaller, Kivy, kivy_deps or labelassist (pip install -e .[build])"

$version = (& $py -c "import labelassist; print(labelassist.__version__)").Trim()
$commit = (& git -C $root rev-parse --short=12 HEAD 2>$null)
if (-not $commit) { $commit = "unknown" }
if (& git -C $root status --porcelain --untracked-files=no 2>$null) {
    $commit = "$commit-modified"
    Say "warning: the checkout has uncommitted changes; the stamp says $commit"
}
$arch = if ([Environment]::Is64BitOperatingSystem) { "x86_64" } else { "x86" }
$name = "labelassist-$version-$commit-windows-$arch"

# -- 2. PyInstaller -----------------------------------------------------------------------------
Say "PyInstaller (trim=$($env:LABELASSIST_TRIM), trainer=$($env:LABELASSIST_TRAINER)) -> dist\labelassist"
& $py -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build\pyinstaller packaging\labelassist.spec
Check "PyInstaller"
$bundle = Join-Path $root "dist\labelassist"
foreach ($exe in @("labelassist.exe", "labelassistw.exe")) {
    if (-not (Test-Path (Join-Path $bundle $exe))) { throw "$exe was not built" }
}

# -- 3. deployment kit, version stamp, manifest -------------------------------------------------
$deploy = Join-Path $bundle "deploy"
if (Test-Path $deploy) { Remove-Item -Recurse -Force $deploy }
Copy-Item -Recurse -Path (Join-Path $root "kiosk") -Destination $deploy
Copy-Item -Path (Join-Path $root "packaging\verify.ps1") -Destination (Join-Path $deploy "verify.ps1")
& $py packaging\bundle_tools.py stamp $bundle --version $version --commit $commit | Out-Null; Check "stamp"
& $py packaging\bundle_tools.py manifest $bundle; Check "manifest"

# -- 4. zip -------------------------------------------------------------------------------------
if (-not $NoZip) {
    $zip = Join-Path $root "dist\$name.zip"
    Remove-Item -Force -ErrorAction SilentlyContinue $zip, "$zip.sha256"
    & $py packaging\bundle_tools.py zip $bundle $zip; Check "zip"
}

# -- 5. self-check ------------------------------------------------------------------------------
& powershell -NoProfile -ExecutionPolicy Bypass -File packaging\verify.ps1 -Bundle $bundle; Check "verify.ps1"
& (Join-Path $bundle "labelassist.exe") --version; Check "labelassist.exe --version"
if ($Smoke) {
    & (Join-Path $bundle "labelassist.exe") --smoke; Check "labelassist.exe --smoke"
}
$size = [math]::Round(((Get-ChildItem -Recurse -File $bundle | Measure-Object -Sum Length).Sum) / 1MB)
Say "done: $bundle ($size MiB), stamp $version+$commit"
if (-not $NoZip) { Say "zip: dist\$name.zip" }
