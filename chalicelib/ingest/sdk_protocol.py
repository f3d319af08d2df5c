"""What the SDK-compatible protocols (Segment, PostHog) share: the interface and small pure helpers.

A protocol module (``segment.py``, ``posthog.py``) turns a decoded request body
into an :class:`SdkBatch` and each of its messages into a *raw canonical event*:
the dict a client of ``POST /v1/events`` would have sent. That dict goes to the
one validator (``validation.validate_event``), so every envelope rule (type,
id and user lengths, time range, skew correction by ``sent_at``, the 32 KiB
attributes limit) is applied in one place, whatever the protocol.

Pure: no clock, no environment, no AWS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence
from urllib.parse import parse_qs

import orjson

from chalicelib.http.errors import BadRequest, UnsupportedMediaType
from chalicelib.ingest.body import decompress, load_json
from chalicelib.ingest.validation import InvalidEvent
from chalicelib.stream.envelope import MAX_EVENT_ID_CHARS

GZIP_MAGIC = b"\x1f\x8b"
#: Where a stored event carries the user's traits, whatever the protocol sent them as: Segment's ``traits``
#: of an identify and ``context.traits`` of any call (RudderStack's Python SDK sends only the latter),
#: PostHog's ``$set_once`` and ``$set``. Always an object when present; only ever the user's traits.
TRAITS = "traits"
FORM_TYPE = "application/x-www-form-urlencoded"
#: Prefix of an event id derived from a message id longer than the envelope allows.
HASHED_ID_PREFIX = "sha256:"


@dataclass(frozen=True)
class SdkBatch:
    """The messages of one request and what the request says about all of them.

    Attributes:
        messages: the messages as sent (unvalidated).
        key: the app key found in the body, if any (the route prefers headers).
        shared: request-level fields the protocol applies to every message (``context``, ``sentAt``...).
    """

    messages: Sequence[Any]
    key: str | None = None
    shared: Mapping[str, Any] | None = None


class SdkProtocol(Protocol):
    """One SDK's wire protocol, as the SDK ingest service uses it."""

    #: ``segment``, ``posthog``: names its bad-row objects.
    name: str
    #: The field that holds a message's own id (named in the 200 body's errors).
    id_field: str

    def body_limit(self, path: str) -> int:
        """Most decompressed bytes a request to ``path`` may hold (413 above)."""

    def decode(self, body: bytes, content_type: str | None, content_encoding: str | None,
               query: Mapping[str, Any], path: str) -> Any:
        """The request body as a JSON value; raises ``RequestError`` subclasses."""

    def read(self, doc: Any, path: str) -> SdkBatch:
        """The messages and body key of a decoded body; raises ``BadRequest``."""

    def to_raw_event(self, message: Any, batch: SdkBatch, received_at: int) -> dict[str, Any]:
        """A message as a raw canonical event (``received_at`` when it has no time); raises ``InvalidEvent``."""

    def message_id(self, message: Any) -> Any:
        """The message's own id as sent (named in the response), or None."""

    #: Field names that hold the app's key in this protocol (``without_keys`` removes them).
    key_fields: tuple[str, ...]

    def redact(self, message: Any) -> Any:
        """The message without any key it carries (``without_keys``): what events and bad rows keep."""

    def success(self, accepted: int, errors: list[dict[str, Any]]) -> dict[str, Any]:
        """The 200 body."""


def inflate(body: bytes, content_encoding: str | None, max_bytes: int, gzip: bool = False) -> bytes:
    """An SDK request body, inflated when it is gzip: announced, requested (``gzip``) or sniffed.

    SDKs differ in how they say a body is compressed (``Content-Encoding: gzip``,
    PostHog's ``?compression=gzip-js``, nothing at all); a JSON text never starts
    with the gzip magic bytes, so a body that does is inflated.

    Raises:
        BadRequest: malformed gzip.
        PayloadTooLarge: more than ``max_bytes`` once decompressed.
        UnsupportedMediaType: a Content-Encoding other than gzip.
    """
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity") and (gzip or body[:2] == GZIP_MAGIC):
        encoding = "gzip"
    return decompress(body, encoding, max_bytes)


def parse_json(data: bytes) -> Any:
    """A JSON body, whatever its Content-Type (browsers send JSON as ``text/plain`` to avoid
    a CORS preflight), under the payload rules of ``body.load_json`` (``BadRequest`` naming the rule)."""
    return load_json(data)


