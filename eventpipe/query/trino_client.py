"""A small client of Trino's HTTP protocol, answering Arrow tables.

Trino (the engine behind Athena engine v3) takes a statement with
``POST /v1/statement`` and hands the results out in pages: each answer has
``columns`` (with a structured ``typeSignature``), some ``data`` rows and a
``nextUri`` to ``GET`` until there is none; an ``error`` ends the query. Values
come as JSON: numbers, strings for timestamps, dates, decimals and the
non-finite doubles ("NaN", "Infinity"), base64 for varbinary, lists for arrays
and rows, objects for maps. :func:`arrow_type` and :func:`arrow_value` turn them
into the Arrow types the DuckDB engine answers, so results of both engines
compare directly.

Sessions run with the time zone UTC (as Athena's do) and without the
parametric-datetime client capability, so timestamps come at millisecond
precision, as Athena's.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import requests

from eventpipe.query.local_engine import QueryError

#: Trino answers 502-504 while it is busy or starting; the protocol says to retry them.
_RETRY_STATUS = (502, 503, 504)


class TrinoError(QueryError):
    """Trino refused or failed the statement (``error_name`` is Trino's, e.g. SYNTAX_ERROR)."""

    def __init__(self, message: str, error_name: str = "", error_type: str = "") -> None:
        super().__init__(f"{error_name}: {message}" if error_name else message)
        self.error_name = error_name
        self.error_type = error_type


class TrinoUnavailable(TrinoError):
    """No Trino answers at the URL (not started, or still starting)."""


# ------------------------------------------------------------------ types and values
_SIMPLE = {"bigint": pa.int64(), "integer": pa.int32(), "smallint": pa.int16(), "tinyint": pa.int8(),
           "double": pa.float64(), "real": pa.float32(), "boolean": pa.bool_(), "varchar": pa.string(),
           "char": pa.string(), "json": pa.string(), "uuid": pa.string(), "ipaddress": pa.string(),
           "varbinary": pa.binary(), "date": pa.date32(), "timestamp": pa.timestamp("ms"),
           "timestamp with time zone": pa.timestamp("ms", tz="UTC"), "unknown": pa.null()}


def arrow_type(signature: dict) -> pa.DataType:
    """The Arrow type of a Trino ``typeSignature`` (other types, e.g. intervals, as strings)."""
    raw = signature["rawType"]
    args = signature.get("arguments", [])
    if raw == "array":
        return pa.list_(arrow_type(args[0]["value"]))
    if raw == "map":
        return pa.map_(arrow_type(args[0]["value"]), arrow_type(args[1]["value"]))
    if raw == "row":
        return pa.struct([pa.field((a["value"].get("fieldName") or {}).get("name") or f"field{i}",
                                   arrow_type(a["value"]["typeSignature"])) for i, a in enumerate(args)])
    if raw == "decimal":
        return pa.decimal128(args[0]["value"], args[1]["value"])
    return _SIMPLE.get(raw, pa.string())


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _timestamp_tz(text: str) -> datetime:
    """``2026-01-01 12:00:00.000 UTC`` or ``... Europe/Paris`` or ``... +01:00`` -> aware UTC."""
    moment, _, zone = text.rpartition(" ")
    if zone[:1] in "+-":
        parsed = datetime.fromisoformat(moment + zone)
    else:
        parsed = datetime.fromisoformat(moment).replace(tzinfo=timezone.utc if zone == "UTC" else ZoneInfo(zone))
    return parsed.astimezone(timezone.utc)


def arrow_value(value: Any, kind: pa.DataType) -> Any:
    """One JSON value of the protocol as a Python value of the Arrow type."""
    if value is None:
        return None
    if pa.types.is_floating(kind):
        return float(value)  # "NaN", "Infinity", "-Infinity" included
    if pa.types.is_timestamp(kind):
        return _timestamp_tz(value) if kind.tz else _timestamp(value)
    if pa.types.is_date(kind):
        return date.fromisoformat(value)
    if pa.types.is_decimal(kind):
        return Decimal(value)
    if pa.types.is_binary(kind):
        return base64.b64decode(value)
    if pa.types.is_list(kind):
        return [arrow_value(v, kind.value_type) for v in value]
    if pa.types.is_map(kind):
        return [(arrow_value(k, kind.key_type), arrow_value(v, kind.item_type)) for k, v in value.items()]
    if pa.types.is_struct(kind):
        return {f.name: arrow_value(v, f.type) for f, v in zip(kind, value)}
    if pa.types.is_string(kind) and not isinstance(value, str):
        return str(value)
    return value


@dataclass(frozen=True)
class TrinoResult:
    """The columns (name, Trino type, Arrow type) and rows of one statement."""

    columns: tuple[tuple[str, str, pa.DataType], ...]
    rows: tuple[tuple, ...]
    query_id: str = ""
    update_type: str | None = None

    def to_arrow(self) -> pa.Table:
        if not self.columns:
            return pa.table({})
        names = [c[0] for c in self.columns]
        if len(set(names)) != len(names):  # e.g. two columns named _col0 in SHOW output: keep them apart
            names = [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]
        arrays = [pa.array([arrow_value(row[i], kind) for row in self.rows], type=kind)
                  for i, (_, _, kind) in enumerate(self.columns)]
        return pa.Table.from_arrays(arrays, names=names)


# ------------------------------------------------------------------ the client
@dataclass(frozen=True)
class TrinoClient:
    """Runs statements on a Trino coordinator.

    Args:
        url: The coordinator, e.g. ``http://127.0.0.1:8081``.
        user: The ``X-Trino-User`` (no authentication on a local node).
        catalog: The session catalog (unqualified names resolve in it), if any.
        schema: The session schema, if any.
        timeout_s: Give up (and cancel the query) after this long.
    """

    url: str
    user: str = "eventpipe"
    catalog: str | None = None
    schema: str | None = None
    timeout_s: float = 300.0
    session: requests.Session = field(default_factory=requests.Session, compare=False, repr=False)

    def with_session(self, catalog: str | None, schema: str | None) -> "TrinoClient":
        return TrinoClient(self.url, self.user, catalog, schema, self.timeout_s, self.session)

    def _headers(self) -> dict[str, str]:
        headers = {"X-Trino-User": self.user, "X-Trino-Source": "eventpipe", "X-Trino-Time-Zone": "UTC"}
        if self.catalog:
            headers["X-Trino-Catalog"] = self.catalog
        if self.schema:
            headers["X-Trino-Schema"] = self.schema
        return headers

    def _request(self, method: str, url: str, deadline: float, **kwargs) -> dict:
        delay = 0.05
        while True:
            try:
                response = self.session.request(method, url, headers=self._headers(), timeout=30, **kwargs)
            except requests.RequestException as exc:
                raise TrinoUnavailable(f"no Trino at {self.url}: {exc.__class__.__name__}: {exc}") from None
            if response.status_code not in _RETRY_STATUS:
                break
            if time.monotonic() > deadline:
                raise TrinoUnavailable(f"Trino at {self.url} kept answering HTTP {response.status_code}")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        if response.status_code != 200:
            raise TrinoError(f"HTTP {response.status_code} from {url}: {response.text[:300]}")
        return response.json()

    def execute(self, sql: str) -> TrinoResult:
        """Run one statement and wait for all of its rows."""
        deadline = time.monotonic() + self.timeout_s
        answer = self._request("POST", f"{self.url.rstrip('/')}/v1/statement", deadline, data=sql.encode())
        columns, rows = None, []
        while True:
            error = answer.get("error")
            if error:
                raise TrinoError(error.get("message", "query failed"), error.get("errorName", ""),
                                 error.get("errorType", ""))
            if columns is None and answer.get("columns"):
                columns = tuple((c["name"], c["type"], arrow_type(c["typeSignature"])) for c in answer["columns"])
            rows.extend(tuple(r) for r in answer.get("data") or [])
            next_uri = answer.get("nextUri")
            if not next_uri:
                return TrinoResult(columns or (), tuple(rows), answer.get("id", ""), answer.get("updateType"))
            if time.monotonic() > deadline:
                self._cancel(next_uri)
                raise TrinoError(f"query {answer.get('id')} did not finish within {self.timeout_s:.0f} s "
                                 f"(cancelled)", "EXCEEDED_TIME_LIMIT")
            answer = self._request("GET", next_uri, deadline)

    def _cancel(self, next_uri: str) -> None:
        try:
            self.session.delete(next_uri, headers=self._headers(), timeout=5)
        except requests.RequestException:
            pass

    def query(self, sql: str) -> pa.Table:
        return self.execute(sql).to_arrow()

    def server_info(self) -> dict:
        """``/v1/info`` (version, ``starting``); raises :class:`TrinoUnavailable` if nothing answers."""
        try:
            response = self.session.get(f"{self.url.rstrip('/')}/v1/info", timeout=5)
            response.raise_for_status()
            return response.json()
        except (requests.RequestException, ValueError) as exc:
            raise TrinoUnavailable(f"no Trino at {self.url} ({exc.__class__.__name__}); start one with "
                                   f"scripts/trino-node.sh start") from None

    def ready(self) -> bool:
        try:
            return not self.server_info().get("starting", True)
        except TrinoUnavailable:
            return False

