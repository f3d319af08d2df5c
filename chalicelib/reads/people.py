"""``GET /v1/sessions`` and ``GET /v1/persons/{user_id}``: the app's own sessions and persons tables.

Both read what finalization wrote (:mod:`chalicelib.lake.sessions_table`,
:mod:`chalicelib.lake.persons_table`): hours not finalized yet are not in them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import orjson

from chalicelib.http.errors import BadRequest, NotFound
from chalicelib.lake.persons_table import PersonsTable
from chalicelib.lake.sessions_table import SessionsTable
from chalicelib.processing.sessions import metrics
from chalicelib.reads.metrics import single_values
from chalicelib.stream.instants import InvalidInstant, ms_to_iso, parse_instant

SESSION_PARAMS = ("from", "to")
DAY_MS = 24 * 3_600_000
#: The longest range of GET /v1/sessions (one S3 GET per UTC day).
MAX_SESSION_RANGE_MS = 31 * DAY_MS
DEFAULT_SESSION_RANGE_MS = 7 * DAY_MS
MAX_USER_ID_CHARS = 128


class PeopleService:
    def __init__(self, s3, bucket: str, clock_ms: Callable[[], int]) -> None:
        self._sessions, self._persons, self._clock_ms = SessionsTable(s3, bucket), PersonsTable(s3, bucket), clock_ms

    def _range(self, params: Mapping[str, Any]) -> tuple[int, int]:
        params = single_values(params)
        unknown = set(params) - set(SESSION_PARAMS)
        if unknown:
            raise BadRequest(f"unknown parameter(s) {', '.join(sorted(unknown))}; "
                             f"allowed: {', '.join(SESSION_PARAMS)}")
        try:
            end = parse_instant(params["to"], "to") if "to" in params else self._clock_ms()
            start = parse_instant(params["from"], "from") if "from" in params else end - DEFAULT_SESSION_RANGE_MS
        except InvalidInstant as exc:
            raise BadRequest(str(exc)) from None
        if start >= end:
            raise BadRequest("from must be before to")
        if end - start > MAX_SESSION_RANGE_MS:
            raise BadRequest(f"the range is {(end - start) / DAY_MS:.1f} days; the maximum is "
                             f"{MAX_SESSION_RANGE_MS // DAY_MS} days")
        return start, end

    def sessions(self, app_id: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Session metrics of the sessions that start in [from, to) (default: the last 7 days)."""
        start, end = self._range(params or {})
        rows = self._sessions.read(app_id, start, end)
        figures = metrics(rows["user_id"].to_pylist(), rows["duration_ms"].to_pylist(), rows["events"].to_pylist())
        return {"from": ms_to_iso(start), "to": ms_to_iso(end), **figures.to_dict()}

    def person(self, app_id: str, user_id: str) -> dict[str, Any]:
        """The person ``user_id`` (or an id merged into it) of the app; 404 when unknown."""
        if not user_id or len(user_id) > MAX_USER_ID_CHARS:
            raise BadRequest(f"user_id must be 1 to {MAX_USER_ID_CHARS} characters")
        row = self._persons.person(app_id, user_id)
        if row is None:
            raise NotFound(f"no person {user_id[:64]!r} in this app")
        return {"user_id": row["user_id"], "aliases": row["aliases"] or [],
                "first_seen": _iso(row["first_seen"]), "last_seen": _iso(row["last_seen"]),
                "traits": orjson.loads(row["traits"] or "{}")}


def _iso(moment) -> str | None:
    return None if moment is None else ms_to_iso(round(moment.timestamp() * 1000))
