"""The event envelope, declared once.

Every event on the stream is one NDJSON line with exactly these keys, in this
order. The other schemas derive from this table:

* the validator's accepted client fields and rules (``ingest/validation.py``);
* the decoded Arrow table of the consumers (:func:`arrow_schema`, times as int64 ms);
* the raw archive's Parquet schema and so its Glue columns (:func:`arrow_schema`
  with ``timestamps=True``, minus the partition column ``app_id``);
* the envelope part of the OpenSearch mapping (:func:`opensearch_properties`);
* the ``event`` struct of the bad-rows table (:func:`hive_struct`).

Pure and light: pyarrow is imported only inside :func:`arrow_schema`, so the
ingest path (which needs only the field list) never loads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Kinds of envelope fields: a string, an instant (epoch ms) or a JSON object carried as a string.
STRING, INSTANT, JSON_OBJECT = "string", "instant", "json"

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
EVENT_TYPE_RE = re.compile(EVENT_TYPE_PATTERN[1:-1])
APP_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_EVENT_ID_CHARS = 64
MAX_USER_ID_CHARS = 128
MAX_ATTRIBUTES_BYTES = 32 * 1024


@dataclass(frozen=True)
class EnvelopeField:
    """One key of the canonical event line.

    Attributes:
        name: the key.
        kind: ``STRING``, ``INSTANT`` (integer epoch ms on the stream) or ``JSON_OBJECT``
            (an object, carried as its JSON text so consumers can parse the envelope columnar).
        required: never null on the stream.
        from_client: a client may send it (the others are stamped by the server).
        doc: what it holds.
    """

    name: str
    kind: str
    required: bool
    from_client: bool
    doc: str


ENVELOPE: tuple[EnvelopeField, ...] = (
    EnvelopeField("event_id", STRING, True, True, "client id (1-64 chars) or a server UUID; unique per app"),
    EnvelopeField("event_type", STRING, True, True, "^[a-z][a-z0-9_]{0,63}$"),
    EnvelopeField("event_time", INSTANT, True, True, "when it happened (skew-corrected by sent_at)"),
    EnvelopeField("received_at", INSTANT, True, False, "when the API accepted it"),
    EnvelopeField("app_id", STRING, True, False, "the app of the API key, never from the body"),
    EnvelopeField("user_id", STRING, False, True, "optional, 1-128 chars"),
    EnvelopeField("client_event_time", INSTANT, False, False, "event_time as sent, when sent_at corrected it"),
    EnvelopeField("attributes", JSON_OBJECT, True, True, "free-form object, at most 32 KiB serialized"),
)

#: The keys of a canonical line, in order.
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in ENVELOPE)
REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in ENVELOPE if f.required)
INSTANT_FIELDS: tuple[str, ...] = tuple(f.name for f in ENVELOPE if f.kind == INSTANT)
STRING_FIELDS: tuple[str, ...] = tuple(f.name for f in ENVELOPE if f.kind == STRING)
#: What a client may send: its envelope fields plus ``sent_at`` (its clock, for skew correction).
CLIENT_FIELDS: frozenset[str] = frozenset(f.name for f in ENVELOPE if f.from_client) | {"sent_at"}
#: The partition column of the raw archive (in the path, not in the file).
PARTITION_FIELD = "app_id"


def arrow_schema(*, timestamps: bool = False, without: tuple[str, ...] = ()) -> Any:
    """The envelope as an Arrow schema.

    Args:
        timestamps: instants as ``timestamp[ms, UTC]`` (the Parquet archive) instead of int64 ms
            (the decoded batch the consumers compute on).
        without: fields to leave out (e.g. the partition column ``app_id``).

    Returns:
        A ``pyarrow.Schema``; ``attributes`` is its JSON text.
    """
    import pyarrow as pa  # only the consumers need Arrow; the ingest path never imports it

    instant = pa.timestamp("ms", tz="UTC") if timestamps else pa.int64()
    types = {STRING: pa.string(), INSTANT: instant, JSON_OBJECT: pa.string()}
    return pa.schema([(f.name, types[f.kind]) for f in ENVELOPE if f.name not in without])


def hive_struct(extra: tuple[tuple[str, str], ...] = ()) -> str:
    """The envelope as a Hive ``struct<...>`` of the JSON bad rows (instants as bigint ms)."""
    types = {STRING: "string", INSTANT: "bigint", JSON_OBJECT: "string"}
    fields = [f"{f.name}:{types[f.kind]}" for f in ENVELOPE] + [f"{name}:{typ}" for name, typ in extra]
    return f"struct<{','.join(fields)}>"


def opensearch_properties(date_format: str) -> dict[str, dict[str, Any]]:
    """The envelope part of the index mapping: keywords for strings, dates for instants.

    ``attributes`` is left to the caller (stored unindexed there, searchable through ``attr``).
    """
    by_kind = {STRING: {"type": "keyword"}, INSTANT: {"type": "date", "format": date_format}}
    return {f.name: dict(by_kind[f.kind]) for f in ENVELOPE if f.kind != JSON_OBJECT}
