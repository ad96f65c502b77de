"""Manifest, zip and verification of the one-dir bundle (used by build.sh, build.ps1 and the tests).

    python packaging/bundle_tools.py stamp    DIR --version V [--commit C]   # DIR/VERSION.txt
    python packaging/bundle_tools.py manifest DIR          # DIR/MANIFEST.sha256, every file
    python packaging/bundle_tools.py verify   DIR          # exit 0 only if every file matches
    python packaging/bundle_tools.py zip      DIR OUT.zip  # + OUT.zip.sha256

``MANIFEST.sha256`` uses the ``sha256sum`` format (``<hex>  <path>``, paths with ``/``), so on a
Linux tablet ``cd labelassist && sha256sum -c --quiet MANIFEST.sha256`` checks it without Python,
and ``packaging/verify.ps1`` does the same on Windows. ``verify`` here also reports files that
are NOT in the manifest (something copied into the bundle folder by hand).

The zip keeps symbolic links as links (PyInstaller links some shared libraries on Linux) and the
executable bits, the way Info-ZIP ``unzip`` and ``bsdtar`` restore them. Entries are sorted and
dated from the newest file, so the same folder gives the same zip.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import stat
import sys
import time
import zipfile
from pathlib import Path

MANIFEST = "MANIFEST.sha256"
VERSION_FILE = "VERSION.txt"


def _files(folder: Path) -> list[Path]:
    """Every file and symlink under ``folder`` (sorted, POSIX order), the manifest excluded."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        root_path = Path(root)
        for d in list(dirs):  # a symlinked folder is listed as one entry, not walked
            if (root_path / d).is_symlink():
                out.append(root_path / d)
                dirs.remove(d)
        for name in sorted(files):
            path = root_path / name
            if path.relative_to(folder).as_posix() != MANIFEST:
                out.append(path)
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_stamp(folder: Path, version: str, commit: str = "") -> Path:
    import platform

    text = (f"labelassist {version}\n"
            f"commit {commit or 'unknown'}\n"
            f"built {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
            f"platform {sys.platform} {platform.machine()}\n"
            f"python {platform.python_version()}\n")
    path = folder / VERSION_FILE
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


def write_manifest(folder: Path) -> Path:
    lines = [f"{sha256(p)}  {p.relative_to(folder).as_posix()}" for p in _files(folder) if not p.is_dir()]
    path = folder / MANIFEST
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
    return path


def verify(folder: Path) -> list[str]:
    """Problems found (empty when the folder is exactly what the manifest lists)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return [f"{manifest} is missing"]
    problems, listed = [], set()
    for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, _, rel = line.partition("  ")
        if len(digest) != 64 or not rel:
            problems.append(f"{MANIFEST} line {n} is damaged")
            continue
        listed.add(rel)
        path = folder / rel
        if not path.exists():
            problems.append(f"missing: {rel}")
        elif sha256(path) != digest:
            problems.append(f"changed: {rel}")
    for p in _files(folder):
        rel = p.relative_to(folder).as_posix()
        if rel not in listed and not p.is_dir():
            problems.append(f"not in the manifest: {rel}")
    return problems


def make_zip(folder: Path, out: Path) -> Path:
    """Zip ``folder`` as ``<folder name>/...`` (links kept, modes kept); writes ``out.sha256``."""
    files = _files(folder)
    newest = max((p.lstat().st_mtime for p in files), default=time.time())
    date_time = time.gmtime(max(newest, 315532800))[:6]  # zip dates start in 1980
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    top = folder.name
    all_entries = files + ([folder / MANIFEST] if (folder / MANIFEST).is_file() else [])
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in sorted(all_entries, key=lambda p: p.relative_to(folder).as_posix()):
            rel = f"{top}/{path.relative_to(folder).as_posix()}"
            st = path.lstat()
            info = zipfile.ZipInfo(rel, date_time=date_time)
            info.create_system = 3  # Unix: unzip restores modes and links
            if stat.S_ISLNK(st.st_mode):
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                info.compress_type = zipfile.ZIP_STORED
                zf.writestr(info, os.readlink(path))
            else:
                info.external_attr = (stat.S_IFREG | (st.st_mode & 0o777)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(path, "rb") as src, zf.open(info, "w") as dst:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        dst.write(block)
    os.replace(tmp, out)
    Path(str(out) + ".sha256").write_text(f"{sha256(out)}  {out.name}\n", encoding="utf-8", newline="\n")
    return out


def folder_size(folder: Path) -> int:
    """Bytes on disk of the files (links not followed)."""
    return sum(p.lstat().st_size for p in _files(folder) if not p.is_symlink()) + \
        ((folder / MANIFEST).stat().st_size if (folder / MANIFEST).is_file() else 0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("stamp")
    p.add_argument("folder", type=Path)
    p.add_argument("--version", required=True)
    p.add_argument("--commit", default="")
    p = sub.add_parser("manifest")
    p.add_argument("folder", type=Path)
    p = sub.add_parser("verify")
    p.add_argument("folder", type=Path)
    p = sub.add_parser("zip")
    p.add_argument("folder", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("size")
    p.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "stamp":
        print(write_stamp(args.folder, args.version, args.commit))
    elif args.cmd == "manifest":
        path = write_manifest(args.folder)
        print(f"{path}: {sum(1 for _ in path.open(encoding='utf-8'))} files")
    elif args.cmd == "verify":
        problems = verify(args.folder)
        for line in problems[:50]:
            print(line)
        if problems:
            print(f"{args.folder}: {len(problems)} problem(s); do not deploy this copy", file=sys.stderr)
            return 1
        print(f"{args.folder}: every file matches {MANIFEST}")
    elif args.cmd == "zip":
        out = make_zip(args.folder, args.out)
        print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    elif args.cmd == "size":
        print(folder_size(args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
