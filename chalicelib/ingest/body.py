"""Request body decoding: content negotiation, bounded gzip, JSON / NDJSON."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from chalicelib.api.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonlines",
                          "application/jsonl"})
_CHUNK = 64 * 1024


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


def parse_events(body: bytes, content_type: str | None) -> list[Any]:
    """Parse a decoded body into the list of raw (unvalidated) events."""
    kind = media_type(content_type)
    if kind in NDJSON_TYPES:
        return _parse_ndjson(body)
    if kind in JSON_TYPES:
        return _parse_json(body)
    shown = kind or "(none)"
    raise UnsupportedMediaType(f"Content-Type {shown} is not supported; use application/json "
                               f"or application/x-ndjson")


def _parse_json(body: bytes) -> list[Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and isinstance(doc.get("events"), list):
        extra = doc.keys() - {"events"}
        if extra:
            raise BadRequest(f"unknown top-level field(s) {sorted(extra)}; the body is {{\"events\": [...]}}")
        return doc["events"]
    raise BadRequest('body must be {"events": [...]}, a JSON array of events, or NDJSON')


def _parse_ndjson(body: bytes) -> list[Any]:
    events = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"malformed NDJSON at line {number}: {exc}") from None
    return events
