"""Builds the Lambda artifacts: one code zip (all functions) and the layers of artifact_config.PACKAGE.

    python -m eventpipe.deploy.artifacts build --out build/artifacts [--runtime python3.12]

prints a size table and exits non-zero when a wheel is missing for the runtime,
a pin differs from the tests' or a size is over a limit. The deploy command and
the template generator call :func:`build_artifacts`. Wheels, layers and staged
dependencies are cached under ``~/.cache/eventpipe/artifacts`` (``EVENTPIPE_CACHE_DIR``),
keyed by everything they are made from, so a rebuild with unchanged pins only
re-zips app.py and chalicelib/; entries unused for 14 days are removed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Sequence

from eventpipe.deploy import assemble, staging
from eventpipe.deploy.artifact_config import (LAMBDA_UNZIPPED_LIMIT, LAMBDA_ZIP_LIMIT, MIB, PACKAGE, UNZIPPED_BUDGET, budget,
                                              FunctionSpec, PackageSpec, RuntimeSpec, runtime_spec)
from eventpipe.deploy.artifact_errors import PackagingError, SizeError
from eventpipe.deploy.dist_plan import plan_distributions
from eventpipe.deploy.interpreters import find_python
from eventpipe.deploy.wheels import install_pinned, read_requirements, resolve_site

ROOT = Path(__file__).resolve().parents[2]


def default_cache_dir() -> Path:
    base = os.environ.get("EVENTPIPE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "eventpipe")
    return Path(base) / "artifacts"


@dataclass(frozen=True)
class ArtifactFiles:
    """The zips to deploy (the seam with eventpipe/deploy/artifacts.py's ``build_artifacts``).

    Attributes:
        code: chalice function name -> code zip (several functions may share one zip).
        layers: layer name -> layer zip.
    """

    code: Mapping[str, Path]
    layers: Mapping[str, Path]
    #: function -> the names of its layers, in order (the artifact config's assignment).
    function_layers: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class ZipArtifact:
    """One zip: its name (``code`` or a layer's), path and sizes in bytes."""

    name: str
    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    files: int
    sha256: str


@dataclass(frozen=True)
class Artifacts:
    """What :func:`build_artifacts` made: the code zip, the layers and which function uses which."""

    runtime: str
    python_version: str
    out_dir: Path
    code: ZipArtifact
    layers: Mapping[str, ZipArtifact]
    functions: Mapping[str, FunctionSpec]
    bytecode: bool
    placement: Mapping[str, str]
    left_out: Mapping[str, str]
    versions: Mapping[str, str]

    def deploy_files(self):
        """The seam with ``eventpipe.deploy.commands.deploy``: every function's zip and its layers."""
        return ArtifactFiles(code={name: self.code.path for name in self.functions},
                             layers={name: z.path for name, z in self.layers.items()},
                             function_layers={name: spec.layers for name, spec in self.functions.items()})

    def function_layers(self, name: str) -> tuple[ZipArtifact, ...]:
        return tuple(self.layers[layer] for layer in self.functions[name].layers)

    def function_unzipped_bytes(self, name: str) -> int:
        return self.code.unzipped_bytes + sum(layer.unzipped_bytes for layer in self.function_layers(name))

    def size_problems(self) -> list[str]:
        """Every zip over 50 MiB zipped, every function over the 200 MiB budget unzipped."""
        problems = [f"{z.path.name}: {z.zipped_bytes / MIB:.1f} MiB zipped > {LAMBDA_ZIP_LIMIT / MIB:.0f} MiB"
                    for z in (self.code, *self.layers.values()) if z.zipped_bytes > LAMBDA_ZIP_LIMIT]
        for name in self.functions:
            size = self.function_unzipped_bytes(name)
            if size > budget(name):
                problems.append(f"{name}: {size / MIB:.1f} MiB unzipped with its layers > budget "
                                f"{budget(name) / MIB:.0f} MiB (Lambda: {LAMBDA_UNZIPPED_LIMIT / MIB:.0f})")
        return problems

    def table(self) -> str:
        """The size table: each zip, then each function with its layers."""
        lines = [f"artifacts for {self.runtime} in {self.out_dir} (byte code: {'yes' if self.bytecode else 'no'})",
                 f"{'zip':<24}{'zipped MiB':>12}{'unzipped MiB':>14}{'files':>8}"]
        for z in (self.code, *self.layers.values()):
            lines.append(f"{z.path.name:<24}{z.zipped_bytes / MIB:>12.1f}{z.unzipped_bytes / MIB:>14.1f}{z.files:>8}")
        lines.append(f"{'function':<20}{'layers':<24}{'unzipped MiB':>14}{'budget':>8}")
        for name, spec in self.functions.items():
            lines.append(f"{name:<20}{','.join(spec.layers) or '-':<24}"
                         f"{self.function_unzipped_bytes(name) / MIB:>14.1f}{budget(name) / MIB:>8.0f}")
        return "\n".join(lines)

    def manifest(self) -> dict:
        def entry(z: ZipArtifact) -> dict:
            return {"file": z.path.name, "zipped_bytes": z.zipped_bytes, "unzipped_bytes": z.unzipped_bytes,
                    "files": z.files, "sha256": z.sha256}

        return {"runtime": self.runtime, "bytecode": self.bytecode, "code": entry(self.code),
                "layers": {name: entry(z) for name, z in self.layers.items()},
                "functions": {name: {"handler": f.handler, "kind": f.kind, "layers": list(f.layers),
                                     "unzipped_bytes": self.function_unzipped_bytes(name)}
                              for name, f in self.functions.items()},
                "distributions": {name: {"version": self.versions[name], "in": place}
                                  for name, place in self.placement.items()},
                "left_out": dict(self.left_out)}


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks (zip identities, content-addressed uploads)."""
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _artifact(name: str, path: Path) -> ZipArtifact:
    stats = staging.zip_stats(path)
    return ZipArtifact(name, path, stats.zipped_bytes, stats.unzipped_bytes, stats.files, file_sha256(path))


def _copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)  # cached layers are never modified in place
    except OSError:
        shutil.copyfile(src, dst)


def build_front_end(project_dir: Path) -> None:
    """Build the dashboard's front-end libraries (npm, git-ignored) into chalicelib/ before the code zip takes it.

    ``scripts/build-dashboard.sh`` skips when the files are up to date; a project without it has no dashboard.
    """
    script = Path(project_dir) / "scripts" / "build-dashboard.sh"
    if script.exists():
        subprocess.run(["bash", str(script)], check=True)


def build_artifacts(out_dir: str | Path, runtime: str | RuntimeSpec | None = None, *,
                    package: PackageSpec = PACKAGE, project_dir: Path = ROOT, cache_dir: Path | None = None,
                    python: str | None = None, pip_options: Sequence[str] = (), check: bool = True) -> Artifacts:
    """Builds (or reuses from the cache) every artifact for ``runtime`` into ``out_dir``.

    Args:
        out_dir: Receives ``code.zip``, ``layer-<name>.zip`` and ``manifest.json``.
        runtime: A runtime name of ``artifact_config.RUNTIMES`` or a spec; default ``package.runtime``.
        package: What goes where (``artifact_config.PACKAGE``).
        project_dir: The repository root (requirements.txt, constraints.txt, app.py, chalicelib/).
        cache_dir: Default ``~/.cache/eventpipe/artifacts``.
        python: The target interpreter for byte code; found on PATH/pyenv when None, skipped when absent.
        pip_options: Extra pip options (an index, ``--no-index --find-links DIR``).
        check: Raise :class:`SizeError` when a size is over a limit.

    Raises:
        MissingWheelError: A pinned distribution has no wheel for the runtime.
        PinError: A resolved version is not the tests' pin.
        ConfigError: ``package`` names distributions or layers that do not exist.
        SizeError: With ``check``, a zip or a function is over its limit.
    """
    spec = runtime if isinstance(runtime, RuntimeSpec) else runtime_spec(runtime or package.runtime)
    cache_dir = cache_dir or default_cache_dir()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unknown = sorted({layer for f in package.functions for layer in f.layers} - {l.name for l in package.layers})
    if unknown:
        raise PackagingError(f"functions use undefined layers: {', '.join(unknown)}")
    site = resolve_site(project_dir, spec, cache_dir, pip_options)
    chalice = install_pinned(["chalice"], project_dir, spec, cache_dir, with_deps=False, pip_options=pip_options)
    roots = list(read_requirements(project_dir / "requirements.txt", spec))
    plan = plan_distributions(site.distributions, roots, package)
    if python is None and package.compile_bytecode:
        python = find_python(spec.python)
        if python is None:
            print(f"artifacts: no python{spec.python} here: building without byte code", file=sys.stderr)
    builder = assemble.builder_key(package, python)
    layers = {}
    for layer in package.layers:
        cached = assemble.layer_zip(site, plan, layer.name, package, python, cache_dir,
                            assemble.digest(site.key, builder, layer.name))
        _copy(cached, out / cached.name)
        layers[layer.name] = _artifact(layer.name, out / cached.name)
    build_front_end(project_dir)
    assemble.code_zip(site, chalice, plan, package, project_dir, python, cache_dir,
                      assemble.digest(site.key, chalice.key, builder, "code"), out / "code.zip")
    artifacts = Artifacts(
        runtime=spec.name, python_version=spec.python, out_dir=out, code=_artifact("code", out / "code.zip"),
        layers=MappingProxyType(layers), functions=MappingProxyType({f.name: f for f in package.functions}),
        bytecode=python is not None, placement=plan.placement, left_out=plan.left_out,
        versions=MappingProxyType({n: d.version for n, d in site.distributions.items()}))
    (out / "manifest.json").write_text(json.dumps(artifacts.manifest(), indent=2) + "\n")
    assemble.prune_cache(cache_dir)
    if check and (problems := artifacts.size_problems()):
        raise SizeError("artifacts over their limits:\n  " + "\n  ".join(problems))
    return artifacts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eventpipe.deploy.artifacts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the code zip and the layers, print their sizes")
    build.add_argument("--out", default="build/artifacts")
    build.add_argument("--runtime", default=PACKAGE.runtime)
    build.add_argument("--python", help="target interpreter for byte code (default: found on PATH/pyenv)")
    build.add_argument("--project-dir", type=Path, default=ROOT, help="the repository root (default: this one)")
    build.add_argument("--cache-dir", type=Path, help="default ~/.cache/eventpipe/artifacts")
    build.add_argument("--pip-option", action="append", default=[], metavar="OPT",
                       help="extra pip option, repeatable (e.g. --pip-option=--index-url=URL)")
    args = parser.parse_args(argv)
    try:
        artifacts = build_artifacts(args.out, args.runtime, python=args.python, project_dir=args.project_dir,
                                    cache_dir=args.cache_dir, pip_options=args.pip_option, check=False)
    except (PackagingError, KeyError) as exc:
        print(f"artifacts: {exc}", file=sys.stderr)
        return 1
    print(artifacts.table())
    for name, reason in artifacts.left_out.items():
        print(f"left out {name}: {reason}")
    problems = artifacts.size_problems()
    for problem in problems:
        print(f"artifacts: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
