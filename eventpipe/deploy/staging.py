"""File-level steps of the builder: select, trim, strip, byte-compile and zip (reproducibly)."""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from eventpipe.deploy.artifact_errors import PackagingError, ToolMissingError

#: Zip entries get this timestamp, so the same inputs give byte-identical zips (and CloudFormation no update).
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_ELF_MAGIC = b"\x7fELF"


@functools.lru_cache(maxsize=None)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a POSIX glob where ``**`` spans directories and ``*`` does not."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, patterns: Iterable[str]) -> bool:
    return any(glob_regex(pattern).match(path) for pattern in patterns)


def select(paths: Iterable[str], include: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """The paths matching an ``include`` glob and no ``exclude`` glob, sorted."""
    return sorted(p for p in paths if matches(p, include) and not matches(p, exclude))


def select_files(root: Path, include: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """The files under ``root`` that :func:`select` keeps, walking only where an ``include`` can match."""
    candidates: set[str] = set()
    for pattern in include:
        parts = pattern.split("/")
        fixed = list(itertools.takewhile(lambda part: not any(c in part for c in "*?["), parts))
        base = root.joinpath(*fixed) if fixed else root
        if base.is_file():
            candidates.add(base.relative_to(root).as_posix())
        elif base.is_dir():
            prefix = "/".join(fixed)
            candidates.update(f"{prefix}/{rel}" if prefix else rel for rel in walk_files(base))
    return select(candidates, include, exclude)


def walk_files(root: Path) -> Iterator[str]:
    """Every regular file under ``root`` as a POSIX path relative to it."""
    for directory, _, names in os.walk(root):
        for name in names:
            full = Path(directory, name)
            if full.is_file():
                yield full.relative_to(root).as_posix()


def copy_files(source_root: Path, paths: Iterable[str], dest_root: Path) -> int:
    """Copies ``paths`` (relative) from one root to another; returns the bytes copied."""
    total = 0
    for rel in paths:
        src, dst = source_root / rel, dest_root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o755 if os.access(src, os.X_OK) else 0o644)
        total += dst.stat().st_size
    return total


def is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == _ELF_MAGIC


def strip_elf_files(root: Path, paths: Iterable[str]) -> int:
    """``strip --strip-unneeded`` the ELF files among ``paths``; returns the bytes saved.

    auditwheel's vendored libraries (``*.libs/``) are never touched: patchelf moved
    their segments and strip would break them ("ELF load command ... not page-aligned").

    Raises:
        ToolMissingError: ``strip`` (binutils) is not installed.
    """
    targets = [root / p for p in paths if ".libs/" not in p and is_elf(root / p)]
    if not targets:
        return 0
    tool = shutil.which("strip")
    if tool is None:
        raise ToolMissingError("strip (binutils) is needed to build the layers: apt-get install binutils")
    before = sum(t.stat().st_size for t in targets)
    for start in range(0, len(targets), 200):
        chunk = targets[start:start + 200]
        done = subprocess.run([tool, "--strip-unneeded", *map(str, chunk)], capture_output=True, text=True)
        if done.returncode != 0:
            raise PackagingError(f"strip failed: {done.stderr.strip()}")
    return before - sum(t.stat().st_size for t in targets)


def compile_bytecode(python: str, root: Path, recorded_root: str, sourceless: bool = False) -> None:
    """Byte-compiles every ``.py`` under ``root`` with the target interpreter.

    ``unchecked-hash`` pycs are used as they are: Lambda's file system is read-only, so
    without them every cold start recompiles each module, and the artifacts are immutable,
    so a source check buys nothing. ``recorded_root`` (``/var/task``, ``/opt/python``)
    replaces the build path in the code objects; PYTHONHASHSEED=0 makes the output
    reproducible. ``sourceless``: legacy ``x.pyc`` beside each module, and the ``.py`` removed.

    Raises:
        PackagingError: A file does not compile.
    """
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"}
    done = subprocess.run([python, "-S", "-s", "-m", "compileall", "-q", "-j", "0", *(["-b"] if sourceless else []),
                           "--invalidation-mode", "unchecked-hash", "-s", str(root), "-p", recorded_root, str(root)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise PackagingError(f"byte-compiling {root} failed:\n{(done.stdout + done.stderr)[-2000:]}")
    if sourceless:
        for rel in list(walk_files(root)):
            if rel.endswith(".py") and (root / (rel + "c")).exists():
                (root / rel).unlink()


@dataclass(frozen=True)
class ZipStats:
    """A written zip: where, how large zipped and unzipped (bytes), how many files."""

    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    files: int


def write_zip(path: Path, roots: Sequence[Path], prefix: str = "", compresslevel: int = 6) -> ZipStats:
    """Zips every file under the ``roots`` (merged, sorted, fixed timestamps, unix modes) at ``prefix/``.

    Raises:
        PackagingError: A path is in two roots, or a root holds a symlink (Lambda would not keep it).
    """
    entries: dict[str, Path] = {}
    origin: dict[str, Path] = {}
    for root in roots:
        for directory, dirs, names in os.walk(root):
            for name in dirs + names:
                if Path(directory, name).is_symlink():
                    raise PackagingError(f"symlink in an artifact: {Path(directory, name).relative_to(root)}")
        for rel in walk_files(root):
            if rel in entries:
                raise PackagingError(f"{rel} comes from both {origin[rel]} and {root}")
            entries[rel], origin[rel] = root / rel, root
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".zip.tmp")
    unzipped = 0
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as archive:
        for rel in sorted(entries):
            full = entries[rel]
            info = zipfile.ZipInfo(f"{prefix}/{rel}" if prefix else rel, date_time=ZIP_EPOCH)
            info.create_system = 3
            info.external_attr = (0o100755 if os.access(full, os.X_OK) else 0o100644) << 16
            data = full.read_bytes()
            unzipped += len(data)
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=compresslevel)
    os.replace(tmp, path)
    return ZipStats(path, path.stat().st_size, unzipped, len(entries))


def zip_stats(path: Path) -> ZipStats:
    """Sizes of an existing zip, read from its central directory."""
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
    return ZipStats(path, path.stat().st_size, sum(i.file_size for i in infos), len(infos))
