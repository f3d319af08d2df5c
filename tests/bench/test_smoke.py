"""Every benchmark script runs at its tiny size (bench/smoke.py), so none can rot unnoticed.

Rules: each script found in bench/ is registered with smoke arguments (an unregistered one fails),
exits 0 and prints figures; no timing is asserted. One test per script, discovered by listing
bench/, so a new script gets its test without anyone adding it here.
"""

from __future__ import annotations

import pytest

from bench import smoke


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", smoke.scripts())
def test_bench_script_runs_at_its_smoke_size(script):
    outcome = smoke.run(script)
    assert outcome.ok, f"{script}: {outcome.why}\n{outcome.output[-3000:]}"


def test_a_script_not_registered_fails_the_smoke_run(tmp_path):
    (tmp_path / "registered.py").write_text("print('figure: 1')\n")
    (tmp_path / "forgotten.py").write_text("print('figure: 2')\n")
    (tmp_path / "silent.py").write_text("pass\n")
    (tmp_path / "smoke.py").write_text("")
    registry = {"registered.py": ([], 30), "silent.py": ([], 30)}
    assert smoke.scripts(tmp_path) == ["forgotten.py", "registered.py", "silent.py"]
    assert smoke.run("registered.py", tmp_path, registry).ok
    forgotten = smoke.run("forgotten.py", tmp_path, registry)
    assert not forgotten.ok and "not registered" in forgotten.why
    silent = smoke.run("silent.py", tmp_path, registry)
    assert not silent.ok and "no figures" in silent.why


def test_every_registered_script_exists():
    """A registry entry of a removed script is stale: the registry and bench/ list the same scripts."""
    assert sorted(smoke.SMOKE) == smoke.scripts()
