"""Resolves the pinned wheels for a Lambda runtime (never the local interpreter's) into a cached directory.

pip runs with ``--only-binary=:all: --platform manylinux_... --implementation cp
--python-version X.Y --abi cpXY --target DIR`` on requirements.txt with
constraints.txt (the pins the tests use), so a distribution without a wheel for
the target stops packaging with :class:`MissingWheelError` naming it. What pip
installed is then read back from the ``*.dist-info`` records.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from eventpipe.deploy.artifact_config import RuntimeSpec
from eventpipe.deploy.artifact_errors import MissingWheelError, PackagingError, PinError

_NO_MATCH = re.compile(r"No matching distribution found for ([^\s;]+)")
_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement ([^\s;]+)")


@dataclass(frozen=True)
class Distribution:
    """One installed distribution: canonical name, version, files (POSIX, relative to the site), needs."""

    name: str
    version: str
    files: tuple[str, ...]
    requires: tuple[str, ...]


@dataclass(frozen=True)
class Site:
    """A directory pip installed the target's wheels into, and what it holds."""

    path: Path
    key: str
    runtime: RuntimeSpec
    distributions: Mapping[str, Distribution]


def target_environment(runtime: RuntimeSpec) -> dict[str, str]:
    """PEP 508 marker values of the Lambda runtime (not of this interpreter)."""
    env = default_environment()
    env.update(python_version=runtime.python, python_full_version=f"{runtime.python}.0", os_name="posix",
               sys_platform="linux", platform_system="Linux", platform_machine=runtime.architecture,
               implementation_name="cpython", platform_python_implementation="CPython",
               implementation_version=f"{runtime.python}.0")
    return env


def read_requirements(path: Path, runtime: RuntimeSpec) -> dict[str, str]:
    """``name -> version`` of the ``name==version`` lines whose markers hold on the runtime.

    Raises:
        PinError: A line is not an exact pin (``==``).
    """
    env = target_environment(runtime)
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise PinError(f"{path.name}:{number}: {exc}") from None
        if requirement.marker is not None and not requirement.marker.evaluate(env):
            continue
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise PinError(f"{path.name}:{number}: {line!r} is not pinned with ==")
        pins[canonicalize_name(requirement.name)] = specs[0].version
    return pins


def pip_install_command(runtime: RuntimeSpec, target: Path, args: Sequence[str],
                        pip_options: Sequence[str] = ()) -> list[str]:
    """The pip command that installs wheels for ``runtime`` (and only wheels) into ``target``."""
    platforms = [item for tag in runtime.platforms for item in ("--platform", tag)]
    return [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
            "--only-binary=:all:", "--no-compile", "--target", str(target), "--implementation", "cp",
            "--python-version", runtime.python, "--abi", runtime.abi, *platforms, *pip_options, *args]


def _missing(output: str, pins: Mapping[str, str]) -> list[str]:
    """The requirements pip found no distribution for, from either of its two ways of saying so."""
    found = [m.group(1) for m in _NO_MATCH.finditer(output)] or [m.group(1) for m in _NO_VERSION.finditer(output)]
    lines = output.splitlines()
    for number, line in enumerate(lines):
        if "have no matching distributions available for your environment" in line:
            for name in lines[number + 1:]:
                if not name.startswith(" ") or not name.strip():
                    break
                key = canonicalize_name(name.strip())
                found.append(f"{name.strip()}=={pins[key]}" if key in pins else name.strip())
    return list(dict.fromkeys(found))


