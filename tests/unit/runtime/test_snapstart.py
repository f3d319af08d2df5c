"""SnapStart hooks of the API function: warm before the snapshot, nothing unique or credentialed after."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import types

import pytest

from chalicelib.runtime import snapstart
from chalicelib.runtime.container import Container
from chalicelib.runtime.settings import Settings
from tests.conftest import ROOT


@pytest.fixture
def container(monkeypatch) -> Container:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "before-snapshot")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-1")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return Container(Settings(aws_endpoint_url="http://127.0.0.1:9", opensearch_url="http://127.0.0.1:9"))


def _access_key(client) -> str:
    return client._request_signer._credentials.get_frozen_credentials().access_key


def test_register_is_a_no_op_outside_lambda(container):
    """Where the runtime has no snapshot_restore_py (tests, the local stack), nothing is registered."""
    assert snapstart.register(container, runtime_module="no_such_snapshot_module") is False


def test_register_hands_both_hooks_and_the_container_to_the_runtime(container, monkeypatch):
    """The runtime's register_before_snapshot / register_after_restore receive the hooks and their argument."""
    calls = []
    fake = types.ModuleType("fake_snapshot_restore_py")
    fake.register_before_snapshot = lambda func, *args: calls.append(("before", func, args))
    fake.register_after_restore = lambda func, *args: calls.append(("after", func, args))
    monkeypatch.setitem(sys.modules, "fake_snapshot_restore_py", fake)
    assert snapstart.register(container, runtime_module="fake_snapshot_restore_py") is True
    assert calls == [("before", snapstart.before_snapshot, (container,)),
                     ("after", snapstart.after_restore, (container,))]


def test_after_restore_builds_new_clients_with_the_credentials_of_the_restored_environment(container, monkeypatch):
    """A client (and any service holding one) built before the snapshot is never used after it: the
    credentials are resolved again, so a restored environment signs with its own."""
    before_client, apps_before = container.clients.dynamodb, container.apps
    assert _access_key(before_client) == "before-snapshot"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "after-restore")
    snapstart.after_restore(container)
    assert container.apps is not apps_before
    assert container.clients.dynamodb is not before_client
    assert _access_key(container.clients.dynamodb) == "after-restore"
    assert _access_key(container.apps._client) == "after-restore"  # the service uses the new client


def test_after_restore_reseeds_random(container):
    """Two environments restored from one snapshot must not share a jitter sequence."""
    random.seed(1234)
    state = random.getstate()
    snapstart.after_restore(container)
    assert random.getstate() != state


def test_before_snapshot_warms_imports_and_models_and_keeps_no_client(container):
    """The routes' lazy imports are done and the botocore models loaded, but no client, connection
    or credential survives into the snapshot; the parsed metrics definitions (pure) do."""
    loader = container.clients._core.get_component("data_loader")
    imported = snapstart.before_snapshot(container)
    assert {"chalicelib.apps.ratelimit", "chalicelib.ingest.sdk", "chalicelib.search.facade"} <= set(imported)
    assert all(name in sys.modules for name in imported)
    built = {name for name in vars(container) if name not in ("settings", "clients")}
    assert built == {"metrics"}
    assert not any(name in vars(container.clients) for name in ("kinesis", "dynamodb", "s3"))
    renewed = container.clients._core.get_component("data_loader")
    assert renewed is loader  # models parsed before the snapshot are reused after it
    assert not container.clients._core._credentials  # not resolved yet: resolved after restore


def test_app_registers_the_hooks_where_the_runtime_provides_them(tmp_path):
    """Importing app.py (Lambda's init) registers both hooks with the runtime's module."""
    (tmp_path / "snapshot_restore_py.py").write_text(
        "BEFORE, AFTER = [], []\n"
        "def register_before_snapshot(func, *args, **kwargs):\n    BEFORE.append(func.__name__)\n"
        "def register_after_restore(func, *args, **kwargs):\n    AFTER.append(func.__name__)\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-c", "import app, snapshot_restore_py as s; print(s.BEFORE, s.AFTER)"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['before_snapshot'] ['after_restore']"
