"""Smoke run of every benchmark: each script in bench/ once, at a tiny size, so none can rot.

Scripts are found by listing bench/ (every ``*.py`` but this file and ``__init__.py``); each must be
registered in ``SMOKE`` with the arguments of its tiny run, or the smoke run fails. A script
passes when it exits 0 within its time limit and prints figures (a line with a number). No timing
is asserted: the figures of a tiny run on a shared machine mean nothing.

    .venv/bin/python bench/smoke.py                 # every script; exit 1 if any failed
    .venv/bin/python bench/smoke.py query.py ingest.py

``tests/bench/test_smoke.py`` runs the same (one test per script), so `make test` (``.ci/run``)
runs every benchmark.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

#: script -> (arguments of its tiny run, seconds it may take on a loaded 2-core machine)
SMOKE: dict[str, tuple[list[str], int]] = {
    "aggregate.py": (["--requests", "40", "--events-per-request", "20", "--repeat", "1", "--users", "500"], 120),
    "coldstart.py": (["--repeats", "1", "--events", "2", "--api-only"], 280),
    "finalize.py": (["--smoke"], 240),  # the finalize-units branch gives it --smoke
    "ingest.py": (["--events", "2000", "--e2e-events", "500", "--batch", "100", "--concurrency", "2"], 180),
    "insights.py": (["--smoke"], 180),
    "lake_cost.py": (["--smoke"], 240),
    "payload_guard.py": (["--smoke"], 180),
    "persistence.py": (["--objects", "20", "--size", "1000"], 120),
    "privacy.py": (["--smoke"], 240),
    "query.py": (["--smoke"], 280),
    "ratelimit.py": (["--smoke"], 240),
    "read_costs.py": (["--beta-requests", "3", "--rounds", "1"], 180),
    "search.py": (["smoke"], 180),
    "soak.py": (["--smoke"], 240),
    "tenant_scaling.py": (["--smoke"], 240),
}
NOT_BENCHMARKS = {"smoke.py", "__init__.py"}
FIGURE = re.compile(r"\d")


def scripts(folder: Path = BENCH) -> list[str]:
    """Every benchmark script of ``folder``, by name."""
    return sorted(p.name for p in folder.glob("*.py") if p.name not in NOT_BENCHMARKS)


@dataclass
class Outcome:
    script: str
    ok: bool
    seconds: float
    why: str
    output: str


def run(script: str, folder: Path = BENCH, registry: dict | None = None) -> Outcome:
    """One script's smoke run (an unregistered script fails without running)."""
    registry = SMOKE if registry is None else registry
    if script not in registry:
        return Outcome(script, False, 0.0, f"not registered: add {script!r} with its smoke arguments to "
                                            f"SMOKE in bench/smoke.py", "")
    args, limit = registry[script]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, str(folder / script), *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=limit)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return Outcome(script, False, time.monotonic() - started, f"took over {limit} s", out)
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    if done.returncode != 0:
        return Outcome(script, False, elapsed, f"exit {done.returncode}: {output.strip()[-1500:]}", output)
    if not any(FIGURE.search(line) for line in done.stdout.splitlines()):
        return Outcome(script, False, elapsed, "printed no figures on stdout", output)
    return Outcome(script, True, elapsed, "", output)


def main(argv: list[str]) -> int:
    names = argv or scripts()
    started, failed = time.monotonic(), []
    for name in names:
        outcome = run(name)
        print(f"{'ok  ' if outcome.ok else 'FAIL'} {name:20s} {outcome.seconds:6.1f} s {outcome.why[:300]}", flush=True)
        if not outcome.ok:
            failed.append(outcome)
    print(f"bench smoke: {len(names) - len(failed)}/{len(names)} scripts ok in {time.monotonic() - started:.0f} s")
    for outcome in failed:
        print(f"--- {outcome.script}: {outcome.why}\n{outcome.output[-3000:]}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
