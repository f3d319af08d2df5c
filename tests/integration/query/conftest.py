"""The lake of the SQL suites: one moto server, the real handlers, two apps (tests/factories/query_lake.py).

Session-scoped so that the DuckDB suite (test_sql.py) and the Trino suite (test_trino.py) query
the very same files.
"""

from __future__ import annotations

import logging

import pytest
from moto.server import ThreadedMotoServer

from chalicelib.apps.keys import AppStore
from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap
from eventpipe.local.stack import free_port
from chalicelib.lake.glue import ensure_bad_rows_table
from eventpipe.query.service import QueryService
from tests.integration.query.checks import KEYS
from tests.factories.query_lake import build_lake


@pytest.fixture(scope="session")
def lake():
    """(clients, LakeData, a QueryService on DuckDB) over a lake written by the real services."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server.start()
    try:
        clients = Clients(Settings(aws_endpoint_url=f"http://127.0.0.1:{port}"))
        bootstrap(clients)
        ensure_bad_rows_table(clients.glue, clients.settings.glue_database, clients.settings.bucket)
        store = AppStore(clients.dynamodb, clients.settings.apps_table)
        for app, key in KEYS.items():
            store.create_key(app, key)
        data = build_lake(clients)
        yield clients, data, QueryService(clients)
    finally:
        server.stop()
