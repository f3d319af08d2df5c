"""The layout's rules, checked: import-linter contracts (and a planted violation they catch),
app.py's imports, the one environment reader, no import cycles, modules under 400 lines."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_import_linter_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, source, contract", [
    ("chalicelib/processing/_planted.py", "import boto3\n", "processing/ and stream/ are pure"),
    ("chalicelib/stream/_planted.py", "import time\n", "processing/ and stream/ are pure"),
    ("chalicelib/processing/_planted.py", "from chalicelib.runtime import settings\n", "processing/ and stream/ are pure"),
    ("chalicelib/stream/_planted.py", "from chalicelib.lake import layout\n", "Layers"),
    ("chalicelib/lake/_planted.py", "from eventpipe import cli\n", "never imports the tools"),
])
def test_a_planted_violation_breaks_its_contract(tmp_path, module, source, contract):
    shutil.copytree(ROOT / "chalicelib", tmp_path / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    (tmp_path / module).write_text(source)
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if "BROKEN" in line]
    assert any(contract in line for line in broken) or contract in result.stdout.split("Broken contracts")[-1], \
        result.stdout


def test_app_py_imports_only_chalice_the_runtime_and_the_route_helpers():
    tree = ast.parse((ROOT / "app.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    allowed = {"__future__", "logging", "chalice", "chalicelib.http.routes", "chalicelib.runtime.container",
               "chalicelib.runtime.settings", "chalicelib.runtime.pipeline_config", "chalicelib.runtime.snapstart",
               "chalicelib.stream.tap"}
    assert imported <= allowed, imported - allowed


def test_only_the_settings_module_reads_the_environment():
    readers = []
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        text = path.read_text()
        if "os.environ" in text or "getenv(" in text:
            readers.append(path.relative_to(ROOT).as_posix())
    assert readers == ["chalicelib/runtime/settings.py"]


def test_no_import_cycles_in_the_lambda_package_or_the_tools():
    for package in ("chalicelib", "eventpipe"):
        graph = grimp.build_graph(package)
        cycles = sorted((a, b) for a in graph.modules for b in graph.find_modules_directly_imported_by(a)
                        if a != b and graph.chain_exists(importer=b, imported=a))
        assert cycles == [], cycles[:5]


def test_every_module_is_under_400_lines():
    long = {p.relative_to(ROOT).as_posix(): n for folder in ("chalicelib", "eventpipe")
            for p in (ROOT / folder).rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
