"""Runs handlers from the built artifacts the way Lambda would, against local servers.

Each function's code zip is unpacked as ``var/task`` and its layers into ``opt``
(``opt/python``); the handler runs in ``python3.X -I -S -B`` (see lambda_bootstrap.py),
whose ``sys.path`` holds only those directories, a directory with the pinned boto3
(Lambda's ``/var/runtime``) and the standard library. Nothing of this checkout or
of any site-packages is importable there, so a module missing from the artifacts fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from eventpipe.deploy import staging
from eventpipe.deploy.artifact_config import RUNTIMES, RuntimeSpec
from eventpipe.deploy.artifact_errors import ToolMissingError
from eventpipe.deploy.artifacts import ROOT, Artifacts, default_cache_dir
from eventpipe.deploy.interpreters import find_python
from eventpipe.deploy.wheels import install_pinned

BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
#: What the Python runtime brings besides the standard library (its /var/runtime).
RUNTIME_DISTRIBUTIONS = ("boto3",)


class FunctionError(AssertionError):
    """A handler raised (or its module failed to import) inside the sandbox."""


@dataclass(frozen=True)
class FunctionRun:
    """One sandboxed process: the bootstrap's response, the function's output and the wall time."""

    function: str
    response: dict
    output: str
    wall_ms: float

    def results(self) -> list:
        """The handler's return values, in order.

        Raises:
            FunctionError: The module failed to import or an invocation raised.
        """
        if "init_error" in self.response:
            raise FunctionError(f"{self.function}: init failed:\n{self.response['init_error']['traceback']}"
                                f"\n--- output ---\n{self.output[-3000:]}")
        values = []
        for number, outcome in enumerate(self.response["invocations"]):
            if "error" in outcome:
                raise FunctionError(f"{self.function}: invocation {number} raised:\n"
                                    f"{outcome['error']['traceback']}\n--- output ---\n{self.output[-3000:]}")
            values.append(outcome["result"])
        return values


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_runtime() -> RuntimeSpec:
    """A runtime spec for this machine's Python and glibc: for running the handlers here when the
    target's Python is not installed (same pins, wheels for the local interpreter)."""
    glibc = tuple(int(p) for p in platform.libc_ver()[1].split(".")[:2]) or (2, 17)
    version = "%d.%d" % sys.version_info[:2]
    return RuntimeSpec(f"python{version}", version, glibc, f"this machine ({platform.platform()})",
                       platform.machine())


def runtime_python(runtime: RuntimeSpec) -> str:
    """The installed interpreter of the runtime's Python version.

    Raises:
        ToolMissingError: It is not installed (build a second set for the local Python, see README).
    """
    python = find_python(runtime.python)
    if python is None:
        raise ToolMissingError(f"python{runtime.python} is not installed: cannot run the {runtime.name} artifacts")
    return python


def lambda_runtime_dir(runtime: RuntimeSpec, python: str, cache_dir: Path | None = None,
                       project_dir: Path = ROOT) -> Path:
    """A stand-in for Lambda's /var/runtime: the pinned boto3 and its dependencies, byte-compiled."""
    cache_dir = cache_dir or default_cache_dir()
    site = install_pinned(RUNTIME_DISTRIBUTIONS, project_dir, runtime, cache_dir, with_deps=True)
    marker = site.path / f".compiled-{runtime.python}"
    if not marker.exists():
        staging.compile_bytecode(python, site.path, "/var/runtime")
        marker.write_text(python)
    return site.path


def unpack(zip_path: Path, dest: Path) -> None:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(dest)
        for info in archive.infolist():  # zipfile drops the modes: restore them as Lambda does
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(dest / info.filename, mode)