def run_pip(command: Sequence[str], runtime: RuntimeSpec, pins: Mapping[str, str] | None = None) -> None:
    """Runs pip; a missing wheel raises :class:`MissingWheelError`, any other failure :class:`PackagingError`."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return
    output = (done.stderr + done.stdout).strip()
    tail = "\n".join(output.splitlines()[-15:])
    missing = _missing(output, pins or {})
    if missing:
        raise MissingWheelError(missing[0], runtime.name, tail, tuple(missing))
    raise PackagingError(f"pip failed for {runtime.name} (exit {done.returncode}):\n{tail}")


def _relative(path: Path, site: Path) -> str | None:
    full = (site / path).resolve()
    try:
        return full.relative_to(site.resolve()).as_posix()
    except ValueError:  # a console script pip put beside the target: never shipped
        return None


def scan_site(path: Path, runtime: RuntimeSpec) -> dict[str, Distribution]:
    """The distributions installed under ``path``, with their files and (marker-evaluated) requirements."""
    env = {**target_environment(runtime), "extra": ""}
    found: dict[str, Distribution] = {}
    for dist in metadata.distributions(path=[str(path)]):
        name = canonicalize_name(dist.metadata["Name"])
        files = tuple(sorted(rel for item in dist.files or () if (rel := _relative(Path(item), path))))
        requires = []
        for line in dist.requires or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(env):
                requires.append(canonicalize_name(requirement.name))
        found[name] = Distribution(name, dist.version, files, tuple(sorted(set(requires))))
    return found


def check_pins(distributions: Mapping[str, Distribution], constraints: Mapping[str, str],
               requirements: Mapping[str, str]) -> None:
    """Every resolved distribution must carry exactly the version the tests install.

    The tests install requirements.txt with constraints.txt, so a pin is either file's
    (both must agree when both pin a distribution).

    Raises:
        PinError: Naming each unpinned or differing distribution.
    """
    problems = []
    for name, version in sorted(requirements.items()):
        if constraints.get(name, version) != version:
            problems.append(f"{name}: requirements.txt pins {version}, constraints.txt {constraints[name]}")
    for name, dist in sorted(distributions.items()):
        pinned = constraints.get(name) or requirements.get(name)
        if pinned is None:
            problems.append(f"{name} {dist.version} is not pinned in constraints.txt or requirements.txt")
        elif pinned != dist.version:
            problems.append(f"{name}: resolved {dist.version}, the tests pin {pinned}")
    if problems:
        raise PinError("the artifacts would not use the tests' pins:\n  " + "\n  ".join(problems))


def _digest(parts: Iterable[str]) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part.encode())
        sha.update(b"\0")
    return sha.hexdigest()[:20]


def pip_version() -> str:
    return metadata.version("pip")


def _install_cached(cache_dir: Path, kind: str, key: str, runtime: RuntimeSpec, args: Sequence[str],
                    pip_options: Sequence[str], pins: Mapping[str, str]) -> Path:
    final = cache_dir / kind / key
    if (final / ".complete").exists():
        (final / ".complete").touch()  # last use, for assemble.prune_cache
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        run_pip(pip_install_command(runtime, staging / "site", args, pip_options), runtime, pins)
        (staging / "site" / ".complete").write_text(key)
        if not (final / ".complete").exists():  # else another build finished it meanwhile: keep that one
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging / "site", final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def resolve_site(project_dir: Path, runtime: RuntimeSpec, cache_dir: Path, pip_options: Sequence[str] = (),
                 requirements_file: str = "requirements.txt", constraints_file: str = "constraints.txt") -> Site:
    """Installs requirements.txt (with constraints.txt) for ``runtime`` into a cache directory.

    The directory is keyed by the runtime, both files, pip's version and ``pip_options``,
    so an unchanged input is never downloaded or installed twice.

    Raises:
        MissingWheelError: A pinned distribution has no wheel for the runtime.
        PinError: Something resolved is unpinned or pinned differently from the tests.
    """
    requirements_path, constraints_path = project_dir / requirements_file, project_dir / constraints_file
    key = _digest([repr(runtime), pip_version(), *pip_options, requirements_path.read_text(),
                   constraints_path.read_text()])
    constraints = read_requirements(constraints_path, runtime)
    requirements = read_requirements(requirements_path, runtime)
    args = ["-r", str(requirements_path), "-c", str(constraints_path)]
    path = _install_cached(cache_dir, "site", key, runtime, args, pip_options, {**requirements, **constraints})
    distributions = scan_site(path, runtime)
    check_pins(distributions, constraints, requirements)
    return Site(path, key, runtime, MappingProxyType(distributions))


def install_pinned(names: Sequence[str], project_dir: Path, runtime: RuntimeSpec, cache_dir: Path, *,
                   with_deps: bool, pip_options: Sequence[str] = (),
                   constraints_file: str = "constraints.txt") -> Site:
    """Installs distributions at their constraints.txt pins for ``runtime`` (e.g. chalice, boto3), cached.

    Raises:
        PinError: A name has no pin in constraints.txt.
        MissingWheelError: No wheel for the runtime.
    """
    constraints_path = project_dir / constraints_file
    pins = read_requirements(constraints_path, runtime)
    missing = [name for name in names if canonicalize_name(name) not in pins]
    if missing:
        raise PinError(f"not pinned in {constraints_file}: {', '.join(missing)}")
    wanted = [f"{name}=={pins[canonicalize_name(name)]}" for name in names]
    args = [*wanted, "-c", str(constraints_path)] if with_deps else ["--no-deps", *wanted]
    key = _digest([repr(runtime), pip_version(), *pip_options, *wanted,
                   constraints_path.read_text() if with_deps else "--no-deps"])
    path = _install_cached(cache_dir, "pinned", key, runtime, args, pip_options, pins)
    distributions = scan_site(path, runtime)
    if with_deps:
        check_pins(distributions, pins, {})
    return Site(path, key, runtime, MappingProxyType(distributions))
