<#
.SYNOPSIS
    Turns a Windows 11 tablet into a Label Assistant kiosk (Shell Launcher v2).

.DESCRIPTION
    NOT RUN ON A WINDOWS MACHINE: written and reviewed by reading (Shell Launcher docs, the
    MDM Bridge WMI provider docs, Microsoft's ShellLauncherV2 samples). Try it on one tablet first.

    EDITION CAVEAT: Shell Launcher exists only in Windows 11 Enterprise / Enterprise LTSC,
    Education and IoT Enterprise / IoT Enterprise LTSC. On Home or Pro this script stops (use
    Assigned Access "kiosk mode" with a UWP app there, which this app is not, or upgrade the edition).

    Steps (each one says what it does; run in an elevated PowerShell):
      1. checks the edition and that the bundle folder verifies against its MANIFEST.sha256
      2. copies the bundle to -InstallDir (default C:\LabelAssist\labelassist), replacing an old one
      3. creates the data home (default C:\ProgramData\LabelAssist), sets LABELASSIST_HOME for the
         machine, gives local Users modify rights there, puts kiosk.toml in place (never overwrites)
      4. asks for the admin PIN (labelassist.exe kiosk set-pin) unless -SkipPin
      5. creates the demo project as the start project if -Project does not exist yet
      6. enables the Shell Launcher feature (Client-EmbeddedShellLauncher)
      7. applies ShellLauncher.xml (install folder and project filled in) through the MDM Bridge
         WMI provider; that provider only works as SYSTEM, so the script runs that step in a
         one-off scheduled task as SYSTEM (or directly when it already runs as SYSTEM)
    Then restart: the tablet signs in the "Kiosk" account and starts the labelling screen.

    Updating the app later: run again with the new bundle (-BundlePath). Only -InstallDir is
    replaced; the data home (labels, kiosk.toml) is kept. -Remove takes the Shell Launcher
    configuration off again (the data home and the bundle stay).

.PARAMETER BundlePath
    The unzipped bundle folder (containing labelassist.exe, labelassistw.exe, MANIFEST.sha256).

.PARAMETER InstallDir
    Where the bundle is installed. Default C:\LabelAssist\labelassist.

.PARAMETER DataHome
    The kiosk's data home (kiosk.toml, projects, logs). Default C:\ProgramData\LabelAssist.

.PARAMETER Project
    The project folder the kiosk opens. Default <DataHome>\projects\main (the demo project is
    created there when it does not exist yet).

.EXAMPLE
    # elevated PowerShell, in the folder where the release zip was unpacked:
    Set-ExecutionPolicy -Scope Process Bypass
    .\labelassist\kiosk\Install-Kiosk.ps1 -BundlePath .\labelassist

.EXAMPLE
    .\Install-Kiosk.ps1 -Remove
#>
[CmdletBinding(DefaultParameterSetName = "Install")]
param(
    [Parameter(ParameterSetName = "Install", Mandatory = $true)][string]$BundlePath,
    [Parameter(ParameterSetName = "Install")][string]$InstallDir = "C:\LabelAssist\labelassist",
    [Parameter(ParameterSetName = "Install")][string]$DataHome = "C:\ProgramData\LabelAssist",
    [Parameter(ParameterSetName = "Install")][string]$Project = "",
    [Parameter(ParameterSetName = "Install")][string]$ConfigXml = (Join-Path $PSScriptRoot "ShellLauncher.xml"),
    [Parameter(ParameterSetName = "Install")][string]$KioskToml = (Join-Path $PSScriptRoot "..\kiosk.toml"),
    [Parameter(ParameterSetName = "Install")][switch]$SkipPin,
    [Parameter(ParameterSetName = "Remove", Mandatory = $true)][switch]$Remove,
    # internal: the SYSTEM-side step, started by this script through a scheduled task
    [Parameter(ParameterSetName = "Apply", Mandatory = $true)][string]$ApplyXml,
    [Parameter(ParameterSetName = "Apply")][string]$ApplyLog
)
#Requires -RunAsAdministrator
Set-StrictMode -Version Latest
$ErrorActionPreference = "Stop"

$SupportedEditions = @("Enterprise", "EnterpriseN", "EnterpriseS", "EnterpriseSN", "Education", "EducationN",
                       "IoTEnterprise", "IoTEnterpriseS", "IoTEnterpriseK", "IoTEnterpriseSK")
$ProfileId = "{5C0F7B3A-2D4E-4E8B-9A61-7A3B6C1D2E4F}"

function Write-Step([string]$Text) { Write-Host "==> $Text" -ForegroundColor Cyan }

function Test-IsSystem {
    return [System.Security.Principal.WindowsIdentity]::GetCurrent().IsSystem
}

function Get-AssignedAccessCsp {
    # The Assigned Access CSP through the MDM Bridge WMI provider (SYSTEM only).
    return Get-CimInstance -Namespace "root\cimv2\mdm\dmmap" -ClassName "MDM_AssignedAccess"
}

function Set-ShellLauncherXml([string]$Xml) {
    $csp = Get-AssignedAccessCsp
    $csp.ShellLauncher = [System.Net.WebUtility]::HtmlEncode($Xml)   # the CSP takes escaped XML
    Set-CimInstance -CimInstance $csp | Out-Null
}

function Invoke-AsSystem([string[]]$Arguments, [string]$LogFile) {
    # Runs this script as SYSTEM in a one-off scheduled task and waits for it (no PsExec needed).
    $name = "LabelAssist-ShellLauncher-" + [guid]::NewGuid().ToString("N").Substring(0, 8)
    $argLine = "-NoProfile -ExecutionPolicy Bypass -File `"$PSCommandPath`" " + ($Arguments -join " ")
    $action = New-ScheduledTaskAction -Execute "powershell.exe" -Argument $argLine
    $principal = New-ScheduledTaskPrincipal -UserId "NT AUTHORITY\SYSTEM" -LogonType ServiceAccount -RunLevel Highest
    Register-ScheduledTask -TaskName $name -Action $action -Principal $principal | Out-Null
    try {
        Start-ScheduledTask -TaskName $name
        $deadline = (Get-Date).AddMinutes(5)
        do {
            Start-Sleep -Seconds 2
            $state = (Get-ScheduledTask -TaskName $name).State
        } while ($state -eq "Running" -and (Get-Date) -lt $deadline)
        $result = (Get-ScheduledTaskInfo -TaskName $name).LastTaskResult
    } finally {
        Unregister-ScheduledTask -TaskName $name -Confirm:$false
    }
    if (Test-Path $LogFile) { Get-Content $LogFile | ForEach-Object { Write-Host "    $_" } }
    if ($result -ne 0) { throw "the SYSTEM step failed (task result $result); see $LogFile" }
}

# -- the SYSTEM-side step ------------------------------------------------------------------------
if ($PSCmdlet.ParameterSetName -eq "Apply") {
    Start-Transcript -Path $ApplyLog -Force | Out-Null
    try {
        if ($ApplyXml -eq "REMOVE") {
            $csp = Get-AssignedAccessCsp
            $csp.ShellLauncher = $null
            Set-CimInstance -CimInstance $csp | Out-Null
            Write-Host "Shell Launcher configuration removed"
        } else {
            Set-ShellLauncherXml -Xml (Get-Content -Path $ApplyXml -Raw -Encoding UTF8)
            Write-Host "Shell Launcher configuration applied:"
            Write-Host ([System.Net.WebUtility]::HtmlDecode((Get-AssignedAccessCsp).ShellLauncher))
        }
        Stop-Transcript | Out-Null
        exit 0
    } catch {
        Write-Host "FAILED: $_"
        Stop-Transcript | Out-Null
        exit 1
    }
}

# -- 1. edition ----------------------------------------------------------------------------------
$edition = (Get-ItemProperty "HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion").EditionID
Write-Step "Windows edition: $edition"
if ($SupportedEditions -notcontains $edition) {
    throw ("Shell Launcher needs Windows 11 Enterprise, Education or IoT Enterprise (this is '$edition'). " +
           "Nothing was changed.")
}

$logDir = Join-Path $env:ProgramData "LabelAssist-setup"
New-Item -ItemType Directory -Force -Path $logDir | Out-Null
$applyLog = Join-Path $logDir "shell-launcher.log"

if ($Remove) {
    Write-Step "Removing the Shell Launcher configuration (the bundle and the data stay)"
    if (Test-IsSystem) { Set-ShellLauncherXml -Xml "" } else { Invoke-AsSystem @("-ApplyXml", "REMOVE", "-ApplyLog", "`"$applyLog`"") $applyLog }
    Write-Host "Done. Restart the tablet; accounts get Explorer again."
    exit 0
}

# -- 1b. verify the bundle against its manifest --------------------------------------------------
$BundlePath = (Resolve-Path $BundlePath).Path
Write-Step "Verifying $BundlePath against MANIFEST.sha256"
# verify.ps1: deploy\verify.ps1 inside the bundle, or packaging\verify.ps1 in a source checkout
$verify = @((Join-Path $PSScriptRoot "..\verify.ps1"), (Join-Path $PSScriptRoot "..\..\packaging\verify.ps1")) |
    Where-Object { Test-Path $_ } | Select-Object -First 1
if (-not $verify) { throw "verify.ps1 was not found next to this script" }
& $verify -Bundle $BundlePath
if ($LASTEXITCODE -ne 0) { throw "the bundle does not match its manifest: do not deploy it. Nothing was changed." }

# -- 2. install the bundle (the data home is elsewhere and is never touched) ---------------------
Write-Step "Installing the bundle into $InstallDir"
if ((Resolve-Path $BundlePath).Path.TrimEnd("\") -ne $InstallDir.TrimEnd("\")) {
    Get-Process labelassist, labelassistw -ErrorAction SilentlyContinue | Stop-Process -Force
    $staging = "$InstallDir.new"
    if (Test-Path $staging) { Remove-Item -Recurse -Force $staging }
    New-Item -ItemType Directory -Force -Path (Split-Path $InstallDir) | Out-Null
    Copy-Item -Recurse -Path $BundlePath -Destination $staging
    if (Test-Path $InstallDir) { Remove-Item -Recurse -Force $InstallDir }
    Rename-Item -Path $staging -NewName (Split-Path $InstallDir -Leaf)
}
$exe = Join-Path $InstallDir "labelassist.exe"
$shellExe = Join-Path $InstallDir "labelassistw.exe"
foreach ($f in @($exe, $shellExe)) { if (-not (Test-Path $f)) { throw "$f is missing from the bundle" } }

# -- 3. data home --------------------------------------------------------------------------------
Write-Step "Data home $DataHome (LABELASSIST_HOME for every account)"
New-Item -ItemType Directory -Force -Path $DataHome | Out-Null
[Environment]::SetEnvironmentVariable("LABELASSIST_HOME", $DataHome, "Machine")
$env:LABELASSIST_HOME = $DataHome
# The Kiosk account (created by Shell Launcher) is a standard user: local Users may modify the data.
& icacls.exe $DataHome /grant "*S-1-5-32-545:(OI)(CI)M" /T /Q | Out-Null
$tomlTarget = Join-Path $DataHome "kiosk.toml"
if (-not (Test-Path $tomlTarget)) {
    if (Test-Path $KioskToml) { Copy-Item $KioskToml $tomlTarget; Write-Host "    kiosk.toml from $KioskToml" }
    else { Write-Host "    no kiosk.toml template found: defaults apply until one is written" }
} else {
    Write-Host "    kiosk.toml kept as it is"
}

# -- 4. admin PIN --------------------------------------------------------------------------------
if (-not $SkipPin) {
    Write-Step "Set the admin PIN (4 to 12 digits; it is stored as a salted hash only)"
    & $exe kiosk set-pin
    if ($LASTEXITCODE -ne 0) { throw "the PIN was not set" }
}

# -- 5. start project ----------------------------------------------------------------------------
if (-not $Project) { $Project = Join-Path $DataHome "projects\main" }
if (-not (Test-Path (Join-Path $Project "project.toml"))) {
    Write-Step "No project at $Project yet: creating the demo project there"
    & $exe demo --folder $Project --no-open
    if ($LASTEXITCODE -ne 0) { throw "the demo project could not be created in $Project" }
}

# -- 6. Shell Launcher feature -------------------------------------------------------------------
Write-Step "Enabling the Shell Launcher feature"
$feature = Get-WindowsOptionalFeature -Online -FeatureName "Client-EmbeddedShellLauncher"
if ($feature.State -ne "Enabled") {
    Enable-WindowsOptionalFeature -Online -FeatureName "Client-EmbeddedShellLauncher" -All -NoRestart | Out-Null
}

# -- 7. the configuration ------------------------------------------------------------------------
Write-Step "Applying the Shell Launcher configuration"
[xml]$doc = Get-Content -Path $ConfigXml -Raw -Encoding UTF8
$ns = New-Object System.Xml.XmlNamespaceManager($doc.NameTable)
$ns.AddNamespace("sl", "http://schemas.microsoft.com/ShellLauncher/2018/Configuration")
$shellNode = $doc.SelectSingleNode("//sl:Profile[@Id='$ProfileId']/sl:Shell", $ns)
if ($null -eq $shellNode) { throw "$ConfigXml has no kiosk profile $ProfileId" }
$shellNode.SetAttribute("Shell", "`"$shellExe`" kiosk `"$Project`"")
$final = Join-Path $logDir "ShellLauncher.applied.xml"
$doc.Save($final)
Write-Host "    shell: $($shellNode.GetAttribute('Shell'))"
if (Test-IsSystem) {
    Set-ShellLauncherXml -Xml (Get-Content -Path $final -Raw -Encoding UTF8)
} else {
    Invoke-AsSystem @("-ApplyXml", "`"$final`"", "-ApplyLog", "`"$applyLog`"") $applyLog
}

Write-Host ""
Write-Host "Done. Restart the tablet: it signs in the 'Kiosk' account and opens the labelling screen." -ForegroundColor Green
Write-Host "Service access: Ctrl+Alt+Del > Sign out > sign in with an admin account (Explorer)."
Write-Host "Update later: run this script again with the new bundle; $DataHome is kept."
