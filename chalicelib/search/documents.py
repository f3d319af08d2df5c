"""Canonical event <-> search document. Pure logic.

The index document is the canonical event with ``attributes`` parsed back
into an object (stored as sent, unindexed), its searchable form ``attr``
(``attribute_index``: fixed fields, whatever the attributes hold) and a
``location`` geo_point when the attributes carry numeric ``lat``/``lon`` in range.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from chalicelib.search.attribute_index import attribute_index
from chalicelib.stream import envelope
from chalicelib.stream.instants import ms_to_iso

_STRING_FIELDS = tuple(f for f in envelope.REQUIRED_FIELDS if f in envelope.STRING_FIELDS)
_MS_FIELDS = tuple(f for f in envelope.REQUIRED_FIELDS if f in envelope.INSTANT_FIELDS)


class InvalidDocument(ValueError):
    """A decoded event line that cannot become a search document (goes to bad rows)."""


def document_id(app_id: str, event_id: str) -> str:
    """The ``_id``: event ids are chosen by clients, so they are unique per app only.

    ``app_id`` cannot contain ``:`` (``^[a-z0-9][a-z0-9_-]*$``), so the id is unambiguous;
    with the bare event id, one app re-using another's id would overwrite its document.
    """
    return f"{app_id}:{event_id}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_ms(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def location_of(attributes: dict[str, Any]) -> dict[str, float] | None:
    """``{"lat", "lon"}`` when attributes have numeric in-range lat/lon, else None."""
    lat, lon = attributes.get("lat"), attributes.get("lon")
    if _is_number(lat) and _is_number(lon) and -90 <= lat <= 90 and -180 <= lon <= 180:
        return {"lat": float(lat), "lon": float(lon)}
    return None


def parse_attributes(raw: Any) -> dict[str, Any]:
    """The attributes object from its canonical JSON string (an object is passed through)."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, (str, bytes)):
        raise InvalidDocument(f"attributes must be a JSON string, got {type(raw).__name__}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidDocument(f"attributes is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidDocument(f"attributes must hold a JSON object, got {type(value).__name__}")
    return value


def event_to_document(event: Any) -> dict[str, Any]:
    """Check a canonical event's envelope and build its index document.

    Raises:
        InvalidDocument: naming the field that is missing or of the wrong type.
    """
    if not isinstance(event, dict):
        raise InvalidDocument(f"an event line must be a JSON object, got {type(event).__name__}")
    for name in _STRING_FIELDS:
        value = event.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidDocument(f"{name} must be a non-empty string")
    for name in _MS_FIELDS:
        if not _is_ms(event.get(name)):
            raise InvalidDocument(f"{name} must be integer epoch milliseconds")
    user_id = event.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise InvalidDocument("user_id must be a string or null")
    client_event_time = event.get("client_event_time")
    if client_event_time is not None and not _is_ms(client_event_time):
        raise InvalidDocument("client_event_time must be integer epoch milliseconds or null")
    attributes = parse_attributes(event.get("attributes"))
    document = {
        "event_id": event["event_id"],
        "event_type": event["event_type"],
        "event_time": event["event_time"],
        "received_at": event["received_at"],
        "app_id": event["app_id"],
        "user_id": user_id,
        "client_event_time": client_event_time,
        "attributes": attributes,
    }
    attr = attribute_index(attributes)
    if attr:
        document["attr"] = attr
    location = location_of(attributes)
    if location is not None:
        document["location"] = location
    return document


def document_to_event(source: dict[str, Any]) -> dict[str, Any]:
    """A stored document as the API returns it: times as ISO-8601, attributes as an object."""
    client_event_time = source.get("client_event_time")
    return {
        "event_id": source.get("event_id"),
        "event_type": source.get("event_type"),
        "event_time": ms_to_iso(source["event_time"]),
        "received_at": ms_to_iso(source["received_at"]),
        "app_id": source.get("app_id"),
        "user_id": source.get("user_id"),
        "client_event_time": None if client_event_time is None else ms_to_iso(client_event_time),
        "attributes": source.get("attributes") or {},
    }
