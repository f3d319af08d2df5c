"""Helpers for lake tests: canonical events, Lambda batches, ground truth, a clock."""

from __future__ import annotations

import random
from collections import defaultdict

import orjson

from chalicelib.stream import codec
from chalicelib.ingest.validation import ms_to_iso, validate_event
from eventpipe.generate import generate_events
from tests.conftest import kinesis_record

T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def canonical_lines(count: int, seed: int, start_ms: int = T0, app_id: str = "demo",
                    duration_ms: int = 20 * 60_000) -> list[bytes]:
    """Validated canonical event lines, as the ingest API writes them."""
    lines = []
    for raw in generate_events(count, seed, start_ms, duration_ms, users=60):
        lines.append(validate_event(raw, app_id, received_at=start_ms + duration_ms).line)
    return lines


def lambda_batches(lines: list[bytes], seed: int, shards: int = 2, per_record: int = 25,
                   max_batch_records: int = 7, first_sequence: int = 100) -> list[list[dict]]:
    """Pack lines into records, spread them over shards, cut each shard into batches (sequence
    numbers from ``first_sequence`` up: a later delivery needs a higher one)."""
    rng = random.Random(seed)
    records_by_shard: dict[int, list[dict]] = defaultdict(list)
    sequence = defaultdict(lambda: first_sequence)
    for i in range(0, len(lines), per_record):
        shard = rng.randrange(shards)
        sequence[shard] += rng.randint(1, 5)
        data = codec.pack(lines[i:i + per_record])[0].data
        records_by_shard[shard].append(kinesis_record(data, f"shardId-{shard:012d}", sequence[shard]))
    batches = []
    for records in records_by_shard.values():
        i = 0
        while i < len(records):
            n = rng.randint(1, max_batch_records)
            batches.append(records[i:i + n])
            i += n
    rng.shuffle(batches)  # shards interleave arbitrarily; order within a shard is kept below
    order = {id(b): min(int(r["kinesis"]["sequenceNumber"]) for r in b) for b in batches}
    return sorted(batches, key=lambda b: (b[0]["eventID"].split(":")[0], order[id(b)]))


def truth_event_counts(lines: list[bytes]) -> dict[tuple, tuple[int, int]]:
    """(app, window_start, event_type) -> (count, exact distinct users), duplicates removed."""
    seen, counts, users = set(), defaultdict(int), defaultdict(set)
    for line in lines:
        event = orjson.loads(line)
        ident = (event["app_id"], event["event_id"])
        if ident in seen:
            continue
        seen.add(ident)
        key = (event["app_id"], event["event_time"] // 60_000 * 60_000, event["event_type"])
        counts[key] += 1
        if event["user_id"] is not None:
            users[key].add(event["user_id"])
    return {k: (v, len(users[k])) for k, v in counts.items()}


def truth_class_activity(lines: list[bytes]) -> dict[tuple, tuple[int, float, float, float, int]]:
    """(app, window_start, class) -> (count, value sum, min, max, number of values), deduplicated."""
    seen, acc = set(), {}
    for line in lines:
        event = orjson.loads(line)
        ident = (event["app_id"], event["event_id"])
        attributes = orjson.loads(event["attributes"])
        if ident in seen or attributes.get("character_class") is None:
            continue
        seen.add(ident)
        key = (event["app_id"], event["event_time"] // 60_000 * 60_000, attributes["character_class"])
        count, total, low, high, n = acc.get(key, (0, 0.0, None, None, 0))
        value = attributes.get("value")
        if isinstance(value, (int, float)):
            total += value
            low = value if low is None else min(low, value)
            high = value if high is None else max(high, value)
            n += 1
        acc[key] = (count + 1, total, low, high, n)
    return acc


def match_lines(count: int, seed: int, start_ms: int = T0, app_id: str = "demo",
                duration_ms: int = 15 * 60_000) -> list[bytes]:
    """``match_end`` events whose durations (``attributes.value``) are heavy-tailed, zeros and ints included."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        kind = rng.random()
        value = 0 if kind < 0.03 else rng.randint(1, 3000) if kind < 0.5 else round(rng.lognormvariate(4, 1.5), 3)
        t = start_ms + rng.randrange(duration_ms)
        raw = {"event_id": f"match-{seed}-{i}", "event_type": "match_end", "event_time": ms_to_iso(t),
               "user_id": f"user-{rng.randrange(80)}",
               "attributes": {"character_class": rng.choice(("mage", "rogue", "priest")), "value": value}}
        lines.append(validate_event(raw, app_id, received_at=start_ms + duration_ms).line)
    return lines


def truth_match_duration(lines: list[bytes], dedupe: bool = True) -> dict[tuple, list[float]]:
    """(app, 5-minute window_start, class) -> the match_end values (each event once if ``dedupe``)."""
    seen, acc = set(), defaultdict(list)
    for line in lines:
        event = orjson.loads(line)
        ident = (event["app_id"], event["event_id"])
        attributes = orjson.loads(event["attributes"])
        value = attributes.get("value")
        if (dedupe and ident in seen) or event["event_type"] != "match_end" or not isinstance(value, (int, float)):
            continue
        seen.add(ident)
        acc[(event["app_id"], event["event_time"] // 300_000 * 300_000, attributes.get("character_class"))].append(
            float(value))
    return dict(acc)


def committing_finalizer(committer, *args, **kwargs):
    """A Finalizer whose run() first commits the staged archive batches, as the local schedules
    do (``commit_events`` every few seconds, ``finalize_windows`` every few minutes)."""
    from chalicelib.lake.finalizer import Finalizer

    class CommittingFinalizer(Finalizer):
        def run(self):
            committer.run()
            return super().run()

    return CommittingFinalizer(*args, **kwargs)


def raw_table_of(clients, s3=None):
    """The raw events table on the clients' Glue (and ``s3``, e.g. an observing wrapper, or theirs)."""
    from chalicelib.lake.iceberg_io import BotoGlueCatalog
    from chalicelib.lake.raw_table import RawTable

    s = clients.settings
    return RawTable(BotoGlueCatalog(clients.glue, s3 or clients.s3), s.glue_database, s.bucket)
