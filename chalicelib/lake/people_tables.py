"""Persons and sessions of a closed (app, hour), recomputed from the deduplicated raw table.

:meth:`InsightsUpdater.update` is the unit of work: it reads the app's deduplicated events of the
hour (:meth:`chalicelib.lake.raw_table.RawTable.read_deduped`, the duplicate rule of
:mod:`chalicelib.processing.duplicates`) once and hands them to :class:`SessionsTable` and
:class:`PersonsTable`. Both write deterministic files and do not depend on the order hours are
updated in, so running it again, or for hours in any order, leaves the same tables.

It runs when an (app, hour)'s finals switch: the finalize worker's ``after_hour`` hook
(chalicelib/lake/unit_worker.py), so on AWS in the ``finalize_worker`` function, once per unit of
work, retried with it; the privacy deletion job reaches it the same way and then erases the deleted
ids from the persons state (:meth:`PersonsTable.erase`).
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

import pyarrow.compute as pc

from chalicelib.lake import layout
from chalicelib.lake.persons_table import PersonsTable
from chalicelib.lake.raw_table import RawTable
from chalicelib.lake.sessions_table import SessionsTable
from chalicelib.processing.sessions import DEFAULT_GAP_MS

log = logging.getLogger(__name__)
COLUMNS = ["app_id", "user_id", "event_time", "event_id", "event_type", "attributes"]


class InsightsUpdater:
    """``gap_ms(app_id)``: the app's session inactivity gap in ms (None: the default, 30 min)."""

    def __init__(self, raw: RawTable, sessions: SessionsTable, persons: PersonsTable,
                 gap_ms: Callable[[str], int | None] = lambda app_id: None) -> None:
        self._raw, self._sessions, self._persons, self._gap_ms = raw, sessions, persons, gap_ms

    def update(self, app_id: str, dt: str, hour: str) -> dict:
        """Recompute the persons and sessions the app's events of the hour affect."""
        return self._update_apps(dt, hour, [app_id])[0]

    def update_hour(self, dt: str, hour: str, app_ids: Iterable[str] | None = None) -> list[dict]:
        """:meth:`update` for every app with events in the hour (or the ones given), one raw read."""
        return self._update_apps(dt, hour, sorted(app_ids) if app_ids is not None else None)

    def erase(self, app_id: str, user_ids: Iterable[str]) -> int:
        """Privacy: the ids leave the persons state and table (see :meth:`PersonsTable.erase`)."""
        return self._persons.erase(app_id, user_ids)

    def _update_apps(self, dt: str, hour: str, app_ids: list[str] | None) -> list[dict]:
        start = layout.hour_start_ms(dt, hour)
        rows = self._raw.read_deduped(start, start + layout.HOUR_MS, app_ids).select(COLUMNS)
        apps = app_ids if app_ids is not None else sorted(set(rows["app_id"].to_pylist()))
        results = []
        for app_id in apps:
            events = rows.filter(pc.equal(rows["app_id"], app_id))
            gap = self._gap_ms(app_id) or DEFAULT_GAP_MS
            sessions = self._sessions.update(app_id, dt, hour, events, gap)
            persons = self._persons.update(app_id, events) if events.num_rows else None
            log.info("insights %s %s/%s: %d event(s), %d session(s) rewritten, %s person(s)",
                     app_id, dt, hour, events.num_rows, sessions, persons)
            results.append({"app_id": app_id, "dt": dt, "hour": hour, "events": events.num_rows,
                            "sessions": sessions, "persons": persons})
        return results


def gap_from_minutes(minutes: float | None) -> int | None:
    return None if minutes is None else int(round(minutes * 60_000))

