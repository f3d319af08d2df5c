"""PostHog's capture API -> raw canonical events (pure).

Routes (``app.py``): ``POST /batch/`` (posthog-python, posthog-node), ``/capture/``,
``/e/`` and ``/i/v0/e/`` (posthog-js). Each accepts every body shape PostHog's
capture does: ``{"api_key", "batch": [...], "sent_at"}``, one event with
``api_key`` beside it, or a JSON array of events; gzip announced by
``Content-Encoding``, by ``?compression=gzip-js`` or not at all (sniffed), and
posthog-js's form body ``data=<base64>`` (``?compression=base64``).

One event is one event:

* ``uuid`` -> ``event_id``; ``distinct_id`` (or ``properties.distinct_id``, where
  posthog-js puts it) -> ``user_id``;
* ``event`` -> ``event_type`` by ``names.event_type_for`` (``$pageview`` ->
  ``pageview``, ``$identify`` -> ``identify``);
* ``timestamp`` -> ``event_time``, corrected by ``sent_at`` when it is sent (PostHog's
  rule); without a timestamp, ``offset`` milliseconds before the receive time; else
  the receive time;
* ``properties`` -> the top level of ``attributes`` (``$``-prefixed ones included,
  the project key ``token`` removed); the rest of the event (its name, ids,
  timestamps) under ``attributes.posthog``;
* ``$set_once`` then ``$set`` (of the event, then of its properties; a later one wins a
  key) -> the user's traits, ``attributes.traits`` (``sdk_protocol.TRAITS``); the keys only
  ``$set_once`` gave are listed in ``attributes.posthog.set_once_keys`` (a person keeps its value).

posthog-js also calls, on every page load, ``GET /array/<key>/config.js`` (a script) or
``/array/<key>/config`` (JSON) for its remote configuration, and ``POST /flags/?v=2``
(older versions ``/decide/``) for feature flags. They are answered as a PostHog host that
serves capture only would: no flags, every remote feature off (session recording, surveys,
heatmaps, exception and performance capture, site apps), the compressions capture accepts.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from chalicelib.http.errors import BadRequest
from chalicelib.ingest.body import media_type
from chalicelib.ingest.names import event_type_for
from chalicelib.ingest.sdk_protocol import (FORM_TYPE, SdkBatch, attributes_with, check_size, event_id_for,
                                            form_data, id_string, inflate, optional_object, parse_json,
                                            refuse_compression, string_key, user_traits, without_keys)
from chalicelib.ingest.validation import InvalidEvent

NAME = "posthog"
META_KEY = "posthog"
#: PostHog's server takes request bodies up to 20 MiB; its SDKs send batches of up to 5 MiB
#: (plus the event that crossed it) and events of up to 900 KiB.
BODY_LIMIT_BYTES = 20 * 1024 * 1024
EVENT_LIMIT_BYTES = 1024 * 1024
PATHS = ("/batch", "/capture", "/e", "/i/v0/e")
#: posthog-js's remote configuration (JSON, and the script its module build loads first).
CONFIG_PATHS = ("/array/{key}/config", "/array/{key}/config.js")
#: Feature flags: ``/flags/`` (posthog-js since 1.2xx, posthog-node), ``/decide/`` (older clients).
FLAGS_PATHS = ("/flags", "/decide")
_KEY_FIELDS = ("api_key", "token")
#: Where the keys only ``$set_once`` gave are listed, in the metadata: the name
#: ``chalicelib.processing.traits.SET_ONCE_KEYS`` reads (not imported: that package loads pyarrow).
SET_ONCE_KEYS = "set_once_keys"
#: Person properties: the user's traits (``$set`` wins over ``$set_once``).
_TRAIT_FIELDS = ("$set_once", "$set")
#: The remote configuration of every project: capture only, with the compressions capture inflates.
#: ``surveys`` is left out on purpose: posthog-js 1.449 loads its surveys bundle (from this host's
#: ``/static/``) when the key is present, even as ``false``.
REMOTE_CONFIG: dict[str, Any] = {
    "supportedCompression": ["gzip", "gzip-js"], "hasFeatureFlags": False, "sessionRecording": False,
    "heatmaps": False, "autocaptureExceptions": False, "capturePerformance": False, "captureDeadClicks": False,
    "siteApps": []}
#: The config as posthog-js's script loader reads it (``window._POSTHOG_REMOTE_CONFIG[token]``). The token
#: is read from the script's own URL, so the answer is the same for every key and never echoes one.
_CONFIG_SCRIPT = (
    "(function(){var s=document.currentScript,m=s&&/\\/array\\/([^\\/?#]+)\\/config\\.js/.exec(s.src);"
    "if(!m)return;var c=window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
    "c[decodeURIComponent(m[1])]={config:%s,siteApps:[]};})();\n")


def _event_key(event: Any) -> str | None:
    if not isinstance(event, dict):
        return None
    properties = event.get("properties")
    nested = properties.get("token") if isinstance(properties, dict) else None
    return string_key(event.get("api_key")) or string_key(event.get("token")) or string_key(nested)


class PostHogProtocol:
    """PostHog's wire protocol (see the module docstring)."""

    name = NAME
    id_field = "uuid"
    key_fields = _KEY_FIELDS

    def body_limit(self, path: str) -> int:
        return BODY_LIMIT_BYTES

    def decode(self, body: bytes, content_type: str | None, content_encoding: str | None,
               query: Mapping[str, Any], path: str) -> Any:
        compression = str(query.get("compression") or "").strip().lower()
        if compression and compression not in ("gzip", "gzip-js", "base64"):
            refuse_compression(compression)
        data = inflate(body, content_encoding, self.body_limit(path), gzip=compression.startswith("gzip"))
        if media_type(content_type) == FORM_TYPE:  # posthog-js without compression: data=<base64 JSON>
            data = form_data(data)
        return parse_json(data)

    def read(self, doc: Any, path: str) -> SdkBatch:
        key = None
        shared: dict[str, Any] = {}
        if isinstance(doc, dict) and "batch" in doc:
            if not isinstance(doc["batch"], list):
                raise BadRequest('batch must be a JSON array of events')
            events = doc["batch"]
            key = string_key(doc.get("api_key")) or string_key(doc.get("token"))
            shared["sent_at"] = doc.get("sent_at")
        elif isinstance(doc, dict):
            events = [doc]
            shared["sent_at"] = doc.get("sent_at")
        elif isinstance(doc, list):
            events = doc
        else:
            raise BadRequest("the body must be a JSON object or an array of events")
        if key is None:  # posthog-js carries the key in each event (properties.token)
            keys = {k for k in map(_event_key, events) if k}
            if len(keys) > 1:
                raise BadRequest("the events carry different project API keys; send one project per request")
            key = next(iter(keys), None)
        return SdkBatch(events, key, shared)

    def to_raw_event(self, event: Any, batch: SdkBatch, received_at: int) -> dict[str, Any]:
        if not isinstance(event, dict):
            raise InvalidEvent(f"an event must be a JSON object, got {type(event).__name__}")
        check_size(event, EVENT_LIMIT_BYTES, "event")
        event = self.redact(event)
        name = event.get("event")
        if not isinstance(name, str) or not name:
            raise InvalidEvent("event, the event's name, must be a non-empty string")
        sent = optional_object(event, "properties")
        traits = user_traits(*((where, doc.get(f)) for f in _TRAIT_FIELDS
                               for where, doc in ((f, event), (f"properties.{f}", sent))))
        properties = {k: v for k, v in sent.items() if k not in _KEY_FIELDS and k not in _TRAIT_FIELDS}
        # Keys only $set_once gave: a person keeps its value of them (chalicelib/processing/traits.py).
        once_keys = sorted(set().union(*(doc.get("$set_once") or {} for doc in (event, sent)
                                         if isinstance(doc.get("$set_once"), dict)))
                           - set().union(*(doc.get("$set") or {} for doc in (event, sent)
                                           if isinstance(doc.get("$set"), dict))))
        distinct_id = event.get("distinct_id")
        if distinct_id is None:
            distinct_id = properties.get("distinct_id")
        distinct_id = id_string(distinct_id, "distinct_id")
        if not distinct_id:
            raise InvalidEvent("distinct_id is required")

        shared = batch.shared or {}
        meta = {k: v for k, v in event.items() if k != "properties" and k not in _KEY_FIELDS and k not in _TRAIT_FIELDS}
        sent_at = event.get("sent_at", shared.get("sent_at"))
        if sent_at is not None:
            meta["sent_at"] = sent_at
        if once_keys:
            meta[SET_ONCE_KEYS] = once_keys
        raw: dict[str, Any] = {"event_type": event_type_for(name),
                               "event_id": event_id_for(id_string(event.get("uuid"), "uuid")),
                               "user_id": distinct_id,
                               "attributes": attributes_with(properties, META_KEY, meta, traits)}
        timestamp = event.get("timestamp")
        offset = event.get("offset")
        if timestamp is not None:
            raw["event_time"] = timestamp
            if sent_at is not None:
                raw["sent_at"] = sent_at
        elif offset is not None:
            if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= received_at:
                raise InvalidEvent("offset must be a non-negative integer of milliseconds")
            raw["event_time"] = received_at - offset
        else:
            raw["event_time"] = received_at
        return raw

    def message_id(self, event: Any) -> Any:
        return event.get("uuid") if isinstance(event, dict) else None

    def redact(self, event: Any) -> Any:
        return without_keys(event, self.key_fields)

    def success(self, accepted: int, errors: list[dict[str, Any]]) -> dict[str, Any]:
        return {"status": 1, "accepted": accepted, "rejected": len(errors), "errors": errors}


POSTHOG = PostHogProtocol()


def remote_config() -> dict[str, Any]:
    """``GET /array/<key>/config``: capture only, no flags (a new dict each call)."""
    return orjson.loads(orjson.dumps(REMOTE_CONFIG))


def remote_config_script() -> str:
    """``GET /array/<key>/config.js``: the same configuration, as the script posthog-js loads."""
    return _CONFIG_SCRIPT % orjson.dumps(REMOTE_CONFIG).decode()


def flags_answer() -> dict[str, Any]:
    """``POST /flags/`` and ``/decide/``: no flag for anyone, in the shapes of both versions (``flags``: v2;
    ``featureFlags``, ``featureFlagPayloads``: v1 and ``/decide/``), with the remote configuration older
    clients read from ``/decide/``."""
    return {"flags": {}, "featureFlags": {}, "featureFlagPayloads": {}, "errorsWhileComputingFlags": False,
            **remote_config()}


def flags_key(doc: Any) -> str | None:
    """The project key of a flags request's body (``token``; ``api_key`` from server SDKs)."""
    if not isinstance(doc, dict):
        raise BadRequest("a flags request's body must be a JSON object")
    return string_key(doc.get("token")) or string_key(doc.get("api_key"))
