"""Packing many events per Kinesis record, within the record limit."""

import random

import pytest

from chalicelib.stream import codec


def lines(n, size=200, seed=0):
    rng = random.Random(seed)
    return [("{\"event_id\":\"%d\",\"pad\":\"%s\"}" % (i, "".join(rng.choice("abcdef0123456789")
                                                                  for _ in range(size)))).encode()
            for i in range(n)]


def test_round_trip_returns_the_ndjson():
    data = lines(10)
    [record] = codec.pack(data)
    assert codec.decode_record(record.data) == b"\n".join(data) + b"\n"
    assert record.event_indexes == tuple(range(10))


def test_a_typical_request_becomes_one_record():
    assert len(codec.pack(lines(1000))) == 1


def test_records_split_only_when_over_the_limit_and_keep_every_event_once():
    data = lines(400, size=2000)  # incompressible-ish: ~800 KB compressed in total
    records = codec.pack(data, max_record_bytes=100_000)
    assert all(len(r.data) <= 100_000 for r in records)
    assert sorted(i for r in records for i in r.event_indexes) == list(range(400))
    assert b"".join(codec.decode_record(r.data) for r in records) == b"\n".join(data) + b"\n"


def test_unknown_or_corrupt_records_are_undecodable():
    with pytest.raises(codec.UndecodableRecord, match="unknown record format"):
        codec.decode_record(b'{"event_type": "raw json"}')
    with pytest.raises(codec.UndecodableRecord, match="shorter than the header"):
        codec.decode_record(b"EP")
    good = codec.pack(lines(3))[0].data
    with pytest.raises(codec.UndecodableRecord, match="corrupt"):
        codec.decode_record(good[:12] + b"\x00" * 20)
