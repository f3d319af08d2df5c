"""The ``persons`` table (Parquet, Glue) and the per-id state it is derived from.

Files (one per app, rewritten at each update):

* ``insights/person-ids/app_id=<app>/ids.parquet``: one row per raw user id,
  :class:`chalicelib.processing.persons.IdState` (seen times, trait stamps, its alias). Internal
  state, not in Glue. Merging a state is a semilattice join, so an update is idempotent and the
  result does not depend on the order the hours come in.
* ``tables/persons/app_id=<app>/persons.parquet``: one row per person (ids merged by alias), the
  Glue table ``persons`` (partition ``app_id``, injected): ``user_id``, ``first_seen``,
  ``last_seen``, ``traits`` (the JSON object, keys sorted), ``aliases`` (the other ids merged in).

S3 requests per update: 1 GET + 2 PUTs. (Both files hold every id of the app: an app with
millions of ids would split them by a hash of the id; not needed yet.)
"""

from __future__ import annotations

import dataclasses
import io

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from chalicelib.lake.s3io import get_bytes
from chalicelib.lake.sessions_table import epoch_ms, to_bytes
from chalicelib.processing.persons import IdState, Person, merge_all, persons, states_of

TABLE_NAME = "persons"
TABLE_PREFIX = "tables/persons"
STATE_PREFIX = "insights/person-ids"
SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("first_seen", pa.timestamp("ms", tz="UTC")), pa.field("last_seen", pa.timestamp("ms", tz="UTC")),
    pa.field("traits", pa.string()), pa.field("aliases", pa.list_(pa.string())),
])
STATE_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False), pa.field("first_seen", pa.int64()),
    pa.field("last_seen", pa.int64()), pa.field("set_stamps", pa.string()), pa.field("once_stamps", pa.string()),
    pa.field("alias_to", pa.string()), pa.field("alias_time", pa.int64()), pa.field("alias_event_id", pa.string()),
])


def state_key(app_id: str) -> str:
    return f"{STATE_PREFIX}/app_id={app_id}/ids.parquet"


def persons_key(app_id: str) -> str:
    return f"{TABLE_PREFIX}/app_id={app_id}/persons.parquet"


class PersonsTable:
    def __init__(self, s3, bucket: str) -> None:
        self._s3, self._bucket = s3, bucket

    def _states(self, app_id: str) -> dict[str, IdState]:
        body = get_bytes(self._s3, self._bucket, state_key(app_id))
        if body is None:
            return {}
        return {row["user_id"]: IdState.from_row(row) for row in pq.read_table(io.BytesIO(body)).to_pylist()}

    def update(self, app_id: str, events: pa.Table) -> int:
        """Merge the app's events (deduplicated: user_id, event_time, event_id, event_type, attributes)
        into its id states, then rewrite its persons. Returns the number of persons."""
        rows = events.select(["user_id", "event_time", "event_id", "event_type", "attributes"])
        rows = rows.set_column(1, "event_time", epoch_ms(rows["event_time"]))
        return self._write(app_id, merge_all(self._states(app_id), states_of(rows.to_pylist())))

    def erase(self, app_id: str, user_ids) -> int:
        """Privacy: drop the ids' states, and any alias that names one of them (the other id stays, no
        longer merged), then rewrite the persons. Idempotent; returns the number of states changed."""
        gone = set(user_ids)
        states = self._states(app_id)
        if not states:
            return 0
        kept, changed = {}, 0
        for user, state in states.items():
            if user in gone:
                changed += 1
                continue
            if state.alias is not None and state.alias[2] in gone:
                state, changed = dataclasses.replace(state, alias=None), changed + 1
            kept[user] = state
        if changed:
            self._write(app_id, kept)
        return changed

    def _write(self, app_id: str, states: dict[str, IdState]) -> int:
        state_rows = [{"user_id": u, **s.to_row()} for u, s in sorted(states.items())]
        self._s3.put_object(Bucket=self._bucket, Key=state_key(app_id),
                            Body=to_bytes(pa.Table.from_pylist(state_rows, schema=STATE_SCHEMA)))
        people = [p for p in persons(states) if p.first_seen is not None]
        self._s3.put_object(Bucket=self._bucket, Key=persons_key(app_id), Body=to_bytes(as_table_rows(people)))
        return len(people)

    def read(self, app_id: str) -> pa.Table:
        body = get_bytes(self._s3, self._bucket, persons_key(app_id))
        return SCHEMA.empty_table() if body is None else pq.read_table(io.BytesIO(body)).cast(SCHEMA)

    def person(self, app_id: str, user_id: str) -> dict | None:
        """The person ``user_id`` belongs to (found by its own id or any id merged into it), or None."""
        rows = self.read(app_id).to_pylist()
        for row in rows:
            if row["user_id"] == user_id or user_id in (row["aliases"] or []):
                return row
        return None


def as_table_rows(people: list[Person]) -> pa.Table:
    moment = pa.timestamp("ms", tz="UTC")
    return pa.table({
        "user_id": pa.array([p.user_id for p in people], pa.string()),
        "first_seen": pa.array([p.first_seen for p in people], pa.int64()).cast(moment),
        "last_seen": pa.array([p.last_seen for p in people], pa.int64()).cast(moment),
        "traits": pa.array([orjson.dumps(p.traits, option=orjson.OPT_SORT_KEYS).decode() for p in people], pa.string()),
        "aliases": pa.array([p.aliases for p in people], pa.list_(pa.string())),
    }, schema=SCHEMA)
