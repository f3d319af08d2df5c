"""Body decoding: media types, bounded gzip, malformed input says where."""

import gzip

import pytest

from chalicelib.api.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from chalicelib.ingest.body import decompress, parse_events

MIB = 1024 * 1024


def test_gzip_body_is_inflated():
    assert decompress(gzip.compress(b'[{"a":1}]'), "gzip", MIB) == b'[{"a":1}]'


def test_gzip_bomb_stops_at_the_cap_without_inflating_it():
    bomb = gzip.compress(b"\0" * (200 * MIB), compresslevel=9)  # ~200 KB on the wire
    assert len(bomb) < MIB
    with pytest.raises(PayloadTooLarge, match="exceeds the limit of 5242880 bytes"):
        decompress(bomb, "gzip", 5 * MIB)


def test_plain_body_over_the_cap_is_413():
    with pytest.raises(PayloadTooLarge, match="the limit is 10 bytes"):
        decompress(b"x" * 11, None, 10)


def test_corrupt_and_truncated_gzip_are_400():
    with pytest.raises(BadRequest, match="not valid gzip"):
        decompress(b"not gzip at all", "gzip", MIB)
    with pytest.raises(BadRequest, match="truncated"):
        decompress(gzip.compress(b"x" * 1000)[:-12], "gzip", MIB)


def test_unknown_content_encoding_is_415():
    with pytest.raises(UnsupportedMediaType, match="'br' is not supported"):
        decompress(b"", "br", MIB)


def test_three_body_shapes_are_accepted():
    assert parse_events(b'{"events": [{"a": 1}]}', "application/json") == [{"a": 1}]
    assert parse_events(b'[{"a": 1}, 2]', "application/json; charset=utf-8") == [{"a": 1}, 2]
    assert parse_events(b'{"a": 1}\n\n{"b": 2}\n', "application/x-ndjson") == [{"a": 1}, {"b": 2}]


def test_malformed_json_says_where():
    with pytest.raises(BadRequest, match=r"malformed JSON: .*line 1 column"):
        parse_events(b'{"events": [}', "application/json")


def test_malformed_ndjson_names_the_line():
    with pytest.raises(BadRequest, match="malformed NDJSON at line 3"):
        parse_events(b'{"a": 1}\n{"b": 2}\n{oops\n', "application/x-ndjson")


def test_object_without_events_is_400():
    with pytest.raises(BadRequest, match=r'body must be \{"events"'):
        parse_events(b'{"event_type": "a"}', "application/json")


def test_unsupported_content_type_is_415():
    with pytest.raises(UnsupportedMediaType, match="text/plain is not supported"):
        parse_events(b"x", "text/plain")
    with pytest.raises(UnsupportedMediaType, match=r"\(none\) is not supported"):
        parse_events(b"x", None)


def test_every_member_of_a_multi_member_gzip_body_is_read():
    body = gzip.compress(b'{"a": 1}\n') + gzip.compress(b'{"b": 2}\n')
    assert decompress(body, "gzip", MIB) == b'{"a": 1}\n{"b": 2}\n'


def test_trailing_garbage_after_gzip_is_400_not_silently_dropped():
    with pytest.raises(BadRequest, match="not valid gzip"):
        decompress(gzip.compress(b"[]") + b"junk", "gzip", MIB)
