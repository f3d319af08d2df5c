"""The layout's rules, checked: import-linter contracts (and a planted violation they catch),
app.py's imports, the one environment reader, no import cycles, modules under 400 lines, the layer
list of chalicelib/__init__.py, the one convention of package __init__ files."""

from __future__ import annotations

import ast
import configparser
import os
import re
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
    ("chalicelib/http/_planted.py", "from chalicelib.apps import keys\n", "Layers"),
    ("chalicelib/apps/_planted.py", "from chalicelib.reads import metrics\n", "Layers"),
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


def contract_layers() -> list[set[str]]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    lines = config["importlinter:contract:layers"]["layers"].split("\n")
    return [{name.strip().removeprefix("chalicelib.") for name in line.split("|")} for line in lines if line.strip()]


def docstring_layers() -> list[set[str]]:
    """The layer list of chalicelib/__init__.py: the names a line of its literal block starts with."""
    doc = ast.get_docstring(ast.parse((ROOT / "chalicelib" / "__init__.py").read_text()))
    block = doc.split("::", 1)[1].split("\n\n", 2)[1]
    layers = []
    for line in block.splitlines():
        if re.match(r"    \S", line) and not line.strip().startswith("app.py"):
            names = re.match(r"\s*((?:\w+/ ?)+)", line)
            layers.append({n.rstrip("/") for n in names.group(1).split()})
    return layers


def test_the_layer_list_of_the_package_docstring_is_the_layers_contract():
    """chalicelib/__init__.py lists the layers in .importlinter's order, each with the same packages."""
    assert docstring_layers() == contract_layers()


def test_every_layer_is_a_package_and_every_package_is_in_a_layer():
    """No package of chalicelib is outside the layers contract (so none escapes it)."""
    packages = {p.parent.name for p in (ROOT / "chalicelib").glob("*/__init__.py")}
    assert set().union(*contract_layers()) == packages


def _only_reexports(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return all(isinstance(t, ast.Name) and t.id in ("__all__", "_LAZY") for t in targets)
    if isinstance(node, ast.If):  # if TYPE_CHECKING: imports
        return (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" and not node.orelse
                and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in node.body))
    return isinstance(node, ast.FunctionDef) and node.name in ("__getattr__", "__dir__")  # PEP 562 lazy re-export


def test_every_package_init_follows_the_one_convention():
    """Each package __init__.py: a docstring saying what it holds (in chalicelib also its layer), then only
    re-exports of the package's names (imports, __all__, a PEP 562 lazy __getattr__); no other code."""
    wrong = {}
    for folder in ("chalicelib", "eventpipe"):
        for path in sorted((ROOT / folder).rglob("__init__.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text())
            doc = ast.get_docstring(tree)
            if not doc:
                wrong[rel] = "no docstring"
            elif folder == "chalicelib" and rel != "chalicelib/__init__.py" and "Layer" not in doc:
                wrong[rel] = "the docstring does not name the package's layer"
            elif others := [type(n).__name__ for n in tree.body[1:] if not _only_reexports(n)]:
                wrong[rel] = f"code beyond re-exports: {others}"
    assert wrong == {}
