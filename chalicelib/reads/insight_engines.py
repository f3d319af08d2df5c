"""Where the insight SQL runs: DuckDB in the API process (local stack), or Athena (AWS).

Both take the *bound* text of :mod:`chalicelib.reads.insight_sql` unchanged.

* :class:`DuckDbEngine` registers the app's raw events of the ``dt`` days the query reads
  (``source(app_id, first_dt, last_dt)``: an Arrow table or dataset; on the local stack the raw
  Iceberg table planned with ``app_id = <app>`` and the ``dt`` range, so no other app's row is
  read) as ``events``, gives DuckDB a ``json_extract_scalar`` macro, and answers at once.
* :class:`AthenaEngine` starts the query, waits up to ``wait_s`` and answers the rows, or a
  :class:`Pending` handle. The handle's query id is recorded in the state table with the app and
  what the answer is shaped with (``insight#<id>``), so ``GET /v1/insights/queries/{id}`` answers
  only the app that started it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from chalicelib.http.errors import ServiceUnavailable

ROW_LIMIT = 100_000


@dataclass(frozen=True)
class Pending:
    """A query still running on Athena: poll ``GET /v1/insights/queries/{query_id}``."""

    query_id: str


class QueryFailed(ServiceUnavailable):
    """The engine refused or failed the query (503: not the caller's fault)."""


class DuckDbEngine:
    def __init__(self, source: Callable[[str, str, str], Any], threads: int = 2) -> None:
        self._source, self._threads = source, threads

    def run(self, app_id: str, sql: str, days: tuple[str, str], kind: str, shape: dict) -> list[dict]:
        import duckdb

        events = self._source(app_id, *days)
        connection = duckdb.connect()
        try:
            connection.execute(f"SET threads={int(self._threads)}")
            connection.execute("SET TimeZone='UTC'")
            connection.execute("CREATE MACRO json_extract_scalar(j, p) AS json_extract_string(j, p)")
            connection.register("events", events)
            return connection.sql(sql).to_arrow_table().to_pylist()
        except duckdb.Error as exc:
            raise QueryFailed(f"the local engine failed: {exc}") from None
        finally:
            connection.close()


def iceberg_source(raw_table) -> Callable[[str, str, str], Any]:
    """The app's rows of the raw Iceberg table (:class:`chalicelib.lake.raw_table.RawTable`) for dt days."""
    def read(app_id: str, first_dt: str, last_dt: str):
        from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThanOrEqual

        return raw_table.scan(And(EqualTo("app_id", app_id), And(GreaterThanOrEqual("dt", first_dt),
                                                                  LessThanOrEqual("dt", last_dt))))
    return read


def iceberg_event_types(raw_table, clock_ms: Callable[[], int], days: int = 30) -> Callable[[str], list[str]]:
    """The event types of the app's raw events of the last ``days`` UTC days (one column read)."""
    def read(app_id: str) -> list[str]:
        from datetime import datetime, timezone

        import pyarrow.compute as pc
        from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual

        first = datetime.fromtimestamp(clock_ms() / 1000 - days * 86400, timezone.utc).strftime("%Y-%m-%d")
        rows = raw_table.scan(And(EqualTo("app_id", app_id), GreaterThanOrEqual("dt", first)), ("event_type",))
        return sorted(v for v in pc.unique(rows["event_type"]).to_pylist() if v is not None)
    return read


class AthenaEngine:
    """Athena through boto3. ``database``: the Glue database; ``output``: the result location."""

    def __init__(self, athena, dynamodb, state_table: str, database: str, workgroup: str, output: str | None,
                 wait_s: float = 3.0, poll_s: float = 0.25, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._athena, self._db, self._table = athena, dynamodb, state_table
        self._database, self._workgroup, self._output = database, workgroup, output
        self._wait_s, self._poll_s, self._sleep, self._monotonic = wait_s, poll_s, sleep, monotonic

    def run(self, app_id: str, sql: str, days: tuple[str, str], kind: str, shape: dict) -> list[dict] | Pending:
        request: dict[str, Any] = {"QueryString": sql, "QueryExecutionContext": {"Database": self._database},
                                   "WorkGroup": self._workgroup}
        if self._output:
            request["ResultConfiguration"] = {"OutputLocation": self._output}
        try:
            query_id = self._athena.start_query_execution(**request)["QueryExecutionId"]
        except self._athena.exceptions.ClientError as exc:
            raise QueryFailed(f"Athena refused the query: {exc}") from None
        self._db.put_item(TableName=self._table, Item={
            "pk": {"S": f"insight#{query_id}"}, "app_id": {"S": app_id}, "kind": {"S": kind},
            "shape": {"S": orjson.dumps(shape).decode()},
            "expires_at": {"N": str(int(time.time()) + 7 * 86400)}})
        deadline = self._monotonic() + self._wait_s
        while self._monotonic() < deadline:
            state = self._state(query_id)
            if state != "running":
                return self._rows(query_id)
            self._sleep(self._poll_s)
        return Pending(query_id)

    def lookup(self, app_id: str, query_id: str) -> tuple[str, dict] | None:
        """(kind, shape) of the app's own query ``query_id``; None for another app's or an unknown id."""
        item = self._db.get_item(TableName=self._table, Key={"pk": {"S": f"insight#{query_id}"}},
                                 ConsistentRead=True).get("Item")
        if item is None or item.get("app_id", {}).get("S") != app_id:
            return None
        return item["kind"]["S"], orjson.loads(item["shape"]["S"])

    def poll(self, query_id: str) -> list[dict] | Pending:
        return Pending(query_id) if self._state(query_id) == "running" else self._rows(query_id)

    def _state(self, query_id: str) -> str:
        status = self._athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
        state = status["State"]
        if state in ("QUEUED", "RUNNING"):
            return "running"
        if state != "SUCCEEDED":
            raise QueryFailed(f"the Athena query {state.lower()}: {status.get('StateChangeReason', '')}".strip())
        return "done"

    def _rows(self, query_id: str) -> list[dict]:
        """The result rows (the first row of Athena's result set is the header), typed from its metadata."""
        rows, names, types, token = [], None, None, None
        while True:
            page = self._athena.get_query_results(QueryExecutionId=query_id, MaxResults=1000,
                                                  **({"NextToken": token} if token else {}))
            result = page["ResultSet"]
            if names is None:
                columns = result.get("ResultSetMetadata", {}).get("ColumnInfo", [])
                names, types = [c["Name"] for c in columns], [c.get("Type", "varchar") for c in columns]
                body = result.get("Rows", [])[1:]
            else:
                body = result.get("Rows", [])
            for row in body:
                values = [d.get("VarCharValue") for d in row.get("Data", [])]
                rows.append({n: _typed(v, t) for n, v, t in zip(names, values, types)})
            token = page.get("NextToken")
            if not token or len(rows) >= ROW_LIMIT:
                return rows


def _typed(value: str | None, kind: str) -> Any:
    if value is None:
        return None
    if kind in ("bigint", "integer", "smallint", "tinyint"):
        return int(value)
    if kind in ("double", "float", "real", "decimal"):
        return float(value)
    return value
