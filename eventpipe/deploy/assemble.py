"""Assembles the contents of the artifacts from resolved wheels and this repository (cached by key)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

from eventpipe.deploy import staging
from eventpipe.deploy.artifact_config import PackageSpec
from eventpipe.deploy.dist_plan import CODE, DistributionPlan
from eventpipe.deploy.wheels import Site

CHALICE_RUNTIME_FILES = ("chalice/__init__.py", "chalice/app.py")  # what `chalice package` vendors
#: The modules whose code decides what a cached layer or staged directory holds.
_BUILDER_SOURCES = ("assemble.py", "dist_plan.py", "staging.py", "wheels.py")


def digest(*parts: str | bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part if isinstance(part, bytes) else part.encode())
        sha.update(b"\0")
    return sha.hexdigest()[:20]


_digest = digest


def builder_key(package: PackageSpec, python: str | None) -> str:
    """What the cached layers and staged dependencies depend on besides the wheels: the config, the
    target interpreter and the code that assembles them (not the CLI or the reports)."""
    here = Path(__file__).resolve().parent
    return _digest(repr(package), python or "no-bytecode", *((here / name).read_bytes() for name in _BUILDER_SOURCES))


def _stage_distributions(site: Site, names: Sequence[str], dest: Path, package: PackageSpec) -> None:
    for name in names:
        dist = site.distributions[name]
        drop = (*package.drop_files, *package.drop_files_by_distribution.get(name, ()))
        files = [f for f in dist.files if not staging.matches(f, drop)]
        staging.copy_files(site.path, files, dest)
        if name in package.strip_distributions:
            staging.strip_elf_files(dest, files)


def _stage_compiled(site: Site, names: Sequence[str], tmp: Path, package: PackageSpec, python: str | None,
                    recorded_root: str) -> list[Path]:
    """Stages distributions (byte code only unless ``keep_sources``); returns the directories to zip."""
    keep = [n for n in names if n in package.keep_sources or python is None]
    groups = {tmp / "sourceless": [n for n in names if n not in keep], tmp / "sources": keep}
    for root, members in groups.items():
        root.mkdir(parents=True)
        _stage_distributions(site, members, root, package)
        if python and members:
            staging.compile_bytecode(python, root, recorded_root, sourceless=root.name == "sourceless")
    return list(groups)


def _cached_dir(cache_dir: Path, kind: str, key: str, build) -> Path:
    """A directory built once per key by ``build(tmp_dir)`` and kept under the cache."""
    final = cache_dir / kind / key
    if (final / ".complete").exists():
        (final / ".complete").touch()  # last use, for prune_cache
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        build(tmp)
        (tmp / ".complete").write_text(key)
        if not (final / ".complete").exists():  # else another build finished it meanwhile: keep that one
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def layer_zip(site: Site, plan: DistributionPlan, layer: str, package: PackageSpec, python: str | None,
               cache_dir: Path, key: str) -> Path:
    def build(tmp: Path) -> None:
        roots = _stage_compiled(site, plan.members(layer), tmp / "content", package, python, "/opt/python")
        staging.write_zip(tmp / f"layer-{layer}.zip", roots, prefix="python")
        shutil.rmtree(tmp / "content")

    return _cached_dir(cache_dir, "layers", key, build) / f"layer-{layer}.zip"


def project_files(project_dir: Path, package: PackageSpec) -> list[str]:
    """The files of this repository that go into the code zip: the one rule of artifact_config.PACKAGE."""
    return staging.select_files(project_dir, package.code_include, package.code_exclude)


def code_zip(site: Site, chalice: Site, plan: DistributionPlan, package: PackageSpec, project_dir: Path,
              python: str | None, cache_dir: Path, key: str, out: Path) -> staging.ZipStats:
    def build_deps(tmp: Path) -> None:
        _stage_compiled(site, plan.members(CODE), tmp, package, python, "/var/task")

    deps = _cached_dir(cache_dir, "code-deps", key, build_deps)
    with tempfile.TemporaryDirectory(prefix="eventpipe-code-") as tmp:
        own = Path(tmp)
        staging.copy_files(project_dir, project_files(project_dir, package), own)
        staging.copy_files(chalice.path, CHALICE_RUNTIME_FILES, own)
        if python:
            staging.compile_bytecode(python, own, "/var/task")
        return staging.write_zip(out, [deps / "sourceless", deps / "sources", own], compresslevel=9)


def prune_cache(cache_dir: Path, max_age_days: float = 14) -> list[Path]:
    """Removes cache entries (wheels, layers, staged dependencies) unused for ``max_age_days``."""
    removed = []
    cutoff = time.time() - max_age_days * 86400
    for kind in ("site", "pinned", "layers", "code-deps"):
        for entry in sorted((cache_dir / kind).glob("*")) if (cache_dir / kind).is_dir() else ():
            marker = entry / ".complete"
            if entry.is_dir() and not entry.name.startswith(".") and marker.exists() \
                    and marker.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed
