"""The artifacts for the target runtime: sizes, contents, pins, and packaging failing loudly."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from eventpipe.deploy import artifacts as artifacts_module
from eventpipe.deploy import assemble, staging
from eventpipe.deploy.artifact_config import (BUDGET_EXCEPTIONS, LAMBDA_UNZIPPED_LIMIT, LAMBDA_ZIP_LIMIT, MIB, PACKAGE,
                                              UNZIPPED_BUDGET, budget, runtime_spec)
from eventpipe.deploy.artifact_errors import MissingWheelError, PinError
from eventpipe.deploy.wheels import Distribution, check_pins, resolve_site
from tests.conftest import ROOT
from tests.deploy.artifact_fixtures import target_artifacts  # noqa: F401 - fixture

pytestmark = pytest.mark.artifacts

NEVER_IN_LAMBDA = ("grpc", "google", "pandas", "moto", "pytest", "sqlglot", "awswrangler", "boto3", "botocore",
                   "click", "requests_toolbelt", "osmem_server", "hypothesis", "tests", "bench", "eventpipe")


def names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def test_every_zip_is_at_most_50_mib_and_every_function_with_layers_at_most_200_mib(target_artifacts):  # noqa: F811
    print("\n" + target_artifacts.table())
    for artifact in (target_artifacts.code, *target_artifacts.layers.values()):
        assert artifact.zipped_bytes <= LAMBDA_ZIP_LIMIT, artifact
    for name in target_artifacts.functions:
        assert target_artifacts.function_unzipped_bytes(name) <= budget(name) <= LAMBDA_UNZIPPED_LIMIT, \
            target_artifacts.table()
    assert target_artifacts.size_problems() == []


def test_sizes_are_those_of_the_real_zips(target_artifacts):  # noqa: F811
    for artifact in (target_artifacts.code, *target_artifacts.layers.values()):
        with zipfile.ZipFile(artifact.path) as archive:
            assert sum(i.file_size for i in archive.infolist()) == artifact.unzipped_bytes
        assert artifact.path.stat().st_size == artifact.zipped_bytes


def test_code_zip_holds_app_chalicelib_and_chalices_runtime_but_no_tools(target_artifacts):  # noqa: F811
    files = names(target_artifacts.code.path)
    assert "app.py" in files and "chalicelib/metrics.yaml" in files and "chalicelib/ingest/service.py" in files
    assert "chalicelib/reads/metrics.py" in files, "the metrics service is the API's"
    assert not [f for f in files if f.startswith("eventpipe/")], "no tool (CLI, local stack, SQL engine, deploy)"
    assert {f for f in files if f.startswith("chalice/") and f.endswith(".py")} == {"chalice/__init__.py",
                                                                                    "chalice/app.py"}


def test_no_artifact_holds_dev_tools_grpc_pandas_or_the_runtimes_boto3(target_artifacts):  # noqa: F811
    for artifact in (target_artifacts.code, *target_artifacts.layers.values()):
        tops = {f.removeprefix("python/").split("/")[0].removesuffix(".py") for f in names(artifact.path)}
        assert not tops & set(NEVER_IN_LAMBDA), artifact.path.name


def test_layers_hold_no_flight_tests_headers_or_cython_sources(target_artifacts):  # noqa: F811
    files = [f for layer in target_artifacts.layers.values() for f in names(layer.path)]
    assert all(f.startswith("python/") for f in files)
    assert not [f for f in files if ".dist-info/" not in f and ("flight" in f or "/tests/" in f or "/include/" in f
                or f.endswith((".pyx", ".pxd", ".pxi", ".h")))]


def test_numpy_libs_are_shipped_byte_identical(target_artifacts, tmp_path):  # noqa: F811
    site = resolve_site(ROOT, runtime_spec(target_artifacts.runtime), artifacts_module.default_cache_dir())
    with zipfile.ZipFile(target_artifacts.layers["numpy"].path) as archive:
        shipped = [n for n in archive.namelist() if n.startswith("python/numpy.libs/")]
        assert shipped
        for name in shipped:
            original = (site.path / name.removeprefix("python/")).read_bytes()
            assert hashlib.sha256(archive.read(name)).digest() == hashlib.sha256(original).digest(), name


def test_artifacts_use_the_versions_the_tests_run_with(target_artifacts):  # noqa: F811
    assert target_artifacts.placement, "nothing was placed"
    for name in target_artifacts.placement:
        assert target_artifacts.versions[name] == metadata.version(name), name


def test_config_lists_exactly_the_functions_app_py_defines():
    import app

    defined = {"api_handler": "app.app", **{s.name: f"app.{s.name}" for s in app.app.event_sources}}
    assert {f.name: f.handler for f in PACKAGE.functions} == defined


def test_code_rule_takes_app_and_chalicelib_minus_the_exclude_list():
    files = assemble.project_files(ROOT, PACKAGE)
    assert files[0] == "app.py" and all(f == "app.py" or f.startswith("chalicelib/") for f in files)
    assert "chalicelib/lake/glue.py" not in files and "chalicelib/stream/codec.py" in files
    assert not [f for f in files if "__pycache__" in f]


def _wheel(directory: Path, filename: str) -> None:
    """A minimal valid wheel of the distribution 'fakepkg' 1.0."""
    dist_info = "fakepkg-1.0.dist-info"
    tag = filename.removesuffix(".whl").split("-", 2)[2]
    members = {"fakepkg/__init__.py": b"",
               f"{dist_info}/METADATA": b"Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n",
               f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()}
    def hashed(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{n},sha256={hashed(d)},{len(d)}\n" for n, d in members.items()) + f"{dist_info}/RECORD,,\n"
    with zipfile.ZipFile(directory / filename, "w") as archive:
        for name, data in {**members, f"{dist_info}/RECORD": record.encode()}.items():
            archive.writestr(name, data)


def _fake_project(tmp_path: Path, wheel: str) -> tuple[Path, list[str]]:
    project, index = tmp_path / "project", tmp_path / "index"
    project.mkdir()
    index.mkdir()
    (project / "requirements.txt").write_text("fakepkg==1.0\n")
    (project / "constraints.txt").write_text("fakepkg==1.0\n")
    _wheel(index, wheel)
    return project, ["--no-index", "--find-links", str(index)]


@pytest.mark.parametrize("wheel", [
    "fakepkg-1.0-cp311-cp311-manylinux_2_36_x86_64.whl",  # this machine's Python and glibc: not the target's
    "fakepkg-1.0-cp312-cp312-manylinux_2_39_x86_64.whl",  # newer glibc than Amazon Linux 2023
    "fakepkg-1.0-cp312-cp312-win_amd64.whl",
])
def test_a_distribution_without_a_wheel_for_the_target_stops_packaging(tmp_path, wheel):
    project, options = _fake_project(tmp_path, wheel)
    with pytest.raises(MissingWheelError) as caught:
        resolve_site(project, runtime_spec("python3.12"), tmp_path / "cache", options)
    assert caught.value.package == "fakepkg==1.0" and caught.value.runtime == "python3.12"


def test_a_wheel_for_the_target_is_installed(tmp_path):  # the control of the test above
    project, options = _fake_project(tmp_path, "fakepkg-1.0-cp312-cp312-manylinux_2_28_x86_64.whl")
    site = resolve_site(project, runtime_spec("python3.12"), tmp_path / "cache", options)
    assert site.distributions["fakepkg"].version == "1.0"


def test_build_command_exits_non_zero_naming_the_package(tmp_path, capsys):
    project, options = _fake_project(tmp_path, "fakepkg-1.0-py3-none-win_amd64.whl")
    code = artifacts_module.main(["build", "--out", str(tmp_path / "out"), "--project-dir", str(project),
                                  "--cache-dir", str(tmp_path / "cache"), *[f"--pip-option={o}" for o in options]])
    assert code == 1 and "fakepkg==1.0" in capsys.readouterr().err


def test_a_resolved_version_other_than_the_pin_is_refused():
    resolved = {"numpy": Distribution("numpy", "2.4.5", (), ())}
    with pytest.raises(PinError, match="numpy: resolved 2.4.5, the tests pin 2.4.6"):
        check_pins(resolved, {"numpy": "2.4.6"}, {})
    with pytest.raises(PinError, match="left-pad 1.0 is not pinned"):
        check_pins({"left-pad": Distribution("left-pad", "1.0", (), ())}, {}, {})
    check_pins(resolved, {}, {"numpy": "2.4.5"})  # a requirements.txt pin counts too


def test_zips_are_reproducible(tmp_path):
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    first = staging.write_zip(tmp_path / "a.zip", [tmp_path / "src"])
    (tmp_path / "src" / "pkg" / "mod.py").touch()
    second = staging.write_zip(tmp_path / "b.zip", [tmp_path / "src"])
    assert first.path.read_bytes() == second.path.read_bytes()


@pytest.mark.parametrize(("path", "pattern", "expected"), [
    ("numpy/_core/tests/test_x.py", "**/tests/**", True), ("tests/x.py", "**/tests/**", True),
    ("numpy/_core/testsuite.py", "**/tests/**", False), ("eventpipe/local/a/b.py", "eventpipe/local/**", True),
    ("eventpipe/localx.py", "eventpipe/local/**", False), ("pyarrow/_flight.so", "pyarrow/_flight.*", True),
    ("pyarrow/sub/_flight.so", "pyarrow/_flight.*", False),
])
def test_globs_span_directories_only_with_double_star(path, pattern, expected):
    assert staging.matches(path, [pattern]) is expected


def test_size_budget_keeps_a_fifth_of_lambdas_limit():
    assert UNZIPPED_BUDGET == 200 * MIB and LAMBDA_ZIP_LIMIT == 50 * MIB
    # An exception names its reason and stays under Lambda's limit with a margin.
    assert all(reason and size <= 230 * MIB for size, reason in BUDGET_EXCEPTIONS.values())


def test_cache_entries_unused_for_two_weeks_are_pruned(tmp_path):
    import os
    import time

    for kind, key, age_days in (("layers", "old", 15), ("layers", "recent", 1), ("site", "old", 30)):
        marker = tmp_path / kind / key / ".complete"
        marker.parent.mkdir(parents=True)
        marker.write_text(key)
        stamp = time.time() - age_days * 86400
        os.utime(marker, (stamp, stamp))
    removed = assemble.prune_cache(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == ["layers/old", "site/old"]
    assert (tmp_path / "layers" / "recent").exists()