def form_data(data: bytes) -> bytes:
    """The ``data`` field of a form-encoded body (base64 or plain JSON), as bytes of JSON."""
    try:
        fields = parse_qs(data.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"malformed form body: {exc}") from None
    value = (fields.get("data") or [""])[0]
    if not value:
        raise BadRequest("a form-encoded body must carry the events in its data field")
    if value.lstrip()[:1] in ("{", "["):
        return value.encode()
    try:
        return base64.b64decode(value.replace(" ", "+"), validate=False)  # a '+' not %-encoded reads as ' '
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"the data field is not valid base64: {exc}") from None


def refuse_compression(name: str) -> None:
    raise UnsupportedMediaType(f"compression {name[:32]!r} is not supported; use gzip (gzip-js) or none")


def id_string(value: Any, field: str) -> str | None:
    """An id as sent (SDKs send strings; integers are accepted and written in decimal)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidEvent(f"{field} must be a string, got {type(value).__name__}")


def event_id_for(message_id: str | None) -> str | None:
    """The envelope ``event_id`` of a message id: itself, or a digest when it is too long.

    A message id over 64 characters becomes ``sha256:`` + 40 hex digits of its
    SHA-256: still stable (retries deduplicate) and unique in practice.
    """
    if message_id is None or len(message_id) <= MAX_EVENT_ID_CHARS:
        return message_id
    return HASHED_ID_PREFIX + hashlib.sha256(message_id.encode()).hexdigest()[:40]


def optional_object(message: Mapping[str, Any], field: str) -> dict[str, Any]:
    """An object field of a message; absent or null is ``{}``."""
    value = message.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(f"{field} must be a JSON object, got {type(value).__name__}")
    return value


def check_size(message: Any, limit: int, what: str = "message") -> None:
    """Refuse a message over ``limit`` bytes of JSON (measured re-serialized, compact)."""
    size = len(orjson.dumps(message))
    if size > limit:
        raise InvalidEvent(f"{what} is {size} bytes; the limit is {limit} bytes")


def user_traits(*sources: tuple[str, Any]) -> dict[str, Any]:
    """The user's traits, merged from ``(name, value)`` sources in rising precedence (a later one wins a key).

    Raises:
        InvalidEvent: a source that is neither absent (None) nor a JSON object.
    """
    traits: dict[str, Any] = {}
    for name, value in sources:
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InvalidEvent(f"{name} must be a JSON object, got {type(value).__name__}")
        traits.update(value)
    return traits


def attributes_with(fields: Mapping[str, Any], meta_key: str, meta: dict[str, Any],
                    traits: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The event's attributes: the message's properties at the top, the user's traits under ``traits``
    (:data:`TRAITS`, when it carries any), its metadata under ``meta_key``.

    Properties stay at the top level so metrics and queries keyed on ``attributes.X`` see
    them as they would a native event's. A property that is itself named ``meta_key`` or
    ``traits`` is kept, inside the metadata, as ``shadowed_property`` or ``shadowed_traits``.
    """
    attributes = dict(fields)
    if meta_key in attributes:
        meta = {**meta, "shadowed_property": attributes[meta_key]}
    if TRAITS in attributes:
        meta = {**meta, "shadowed_traits": attributes.pop(TRAITS)}
    if traits:
        attributes[TRAITS] = dict(traits)
    attributes[meta_key] = meta
    return attributes


def without_keys(value: Any, key_fields: tuple[str, ...]) -> Any:
    """``value`` without the fields named like a key: at its top and in each object directly inside it.

    The one rule for keys sent where no key belongs: SDKs (and people) put the write key in the
    message (``writeKey``, ``api_key``, ``token``), in its properties/traits (``properties.token``
    of posthog-js, ``properties.writeKey``) or in its ``context``; none of them may be stored in
    an event's attributes or a bad row. Deeper objects are the app's own data and are kept.
    """
    if not isinstance(value, dict):
        return value
    return {name: ({k: v for k, v in inner.items() if k not in key_fields} if isinstance(inner, dict) else inner)
            for name, inner in value.items() if name not in key_fields}


def string_key(value: Any) -> str | None:
    """A key found in a body: a non-empty string, else None."""
    return value if isinstance(value, str) and value else None
