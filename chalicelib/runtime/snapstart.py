"""Lambda SnapStart hooks of the API function (python3.12+, ``[api] snapstart`` in pipeline.toml).

With SnapStart, Lambda runs the init phase (importing app.py) once per published version, runs
the before-snapshot hooks and snapshots the memory; each new execution environment resumes
from that image and runs the after-restore hooks before its first request. So:

* :func:`before_snapshot` does the work every first request would repeat: it imports the
  modules the API's routes import lazily and loads the botocore service models (by building
  the clients once), then drops those clients and their connections;
* :func:`after_restore` makes each restored environment unique again: a new AWS session (its
  credentials are resolved again on first use), no client, connection or service built before
  the snapshot (``Container.renew``), and a fresh seed for ``random`` (retry jitter). Event ids
  and partition keys come from ``uuid.uuid4`` (``os.urandom``), which nothing snapshots.

``snapshot_restore_py`` exists only in Lambda's managed Python runtimes: :func:`register` does
nothing elsewhere (tests, the local stack, chalice local).
"""

from __future__ import annotations

import importlib
import random
from typing import Callable

#: What the API's routes import on first use (container.py imports them inside its properties).
WARM_MODULES = (
    "chalicelib.apps.ratelimit", "chalicelib.apps.ratelimit_store", "chalicelib.http.health",
    "chalicelib.http.dashboard", "chalicelib.http.openapi", "chalicelib.ingest.sdk", "chalicelib.ingest.segment",
    "chalicelib.ingest.posthog", "chalicelib.reads.metrics", "chalicelib.reads.pipeline_status",
    "chalicelib.reads.stream_lag", "chalicelib.search.facade", "chalicelib.search.query", "chalicelib.search.client",
    "chalicelib.processing", "opensearchpy", "orjson",
)
#: The AWS clients whose service models the API's requests use (cloudwatch: GET /v1/pipeline on AWS).
WARM_CLIENTS = ("dynamodb", "kinesis", "s3", "cloudwatch")


def before_snapshot(container) -> list[str]:
    """Imports and parses what the first requests need; keeps nothing unique. Returns the imported modules."""
    imported = []
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
            imported.append(name)
        except ImportError:  # a function packaged without that dependency: its routes load it, or fail, as before
            continue
    container.metrics  # noqa: B018 - metrics.yaml parsed once (pure: kept after restore)
    for service in WARM_CLIENTS:
        container.clients.client(service).close()  # loads the service's model and endpoint rules
    container.renew()
    return imported


def after_restore(container) -> None:
    """Nothing from before the snapshot that must be unique, or that holds credentials or connections."""
    container.renew()
    random.seed()  # from os.urandom: restored environments must not share a jitter sequence


def register(container, runtime_module: str = "snapshot_restore_py") -> bool:
    """Registers the hooks with Lambda's runtime; False where the runtime does not provide them."""
    try:
        hooks = importlib.import_module(runtime_module)
    except ImportError:
        return False
    register_before: Callable = hooks.register_before_snapshot
    register_after: Callable = hooks.register_after_restore
    register_before(before_snapshot, container)
    register_after(after_restore, container)
    return True
