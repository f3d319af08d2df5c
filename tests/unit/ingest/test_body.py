"""Body decoding: media types, bounded gzip, malformed input says where."""

import gzip

import pytest

from chalicelib.http.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
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


# --- the payload rules of load_json (docs/sending-events.md, "Payload rules")
from chalicelib.ingest.body import MAX_DEPTH, load_json  # noqa: E402


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_nesting_up_to_the_limit_is_read_and_one_level_more_is_400():
    assert load_json(nested(MAX_DEPTH)) is not None
    with pytest.raises(BadRequest, match=f"nests deeper than {MAX_DEPTH} levels"):
        load_json(nested(MAX_DEPTH + 1))
    with pytest.raises(BadRequest, match="malformed JSON: depth limit exceeded"):
        load_json(nested(5000))


@pytest.mark.parametrize("text", [b"[NaN]", b"[Infinity]", b"[-Infinity]", b"[1e400]", b"[" + b"7" * 400 + b"]"])
def test_nan_infinity_and_numbers_beyond_doubles_are_400(text):
    with pytest.raises(BadRequest, match="malformed JSON"):
        load_json(text)


def test_integers_beyond_64_bits_become_doubles():
    assert load_json(b"[18446744073709551617]") == [1.8446744073709552e19]
    assert load_json(b"[9223372036854775807]") == [9223372036854775807]


@pytest.mark.parametrize("text", [b'["\xff"]', b'["\xed\xa0\x80"]', b'["\\ud800"]', b'["\\udfff"]', b'["\\ud800\\u0041"]'])
def test_invalid_utf8_and_lone_surrogates_are_400(text):
    with pytest.raises(BadRequest, match="malformed JSON"):
        load_json(text)


def test_a_repeated_key_keeps_its_last_value():
    assert load_json(b'{"a": 1, "a": 2}') == {"a": 2}


def test_ndjson_is_cut_at_the_event_cap_before_the_rest_is_parsed():
    body = b"{}\n" * 5 + b"not json at all\n"
    with pytest.raises(PayloadTooLarge, match="more than 5 events"):
        parse_events(body, "application/x-ndjson", max_events=5)
    assert len(parse_events(b"{}\n" * 5, "application/x-ndjson", max_events=5)) == 5
