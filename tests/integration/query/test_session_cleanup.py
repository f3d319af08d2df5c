"""DuckDB sessions leave nothing behind: a key-scoped session's private temp directory goes with it.

Rule (issue 21, item 13): every ``eventpipe query --key`` run, and every closed
``QueryService`` / ``LocalAthena``, removes the ``eventpipe-duckdb-*`` directory it made,
whether the query succeeded or failed.
"""

from __future__ import annotations

import tempfile

import pytest

from eventpipe.query.local_engine import QueryError
from eventpipe.query.service import QueryService
from tests.integration.query.checks import KEYS


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's directory for this test only, so leftovers of other runs cannot count."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def leftovers(root) -> list[str]:
    return sorted(p.name for p in root.glob("eventpipe-duckdb-*"))


def test_cli_query_with_a_key_removes_its_temp_directory(lake, private_tmp, monkeypatch, capsys):
    """Each CLI run with --key (success and refusal alike) leaves no temp directory."""
    from eventpipe import cli
    clients, _, _ = lake
    monkeypatch.setenv("EVENTPIPE_AWS_ENDPOINT_URL", clients.settings.aws_endpoint_url)
    for _ in range(3):
        assert cli.main(["query", "--file", "top_users", "--key", KEYS["beta"], "--param", "limit=3"]) == 0
    assert cli.main(["query", "SELECT * FROM no_such_table", "--key", KEYS["alpha"]]) == 2
    capsys.readouterr()
    assert leftovers(private_tmp) == []


def test_a_scoped_session_makes_a_directory_and_closing_removes_it(lake, private_tmp):
    """While the session is open its directory exists (DuckDB may spill there); close() removes it."""
    clients, _, _ = lake
    with QueryService(clients) as service:
        engine = service.local_engine("alpha")
        assert len(leftovers(private_tmp)) == 1
        with pytest.raises(QueryError):
            engine.query("SELECT * FROM no_such_table")
    assert leftovers(private_tmp) == [] and engine.closed
    engine.close()  # idempotent


def test_a_session_left_to_the_garbage_collector_is_cleaned_too(lake, private_tmp):
    """A caller that never closes still leaves nothing once the session is collected."""
    import gc
    clients, _, _ = lake
    QueryService(clients).local_engine("beta").query("SELECT 1 AS one")
    gc.collect()
    assert leftovers(private_tmp) == []
