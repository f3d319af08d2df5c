"""``eventpipe replay``: re-feed the raw events table to the search indexer (rebuild a deleted or broken index).

Hour by hour (one hour of raw events in memory), every app or the ``--app`` ones:

1. the hour's rows are read from the raw events Iceberg table, each (app_id, event_id)
   once by the duplicate rule the finalizer and compaction apply
   (``RawTable.read_deduped``: by arrival, copies in neighbouring hours considered);
2. each row becomes its canonical stream line again (the envelope, in order,
   instants as epoch ms, ``attributes`` as its JSON text: what the API writes to
   Kinesis), and the lines are packed into Kinesis-shaped records with the stream
   codec;
3. the records go through the very service the ``index_events`` consumer runs
   (``IndexingService.index``): the one event -> document mapping
   (``search/documents.py``), bulk requests sized by bytes, retries with backoff,
   per-document rejects to ``bad-rows/search/`` with the reason.

Idempotent: documents are ``index`` operations with ``_id = app_id:event_id`` in
the daily index of their ``event_time``, so a second replay overwrites every
document with itself (``updated``, never ``created``), and bad rows are named by
their synthetic record (``replay-<dt>T<hour>`` and its position), which depends
only on the archive. Events older than the search retention are counted as
``expired`` and not indexed, as on the stream. An archive file that cannot be read
and an event that cannot become a document are reported (summary, exit code 1),
never skipped in silence.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from chalicelib.lake import layout
from chalicelib.lake.raw_table import RAW_WITH_APP, RawTable, hours_between
from chalicelib.stream import codec, envelope

log = logging.getLogger(__name__)
#: Events handed to the indexer per call (packed into records of up to 1 MiB); progress is reported after each.
EVENTS_PER_CALL = 5000
#: Calls again from the record the indexer reported failed (transient errors outlasting its own retries).
RESUMES = 3


@dataclass
class ReplaySummary:
    hours: int = 0
    hours_with_events: int = 0
    rows: int = 0
    events: int = 0
    created: int = 0
    updated: int = 0
    expired: int = 0
    bad_rows: int = 0
    not_indexed: int = 0
    unreadable: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Hours of the range with archived files, and how many hours with events were replayed so far (progress).
    hours_to_replay: int = 0
    hours_replayed: int = 0
    #: Stopped before the end of the range (``run(stop=...)``).
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return not (self.bad_rows or self.not_indexed or self.unreadable)

    def describe(self) -> str:
        text = (f"replay: {self.hours} hour(s) ({self.hours_with_events} with events), {self.rows} archived row(s), "
                f"{self.events} distinct event(s): {self.created} document(s) created, {self.updated} updated, "
                f"{self.expired} older than the retention, {self.bad_rows} bad row(s) (bad-rows/search/), "
                f"{self.not_indexed} not indexed; {self.seconds:.1f}s")
        for problem in self.unreadable:
            text += f"\n  unreadable: {problem}"
        return text


class CountingClient:
    """Wraps the search client: counts bulk items created (201) and updated (200)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.created = self.updated = 0

    def bulk(self, *args, **kwargs):
        response = self._client.bulk(*args, **kwargs)
        for item in (response or {}).get("items") or []:
            status = int(next(iter(item.values()), {}).get("status", 0))
            self.created += status == 201
            self.updated += status == 200
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def event_lines(rows: pa.Table) -> list[bytes]:
    """Archive rows (with ``app_id``) -> canonical stream lines, as ``ingest/validation.py`` writes them."""
    columns = {name: rows[name].cast(pa.int64()) if pa.types.is_timestamp(rows[name].type) else rows[name]
               for name in envelope.FIELD_NAMES}
    table = pa.table(columns)
    return [orjson.dumps(row) for row in table.to_pylist()]


def kinesis_records(lines: Sequence[bytes], shard_id: str, arrival_ms: int, first: int = 1) -> list[dict]:
    """Lambda-shaped Kinesis records holding ``lines`` (sequence numbers first, first + 1, ... on a synthetic shard)."""
    records = []
    for n, packed in enumerate(codec.pack(list(lines)), start=first):
        records.append({
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": shard_id, "sequenceNumber": str(n),
                        "data": base64.b64encode(packed.data).decode("ascii"),
                        "approximateArrivalTimestamp": arrival_ms / 1000},
            "eventSource": "aws:kinesis", "eventID": f"{shard_id}:{n}", "eventSourceARN": "replay",
        })
    return records


