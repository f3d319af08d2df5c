"""Finds an installed CPython of a given ``major.minor`` (PATH, then pyenv); never a hard-coded path."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

_PROBE = "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])"


def _probe(command: str, env: dict[str, str]) -> tuple[str, str] | None:
    try:
        done = subprocess.run([command, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.split()
    return (lines[0], lines[1]) if done.returncode == 0 and len(lines) == 2 else None


def _pyenv_versions(version: str) -> list[str]:
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return []
    done = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, check=False)
    found = [v.strip() for v in done.stdout.splitlines() if v.strip().startswith(version + ".")]
    return sorted(found, key=lambda v: [int(p) if p.isdigit() else 0 for p in v.split(".")], reverse=True)


@functools.lru_cache(maxsize=None)
def find_python(version: str) -> str | None:
    """The real executable of a CPython ``version`` (``"3.12"``), or None when none is installed.

    ``EVENTPIPE_PYTHON<MAJOR><MINOR>`` (e.g. ``EVENTPIPE_PYTHON312``) overrides the search.
    """
    override = os.environ.get("EVENTPIPE_PYTHON" + version.replace(".", ""))
    candidates: list[tuple[str, dict[str, str]]] = []
    if override:
        candidates.append((override, dict(os.environ)))
    command = shutil.which(f"python{version}")
    if command:
        candidates.append((command, dict(os.environ)))
        candidates += [(command, {**os.environ, "PYENV_VERSION": v}) for v in _pyenv_versions(version)]
    for command, env in candidates:
        probed = _probe(command, env)
        if probed and probed[1] == version:
            return probed[0]
    return None