def chalice_environment(project_dir: Path = ROOT, stage: str = "dev") -> dict[str, str]:
    """The environment variables .chalice/config.json gives the functions of a stage."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    return {**config.get("environment_variables", {}),
            **config.get("stages", {}).get(stage, {}).get("environment_variables", {})}


@dataclass
class Sandbox:
    """Unpacked artifacts (once per distinct set of layers) and the means to run their handlers."""

    artifacts: Artifacts
    root: Path
    python: str
    runtime_dir: Path
    env: Mapping[str, str]
    _unpacked: dict[tuple[str, ...], tuple[Path, Path]] = field(default_factory=dict)

    @classmethod
    def create(cls, artifacts: Artifacts, root: Path, env: Mapping[str, str],
               cache_dir: Path | None = None) -> "Sandbox":
        spec = RUNTIMES.get(artifacts.runtime) or local_runtime()
        python = runtime_python(spec)
        return cls(artifacts, root, python, lambda_runtime_dir(spec, python, cache_dir), dict(env))

    def dirs(self, function: str) -> tuple[Path, Path]:
        """``(task, opt)`` of a function: its code zip and exactly its layers, unpacked."""
        layers = self.artifacts.functions[function].layers
        if layers not in self._unpacked:
            base = self.root / ("+".join(layers) or "no-layers")
            shutil.rmtree(base, ignore_errors=True)
            task, opt = base / "var" / "task", base / "opt"
            unpack(self.artifacts.code.path, task)
            opt.mkdir(parents=True)
            for layer in self.artifacts.function_layers(function):
                unpack(layer.path, opt)
            self._unpacked[layers] = (task, opt)
        return self._unpacked[layers]

    def function_env(self, function: str, task: Path, opt: Path) -> dict[str, str]:
        region = self.env.get("AWS_REGION", "us-east-1")
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(task), "LAMBDA_RUNTIME_DIR": str(self.runtime_dir),
            "LD_LIBRARY_PATH": f"{opt}/lib", "AWS_LAMBDA_FUNCTION_NAME": function,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{self.artifacts.runtime}", "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing", **self.env,
        }

    def run(self, function: str, events: Sequence[dict], timeout_s: float = 180,
            snapstart: bool = False) -> FunctionRun:
        """A fresh interpreter (a cold start) that imports the handler and invokes it with each event.

        With ``snapstart`` the invocations run in a fork of the initialized process after the
        SnapStart hooks (see lambda_bootstrap.py): a restore from a snapshot, as closely as a
        process can play one.
        """
        task, opt = self.dirs(function)
        with tempfile.TemporaryDirectory(prefix=f"sandbox-{function}-") as tmp:
            request, response = Path(tmp, "request.json"), Path(tmp, "response.json")
            request.write_text(json.dumps({
                "task": str(task), "opt": str(opt), "runtime": str(self.runtime_dir), "function": function,
                "handler": self.artifacts.functions[function].handler, "events": list(events),
                "timeout_s": timeout_s, "response": str(response), "snapstart": snapstart}))
            began = time.perf_counter()
            done = subprocess.run([self.python, "-I", "-S", "-B", str(BOOTSTRAP), str(request)], cwd=task,
                                  env=self.function_env(function, task, opt), capture_output=True, text=True,
                                  timeout=timeout_s)
            wall_ms = (time.perf_counter() - began) * 1000
            output = done.stdout + done.stderr
            if not response.exists():
                raise FunctionError(f"{function}: the sandbox exited with {done.returncode}:\n{output[-3000:]}")
            return FunctionRun(function, json.loads(response.read_text()), output, wall_ms)


@dataclass(frozen=True)
class LocalServices:
    moto_url: str
    search_url: str


@contextlib.contextmanager
def local_services() -> Iterator[LocalServices]:
    """moto server (AWS) and osmem-server (OpenSearch) on free ports, stopped on exit (dev dependencies).

    Like the local stack, it sets dummy AWS credentials in this process unless some are set.
    """
    from moto.server import ThreadedMotoServer
    from osmem_server import OsmemServer

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        search = OsmemServer.start(japanese=False)
        try:
            yield LocalServices(f"http://127.0.0.1:{port}", search.url)
        finally:
            search.close()
    finally:
        moto.stop()