class Replayer:
    """Replays the raw events table through an indexing service.

    ``index`` is ``IndexingService.index``; ``counter`` the ``CountingClient`` the service's client is.
    """

    def __init__(self, raw: RawTable, index: Callable[[Sequence[dict]], Any], counter: CountingClient) -> None:
        self._raw, self._index, self._counter = raw, index, counter

    def _stored_hours(self, apps: Sequence[str] | None, start_ms: int, end_ms: int) -> dict[int, set[str]]:
        """hour -> the apps with rows in it, from the table's partitions (empty hours cost nothing)."""
        found: dict[int, set[str]] = {}
        for app_id, dt, hour in self._raw.partitions():
            hour_ms = layout.hour_start_ms(dt, hour)
            if (not apps or app_id in apps) and start_ms < hour_ms + layout.HOUR_MS and hour_ms < end_ms:
                found.setdefault(hour_ms, set()).add(app_id)
        return found

    def _read_hour(self, hour_ms: int, apps: list[str], summary: ReplaySummary) -> tuple[pa.Table, int]:
        """One hour's deduplicated rows and the rows stored; an unreadable app-hour is reported, the rest read."""
        tables, stored = [], 0
        for app in apps:
            try:
                stored += self._raw.read_hours([layout.dt_hour(hour_ms)], [app]).num_rows
                tables.append(self._raw.read_deduped(hour_ms, hour_ms + layout.HOUR_MS, [app]))
            except Exception as exc:  # noqa: BLE001 - report the app whose files cannot be read, keep the others
                dt, hour = layout.dt_hour(hour_ms)
                problem = f"raw table app_id={app}/dt={dt}/hour={hour}: {type(exc).__name__}: {exc}"
                if problem not in summary.unreadable:
                    summary.unreadable.append(problem)
        return (pa.concat_tables(tables) if tables else RAW_WITH_APP.empty_table()), stored

    def hours(self, start_ms: int, end_ms: int, apps: Sequence[str] | None,
              summary: ReplaySummary) -> Iterator[tuple[int, pa.Table, int]]:
        """(hour, its deduplicated events in [start_ms, end_ms), rows stored) for each hour of the range."""
        stored = self._stored_hours(apps, start_ms, end_ms)
        for dt, hour in hours_between(start_ms, end_ms):
            h = layout.hour_start_ms(dt, hour)
            if h not in stored:
                yield h, RAW_WITH_APP.empty_table(), 0
                continue
            events, rows = self._read_hour(h, sorted(stored[h]), summary)
            times = events["event_time"].cast(pa.int64())
            mine = events.filter(pc.and_(pc.greater_equal(times, start_ms), pc.less(times, end_ms)))
            yield h, mine, rows

    def _send(self, records: list[dict], summary: ReplaySummary) -> None:
        pending = records
        for attempt in range(RESUMES + 1):
            result = self._index(pending)
            summary.expired += result.expired
            summary.bad_rows += result.bad_rows
            failed = result.failed_sequence_number
            if failed is None:
                return
            pending = [r for r in pending if int(r["kinesis"]["sequenceNumber"]) >= int(failed)]
            log.warning("replay: %d record(s) not indexed yet (attempt %d), resuming", len(pending), attempt + 1)
        summary.not_indexed += sum(len(codec.decode_record(base64.b64decode(r["kinesis"]["data"])).splitlines())
                                   for r in pending)

    def _tally(self, summary: ReplaySummary, began: float, created: int, updated: int) -> ReplaySummary:
        summary.created = self._counter.created - created
        summary.updated = self._counter.updated - updated
        summary.seconds = time.monotonic() - began
        return summary

    def run(self, start_ms: int, end_ms: int, apps: Sequence[str] | None = None, progress: bool = False,
            report: Callable[[ReplaySummary], None] | None = None,
            stop: Callable[[], bool] | None = None) -> ReplaySummary:
        """Replay ``[start_ms, end_ms)``. ``progress``: a tqdm bar; ``report``: called with the summary so far
        after each indexer call and each hour with events; ``stop``: asked before each call (True: stop there)."""
        from tqdm import tqdm  # the progress bar of the other commands

        began = time.monotonic()
        summary = ReplaySummary()
        created, updated = self._counter.created, self._counter.updated
        summary.hours_to_replay = len(self._stored_hours(apps, start_ms, end_ms))  # for the progress reports
        hours = hours_between(start_ms, end_ms)
        with tqdm(total=len(hours), unit="h", desc="replay", disable=not progress) as bar:
            for hour_ms, events, rows in self.hours(start_ms, end_ms, apps, summary):
                summary.hours += 1
                summary.rows += rows
                if events.num_rows:
                    summary.hours_with_events += 1
                    dt, hour = layout.dt_hour(hour_ms)
                    lines, sequence = event_lines(events), 1
                    for i in range(0, len(lines), EVENTS_PER_CALL):
                        if stop is not None and stop():
                            summary.stopped = True
                            return self._tally(summary, began, created, updated)
                        records = kinesis_records(lines[i:i + EVENTS_PER_CALL], f"replay-{dt}T{hour}", hour_ms,
                                                  first=sequence)
                        sequence += len(records)
                        self._send(records, summary)
                        summary.events += len(lines[i:i + EVENTS_PER_CALL])
                        if report is not None:
                            report(self._tally(summary, began, created, updated))
                    summary.hours_replayed += 1
                    if report is not None:
                        report(self._tally(summary, began, created, updated))
                bar.update(1)
                bar.set_postfix(events=summary.events)
        return self._tally(summary, began, created, updated)


def replayer_for(container) -> Replayer:
    """A replayer with the container's S3 client, bucket and indexing service (local stack or AWS alike):
    the search client is the one the deployed code builds from the settings, wrapped to count."""
    counter = CountingClient(container.search_client)  # applies the index template; raises SearchUnavailableError
    container.search_client = counter  # the indexing service asks the container for its client on each call
    return Replayer(container.raw_table, container.indexing.index, counter)


#: Stack outputs (eventpipe/deploy/template.py) -> the settings the deployed functions get from them.
STACK_SETTINGS = {"LakeBucketName": "EVENTPIPE_BUCKET", "SearchEndpoint": "OPENSEARCH_URL",
                  "StateTableName": "EVENTPIPE_STATE_TABLE"}


def stage_environment(cloudformation, stack: str) -> dict[str, str]:
    """The environment the deployed functions have, from the stage's stack outputs (``--aws --stage``)."""
    description = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    env = {name: outputs[key] for key, name in STACK_SETTINGS.items() if outputs.get(key)}
    if "OPENSEARCH_URL" in env:
        env["EVENTPIPE_OPENSEARCH_SIGV4"] = "es"  # the domain takes signed requests only (docs/deploy.md)
    return env
