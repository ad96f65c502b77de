<#
.SYNOPSIS
    Checks a Label Assistant bundle folder against its MANIFEST.sha256 (Windows, no Python needed).
.DESCRIPTION
    NOT RUN ON A WINDOWS MACHINE (reviewed by reading). Exit code 0 when every listed file exists
    with the listed SHA-256 and no unlisted file is in the folder; 1 otherwise. The manifest is in
    sha256sum format: "<64 hex>  <path with forward slashes>".
.EXAMPLE
    powershell -ExecutionPolicy Bypass -File verify.ps1 -Bundle D:\labelassist
#>
param([Parameter(Mandatory = $true)][string]$Bundle)
$ErrorActionPreference = "Stop"
$Bundle = (Resolve-Path $Bundle).Path
$manifest = Join-Path $Bundle "MANIFEST.sha256"
if (-not (Test-Path $manifest)) { Write-Host "$manifest is missing"; exit 1 }
$problems = New-Object System.Collections.Generic.List[string]
$listed = New-Object 'System.Collections.Generic.HashSet[string]' ([StringComparer]::OrdinalIgnoreCase)
foreach ($line in Get-Content -Path $manifest -Encoding UTF8) {
    if (-not $line.Trim()) { continue }
    $hash = $line.Substring(0, 64)
    $rel = $line.Substring(66)
    [void]$listed.Add($rel)
    $path = Join-Path $Bundle ($rel -replace "/", "\")
    if (-not (Test-Path -LiteralPath $path)) { $problems.Add("missing: $rel"); continue }
    $actual = (Get-FileHash -LiteralPath $path -Algorithm SHA256).Hash
    if ($actual -ne $hash.ToUpperInvariant()) { $problems.Add("changed: $rel") }
}
Get-ChildItem -LiteralPath $Bundle -Recurse -File | ForEach-Object {
    $rel = $_.FullName.Substring($Bundle.Length).TrimStart("\") -replace "\\", "/"
    if ($rel -ne "MANIFEST.sha256" -and -not $listed.Contains($rel)) { $problems.Add("not in the manifest: $rel") }
}
if ($problems.Count) {
    $problems | Select-Object -First 50 | ForEach-Object { Write-Host $_ }
    Write-Host "$Bundle`: $($problems.Count) problem(s); do not deploy this copy"
    exit 1
}
Write-Host "$Bundle`: every file matches MANIFEST.sha256"
exit 0
