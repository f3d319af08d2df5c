"""Request body decoding: content negotiation, bounded gzip, JSON / NDJSON."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from chalicelib.http.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonlines",
                          "application/jsonl"})
_CHUNK = 64 * 1024
#: Deepest nesting of arrays and objects a body may have (orjson serializes no deeper).
MAX_DEPTH = 254


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, lower-cased."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo Content-Encoding, never producing more than ``max_bytes``.

    gzip is inflated in bounded steps, so a gzip bomb stops at the cap
    instead of being expanded into memory.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {max_bytes} bytes")
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    parts: list[bytes] = []
    total = 0
    data = body
    try:
        while True:  # one gzip member per turn: a body may hold several (RFC 1952)
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while not inflater.eof:
                out = inflater.decompress(data, _CHUNK)
                total += len(out)
                if total > max_bytes:
                    raise PayloadTooLarge(f"decompressed request body exceeds the limit of {max_bytes} bytes")
                parts.append(out)
                data = inflater.unconsumed_tail
                if not data and not out and not inflater.eof:
                    raise BadRequest("body is not valid gzip: the stream is truncated")
            data = inflater.unused_data
            if not data:
                break
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}") from None
    return b"".join(parts)


def load_json(data: bytes, where: str = "JSON") -> Any:
    """One JSON text -> its value, under the payload rules; raises ``BadRequest`` naming the rule.

    The rules (docs/sending-events.md, "Payload rules"), each a 400 for the whole request:

    * UTF-8 only: invalid bytes, and surrogates (raw or as a lone ``\\ud800`` escape), are malformed;
    * ``NaN``, ``Infinity`` and numbers beyond the double range (``1e400``, a 1000-digit integer)
      are malformed; integers beyond 64 bits are read as doubles, as JavaScript reads them;
    * at most :data:`MAX_DEPTH` levels of nesting (what every part of the pipeline re-serializes);
    * an object's repeated key: the last value wins (RFC 8259 leaves it open; JavaScript's
      ``JSON.parse`` and Python's ``json`` do the same), and what is stored has each key once.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed {where}: {exc}") from None
    if isinstance(value, (dict, list)):
        try:  # orjson reads 1024 levels but writes 254: refuse here what nothing downstream could write
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            raise BadRequest(f"{where} nests deeper than {MAX_DEPTH} levels of arrays and objects") from None
    return value


def parse_events(body: bytes, content_type: str | None, max_events: int | None = None) -> list[Any]:
    """Parse a decoded body into the list of raw (unvalidated) events.

    With ``max_events``, NDJSON past that many lines is refused (413) before the rest is read.
    """
    kind = media_type(content_type)
    if kind in NDJSON_TYPES:
        return _parse_ndjson(body, max_events)
    if kind in JSON_TYPES:
        return _parse_json(body)
    shown = kind or "(none)"
    raise UnsupportedMediaType(f"Content-Type {shown[:100]} is not supported; use application/json "
                               f"or application/x-ndjson")


def _parse_json(body: bytes) -> list[Any]:
    doc = load_json(body)
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and isinstance(doc.get("events"), list):
        extra = doc.keys() - {"events"}
        if extra:
            shown = [name[:64] for name in sorted(extra)[:5]]
            raise BadRequest(f"unknown top-level field(s) {shown}; the body is {{\"events\": [...]}}")
        return doc["events"]
    raise BadRequest('body must be {"events": [...]}, a JSON array of events, or NDJSON')


def _parse_ndjson(body: bytes, max_events: int | None) -> list[Any]:
    events: list[Any] = []
    start, number, size = 0, 0, len(body)
    while start < size:  # line by line, without splitting the whole body first
        end = body.find(b"\n", start)
        end = size if end < 0 else end
        line, start, number = body[start:end], end + 1, number + 1
        if not line.strip():
            continue
        if max_events is not None and len(events) == max_events:
            raise PayloadTooLarge(f"the request holds more than {max_events} events; "
                                  f"the limit is {max_events} events per request")
        events.append(load_json(line, f"NDJSON at line {number}"))
    return events
