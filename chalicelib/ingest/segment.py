"""Segment's HTTP tracking API -> raw canonical events (pure).

Routes (``app.py``): ``POST /v1/batch`` with ``{"batch": [...], "context", "sentAt",
"writeKey"}`` (analytics-python, RudderStack and Jitsu clients; analytics.js in
batching mode posts the same body to ``/v1/b``), and ``POST /v1/track``,
``/identify``, ``/page``, ``/screen``, ``/group``, ``/alias`` with one message as
the body (analytics.js uses the one-letter paths ``/v1/t``, ``/v1/i``...).

One message is one event (the table is in docs/sending-events.md, "What the SDK routes accept"):

* ``messageId`` -> ``event_id`` (a longer one than 64 characters -> its digest);
* ``originalTimestamp`` (else ``timestamp``) -> ``event_time``, corrected by ``sentAt``
  with Segment's rule ``receivedAt - (sentAt - originalTimestamp)`` when it is
  sent (the message's own ``sentAt``, else the batch's); no time: the receive time;
* ``userId``, else ``anonymousId`` -> ``user_id``;
* ``track``: ``event`` -> ``event_type`` by ``names.event_type_for``; the other
  calls are events of their own type: ``identify``, ``page``, ``screen``, ``group``,
  ``alias`` (the page or screen name stays in the metadata);
* ``properties`` (track, page, screen) or the group's ``traits`` (group) -> the top
  level of ``attributes``;
* the user's traits -> ``attributes.traits`` (``sdk_protocol.TRAITS``): ``context.traits``
  of any call (the batch's context merged in; RudderStack's Python SDK sends an
  identify's traits only there) with an identify's own ``traits`` winning;
* everything else the message carries (type, event, name, ids, timestamps, context
  with the batch's context merged in, without its traits, integrations...) under
  ``attributes.segment``, except the write key.
"""

from __future__ import annotations

from typing import Any, Mapping

from chalicelib.http.errors import BadRequest
from chalicelib.ingest.names import event_type_for
from chalicelib.ingest.sdk_protocol import (TRAITS, SdkBatch, attributes_with, check_size, event_id_for, id_string,
                                            inflate, optional_object, parse_json, string_key, user_traits,
                                            without_keys)
from chalicelib.ingest.validation import InvalidEvent

NAME = "segment"
META_KEY = "segment"
#: Segment's documented limits: 500 KB per batch request, 32 KB per message.
BATCH_LIMIT_BYTES = 500 * 1024
MESSAGE_LIMIT_BYTES = 32 * 1024
TYPES = ("track", "identify", "page", "screen", "group", "alias")
#: Route -> the type its body is (None: a batch).
PATH_TYPES: dict[str, str | None] = {"/v1/batch": None, "/v1/b": None,
                                     **{f"/v1/{t}": t for t in TYPES}, **{f"/v1/{t[0]}": t for t in TYPES}}
#: Which object of a message holds its properties (the top level of attributes); an identify's ``traits``
#: are the user's (``attributes.traits``), a group's are the group's.
FIELDS_OF = {"track": "properties", "page": "properties", "screen": "properties",
             "identify": None, "group": "traits", "alias": None}
_KEY_FIELD = "writeKey"


class SegmentProtocol:
    """Segment's wire protocol (see the module docstring)."""

    name = NAME
    id_field = "messageId"
    key_fields = (_KEY_FIELD,)

    def body_limit(self, path: str) -> int:
        return MESSAGE_LIMIT_BYTES if PATH_TYPES.get(path) else BATCH_LIMIT_BYTES

    def decode(self, body: bytes, content_type: str | None, content_encoding: str | None,
               query: Mapping[str, Any], path: str) -> Any:
        return parse_json(inflate(body, content_encoding, self.body_limit(path)))

    def read(self, doc: Any, path: str) -> SdkBatch:
        if path not in PATH_TYPES:
            raise BadRequest(f"no Segment endpoint at {path}")
        if not isinstance(doc, dict):
            raise BadRequest("the body must be a JSON object")
        kind = PATH_TYPES[path]
        if kind is not None:  # the body is the message; the route says which type it is
            return SdkBatch([{**doc, "type": kind}], string_key(doc.get(_KEY_FIELD)),
                            {"context": None, "sentAt": None})
        batch = doc.get("batch")
        if not isinstance(batch, list):
            raise BadRequest('the body must be {"batch": [...]} with the messages in batch')
        context = doc.get("context")
        if context is not None and not isinstance(context, dict):
            raise BadRequest("the batch's context must be a JSON object")
        return SdkBatch(batch, string_key(doc.get(_KEY_FIELD)), {"context": context, "sentAt": doc.get("sentAt")})

    def to_raw_event(self, message: Any, batch: SdkBatch, received_at: int) -> dict[str, Any]:
        if not isinstance(message, dict):
            raise InvalidEvent(f"a message must be a JSON object, got {type(message).__name__}")
        check_size(message, MESSAGE_LIMIT_BYTES)
        message = self.redact(message)
        kind = message.get("type")
        if not isinstance(kind, str) or kind not in FIELDS_OF:
            raise InvalidEvent(f"type {str(kind)[:40]!r} must be one of {', '.join(TYPES)}")
        user_id = id_string(message.get("userId"), "userId")
        anonymous_id = id_string(message.get("anonymousId"), "anonymousId")
        if kind == "alias":
            if not user_id or message.get("previousId") in (None, ""):
                raise InvalidEvent("an alias needs userId and previousId")
        elif not (user_id or anonymous_id):
            raise InvalidEvent(f"a {kind} needs userId or anonymousId")
        if kind == "group" and message.get("groupId") in (None, ""):
            raise InvalidEvent("a group needs groupId")
        if kind == "track":
            name = message.get("event")
            if not isinstance(name, str) or not name:
                raise InvalidEvent("a track needs event, the event's name (a non-empty string)")
            event_type = event_type_for(name)
        else:
            event_type = kind
        fields_name = FIELDS_OF[kind]
        fields = optional_object(message, fields_name) if fields_name else {}

        shared = self.redact(batch.shared or {})
        moved = (fields_name, _KEY_FIELD, TRAITS if kind == "identify" else None)
        meta = {k: v for k, v in message.items() if k not in moved}
        context = {**(shared.get("context") or {}), **optional_object(message, "context")}
        traits = user_traits(("context.traits", context.pop(TRAITS, None)),
                             ("traits", message.get(TRAITS) if kind == "identify" else None))
        if context or "context" in message:
            meta["context"] = context
        sent_at = message.get("sentAt", shared.get("sentAt"))
        if sent_at is not None:
            meta["sentAt"] = sent_at
        client_time = message.get("originalTimestamp")
        if client_time is None:
            client_time = message.get("timestamp")

        raw: dict[str, Any] = {"event_type": event_type,
                               "event_id": event_id_for(id_string(message.get("messageId"), "messageId")),
                               "user_id": user_id or anonymous_id,
                               "attributes": attributes_with(fields, META_KEY, meta, traits)}
        if client_time is None:
            raw["event_time"] = received_at
        else:
            raw["event_time"] = client_time
            if sent_at is not None:
                raw["sent_at"] = sent_at
        return raw

    def message_id(self, message: Any) -> Any:
        return message.get("messageId") if isinstance(message, dict) else None

    def redact(self, message: Any) -> Any:
        return without_keys(message, self.key_fields)

    def success(self, accepted: int, errors: list[dict[str, Any]]) -> dict[str, Any]:
        return {"success": True, "accepted": accepted, "rejected": len(errors), "errors": errors}


SEGMENT = SegmentProtocol()
