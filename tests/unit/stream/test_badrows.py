"""One bad-rows schema and writer for every consumer: keys depend only on the source record."""

from __future__ import annotations

import boto3
import orjson
import pytest
from moto import mock_aws

from chalicelib.lake.badrows import S3BadRowsSink
from chalicelib.stream import badrows
from chalicelib.stream.badrows import MemoryBadRowsSink, object_key
from chalicelib.stream.records import RecordRef
from tests.factories.search import NOW_MS, event

REF = RecordRef("49590338271490256608559692538361571095921575989136588898", "shardId-000000000001", "pk", "arn:x",
                arrival_ms=NOW_MS)


def test_bad_row_key_depends_only_on_consumer_and_record_and_uses_the_arrival_day():
    a = badrows.rejected_event(REF, 3, event(at=NOW_MS - 2 * 86_400_000), "mapper_parsing_exception")
    assert object_key("search", a.record) == \
        f"bad-rows/search/dt=2026-11-25/app_id=_unattributed/shardId-000000000001-{REF.sequence_number}.ndjson"
    assert object_key("search", a.record, app_id="alpha") == \
        f"bad-rows/search/dt=2026-11-25/app_id=alpha/shardId-000000000001-{REF.sequence_number}.ndjson"
    assert object_key("aggregate", a.record) != object_key("search", a.record)
    other = RecordRef("7", "shardId-000000000001", arrival_ms=NOW_MS)
    assert object_key("search", other) != object_key("search", REF)
    with pytest.raises(ValueError, match="unknown consumer"):
        object_key("elsewhere", REF)


def test_every_kind_of_bad_row_has_the_same_schema():
    rows = [badrows.undecodable_record(REF, b"\x00\x01junk", "unknown record format"),
            badrows.invalid_line(REF, 0, b'{"event_id": 1', "not JSON"),
            badrows.too_late(REF, None, event(), "older than the maximum lateness"),
            badrows.rejected_event(REF, 2, event(), "conflict")]
    bodies = [orjson.loads(row.to_json()) for row in rows]
    assert {tuple(sorted(b)) for b in bodies} == {("detail", "event", "raw_line", "reason", "record", "record_data_b64",
                                                   "truncated")}
    assert all(b["truncated"] is None for b in bodies)
    assert [b["reason"] for b in bodies] == ["undecodable_record", "invalid_event", "too_late", "rejected_by_index"]
    assert bodies[0]["record_data_b64"] == "AAFqdW5r" and bodies[0]["record"]["sequence_number"] == REF.sequence_number
    assert bodies[1]["raw_line"] == '{"event_id": 1' and bodies[1]["record"]["line"] == 0
    assert bodies[2]["event"]["app_id"] == event()["app_id"]


def test_unknown_reason_is_refused():
    with pytest.raises(ValueError, match="unknown bad-row reason"):
        badrows.BadRow("whatever", "x", REF)


def test_s3_sink_writes_one_object_per_record_and_a_redelivery_overwrites_it():
    rows = [badrows.rejected_event(REF, 0, event(), "conflict"), badrows.rejected_event(REF, 1, event(), "conflict")]
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="lake")
        sink = S3BadRowsSink(s3, "lake", "search")
        sink.write(rows)
        sink.write(rows)
        listing = s3.list_objects_v2(Bucket="lake")["Contents"]
        key = object_key("search", REF, app_id=event()["app_id"])
        assert [o["Key"] for o in listing] == [key]
        body = s3.get_object(Bucket="lake", Key=key)["Body"].read()
        assert [orjson.loads(line)["record"]["line"] for line in body.splitlines()] == [0, 1]


def test_memory_sink_has_the_same_overwrite_semantics():
    sink, row = MemoryBadRowsSink("search"), badrows.rejected_event(REF, 0, event(), "conflict")
    sink.write([row])
    sink.write([row])
    assert len(sink.rows()) == 1


def test_every_kind_of_bad_row_keeps_at_most_the_cap_with_the_size_and_digest_of_the_whole():
    """The one cap rule: raw_line, the record and the event are cut to MAX_KEPT_BYTES (record still base64,
    raw_line whole characters), and ``truncated`` says which field, the whole input's size and its SHA-256."""
    import base64
    import hashlib
    limit = badrows.MAX_KEPT_BYTES
    line = ("é" * (limit + 10)).encode()  # two bytes a character: the cut may not split one
    record = bytes(range(256)) * (limit // 64)
    huge = {**event(), "attributes": {"blob": "x" * (2 * limit)}}
    rows = {"raw_line": badrows.invalid_line(REF, 0, line, "d" * 10_000),
            "record_data_b64": badrows.undecodable_record(REF, record, "unknown record format"),
            "event": badrows.too_late(REF, 0, huge, "late")}
    originals = {"raw_line": line, "record_data_b64": record,
                 "event": orjson.dumps(huge, option=orjson.OPT_SORT_KEYS)}
    for field, row in rows.items():
        body = orjson.loads(row.to_json())
        assert len(row.to_json()) < limit + 4096, field
        assert body["truncated"] == {"field": field, "original_bytes": len(originals[field]),
                                     "sha256": hashlib.sha256(originals[field]).hexdigest()}
    kept = orjson.loads(rows["raw_line"].to_json())
    assert line.decode().startswith(kept["raw_line"]) and len(kept["raw_line"].encode()) <= limit
    assert len(kept["detail"]) == badrows.MAX_DETAIL_CHARS
    kept_record = base64.b64decode(orjson.loads(rows["record_data_b64"].to_json())["record_data_b64"])
    assert record.startswith(kept_record) and len(kept_record) > limit // 2
    kept_event = orjson.loads(rows["event"].to_json())["event"]
    assert kept_event["attributes"] is None and kept_event["app_id"] == huge["app_id"]


def test_rows_are_stored_under_their_apps_prefix_and_rows_without_a_valid_app_apart():
    """One object per app and record: a record's rows of two apps go to two prefixes; no event (or an
    invalid app id, which could otherwise name a path) goes under app_id=_unattributed."""
    sink = MemoryBadRowsSink("search")
    sink.write([badrows.rejected_event(REF, 0, {**event(), "app_id": "alpha"}, "x"),
                badrows.rejected_event(REF, 1, {**event(), "app_id": "beta"}, "x"),
                badrows.rejected_event(REF, 2, {**event(), "app_id": "../beta"}, "x"),
                badrows.invalid_line(REF, 3, b"{", "not JSON")])
    apps = sorted(key.split("/")[3] for key in sink.objects)
    assert apps == ["app_id=_unattributed", "app_id=alpha", "app_id=beta"]
    unattributed = [k for k in sink.objects if "_unattributed" in k][0]
    assert len(sink.objects[unattributed].splitlines()) == 2
    assert badrows.app_prefix("search", "2026-11-25", "alpha") == "bad-rows/search/dt=2026-11-25/app_id=alpha/"
    with pytest.raises(ValueError):
        badrows.app_prefix("search", "2026-11-25", "../x")
