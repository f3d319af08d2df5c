import duckdb
import pytest


@pytest.fixture(scope="module")
def con():
    """A single-threaded DuckDB connection for the processing tests."""
    c = duckdb.connect()
    c.execute("SET threads=1")
    yield c
    c.close()
