"""decode_records: Lambda Kinesis records -> events table + bad records."""

from __future__ import annotations

import base64

import pyarrow as pa
import pytest

from chalicelib.stream import codec
from chalicelib.processing.decode import EVENT_SCHEMA, decode_records
from tests.factories.processing import T0, event, kinesis_record, line

REAL_SEQ = "49590338271490256608559692538361571095921575989136588898"


def test_good_batch_becomes_one_table_in_batch_order(con):
    records = [kinesis_record([line(event(0)), line(event(1))], 100),
               kinesis_record([line(event(2, user_id=None, client_event_time=T0 - 5))], REAL_SEQ)]
    batch = decode_records(records, con=con)
    assert batch.bad == ()
    assert batch.sequence_numbers == ("100", REAL_SEQ)
    t = batch.events
    assert t.schema.names == EVENT_SCHEMA.names + ["sequence_number", "record_index"]
    assert t.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA).to_pylist() == [event(0), event(1),
                                                                           event(2, user_id=None,
                                                                                 client_event_time=T0 - 5)]
    assert t.column("record_index").to_pylist() == [0, 0, 1]
    assert t.column("sequence_number").to_pylist() == ["100", "100", REAL_SEQ]
    assert int(t.column("sequence_number")[2].as_py()) > 2**63  # exact: compare as integers


def test_attributes_can_be_parsed_in_the_same_pass(con):
    records = [kinesis_record([line(event(0, attributes={"character_class": "mage", "value": 12.5})),
                               line(event(1, attributes={"value": "7"})),
                               line(event(2, attributes={"value": "many", "character_class": 3}))], 1)]
    batch = decode_records(records, attribute_types={"character_class": "VARCHAR", "value": "DOUBLE"}, con=con)
    assert batch.events.column("parsed_attributes").to_pylist() == [
        {"character_class": "mage", "value": 12.5}, {"character_class": None, "value": 7.0},
        {"character_class": "3", "value": None}]


def test_one_bad_line_does_not_sink_the_batch(con):
    records = [kinesis_record([line(event(0))], 1),
               kinesis_record([line(event(1)), b'{"event_id": "broken', line(event(2))], 2),
               kinesis_record([line(event(3))], 3)]
    batch = decode_records(records, con=con)
    assert batch.events.column("event_id").to_pylist() == ["e0", "e1", "e2", "e3"]
    assert batch.events.column("record_index").to_pylist() == [0, 1, 1, 2]
    (bad,) = batch.bad
    assert (bad.sequence_number, bad.record_index, bad.line_index, bad.data) == ("2", 1, 1, b'{"event_id": "broken')
    assert "JSON" in bad.reason


@pytest.mark.parametrize("overrides,reason", [
    ({"event_time": None}, "missing required field(s): event_time"),
    ({"app_id": None, "event_id": None}, "missing required field(s): event_id, app_id"),
    ({"event_type": "Level-Up"}, "does not match"),
    ({"attributes": "[1, 2]"}, "attributes is not a string holding a JSON object"),
    ({"attributes": "{not json"}, "attributes is not a string holding a JSON object"),
])
def test_lines_failing_the_schema_are_bad_records_with_their_bytes(con, overrides, reason):
    bad_line = line(event(1, **overrides))
    records = [kinesis_record([line(event(0)), bad_line, line(event(2))], 7)]
    for attribute_types in (None, {"value": "DOUBLE"}):
        batch = decode_records(records, attribute_types=attribute_types, con=con)
        assert batch.events.column("event_id").to_pylist() == ["e0", "e2"]
        (bad,) = batch.bad
        assert (bad.record_index, bad.line_index, bad.data) == (0, 1, bad_line)
        assert reason in bad.reason


def test_a_value_of_the_wrong_type_is_a_bad_line(con):
    bad_line = line(event(1, event_time="yesterday"))
    batch = decode_records([kinesis_record([line(event(0)), bad_line], 9)], con=con)
    assert batch.events.num_rows == 1
    assert [(b.line_index, b.data) for b in batch.bad] == [(1, bad_line)]


def test_undecodable_records_are_bad_records_and_the_rest_is_kept(con):
    good = kinesis_record([line(event(0))], 1)
    not_b64 = {"kinesis": {"data": "***", "sequenceNumber": "2"}}
    wrong_magic = kinesis_record([], 3, data=b"JSON" + b"\x00" * 20)
    corrupt = kinesis_record([], 4, data=codec.HEADER.pack(codec.MAGIC, 100) + b"\x28\xb5\x2f\xfd garbage")
    truncated_data = codec.encode_lines([line(event(5))])[:-4]
    truncated = kinesis_record([], 5, data=truncated_data)
    not_kinesis = {"eventSource": "aws:sqs"}
    batch = decode_records([good, not_b64, wrong_magic, corrupt, truncated, not_kinesis], con=con)
    assert batch.events.column("event_id").to_pylist() == ["e0"]
    assert [(b.record_index, b.line_index) for b in batch.bad] == [(1, None), (2, None), (3, None), (4, None),
                                                                   (5, None)]
    assert batch.bad[0].data == b"***" and "base64" in batch.bad[0].reason
    assert batch.bad[1].data == base64.b64decode(wrong_magic["kinesis"]["data"])
    assert "zstd" in batch.bad[2].reason and batch.bad[3].data == truncated_data


def test_a_line_using_the_reserved_sentinel_key_is_rejected_not_misattributed(con):
    sneaky = line({**event(1), "__epz_u": 0})
    batch = decode_records([kinesis_record([line(event(0)), sneaky, line(event(2))], 1),
                            kinesis_record([line(event(3))], 2)], con=con)
    assert batch.events.column("event_id").to_pylist() == ["e0", "e2", "e3"]
    assert batch.events.column("record_index").to_pylist() == [0, 0, 1]
    assert [(b.record_index, b.line_index, b.data) for b in batch.bad] == [(0, 1, sneaky)]


def test_many_records_with_a_few_bad_ones_are_narrowed_down(con):
    records = [kinesis_record([line(event(i)), line(event(i + 1000))], i) for i in range(150)]
    records[70] = kinesis_record([line(event(70)), b"oops"], 70)
    records[140] = kinesis_record([], 140, data=b"EP1Z\x05\x00\x00\x00xx")
    batch = decode_records(records, con=con)
    assert batch.events.num_rows == 2 * 150 - 1 - 2
    assert [(b.record_index, b.line_index) for b in batch.bad] == [(70, 1), (140, None)]


def test_empty_batch(con):
    batch = decode_records([], con=con)
    assert batch.events.num_rows == 0 and batch.bad == ()
    assert batch.events.schema.names[:8] == EVENT_SCHEMA.names


def test_large_line_over_128_kib_survives_the_line_fallback(con):
    big = line(event(1, attributes={"blob": "x" * 300_000}))
    batch = decode_records([kinesis_record([line(event(0)), big, b"nope"], 1)], con=con)
    assert batch.events.column("event_id").to_pylist() == ["e0", "e1"]
    assert len(batch.bad) == 1


def test_works_without_a_connection():
    batch = decode_records([kinesis_record([line(event(0))], 1)])
    assert isinstance(batch.events, pa.Table) and batch.events.num_rows == 1
