"""Bulk-request building blocks. Pure logic: sizing, outcome classes (backoff: ``stream.retry``).

An item of a ``_bulk`` request is the action line plus the document line,
kept as encoded bytes so the request size is known exactly before sending.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import orjson

from chalicelib.stream.retry import Backoff

DEFAULT_MAX_BULK_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_BULK_ACTIONS = 10_000

#: 400s that are about the cluster or the index, not about the document.
TRANSIENT_400_TYPES = frozenset({"validation_exception", "index_closed_exception", "cluster_block_exception"})


class Outcome(enum.Enum):
    OK = "ok"
    #: Retrying cannot help: the document itself is rejected (-> bad rows).
    PERMANENT = "permanent"
    #: May succeed later: retry, then report the record as failed.
    TRANSIENT = "transient"


@dataclass(frozen=True)
class BulkItem:
    """One ``index`` action: ``position`` identifies the event within the batch."""

    position: int
    index: str
    doc_id: str
    payload: bytes

    @property
    def size(self) -> int:
        return len(self.payload)


def encode_item(position: int, index: str, doc_id: str, document: dict[str, Any]) -> BulkItem:
    """An ``index`` op (create or overwrite by id: re-indexing the same event is idempotent)."""
    action = orjson.dumps({"index": {"_index": index, "_id": doc_id}})
    return BulkItem(position, index, doc_id, action + b"\n" + orjson.dumps(document) + b"\n")


def bulk_body(items: Iterable[BulkItem]) -> bytes:
    return b"".join(item.payload for item in items)


def chunk_by_bytes(items: Sequence[BulkItem], max_bytes: int = DEFAULT_MAX_BULK_BYTES,
                   max_actions: int = DEFAULT_MAX_BULK_ACTIONS) -> Iterator[list[BulkItem]]:
    """Split items, in order, into requests of at most ``max_bytes`` / ``max_actions``.

    An item larger than ``max_bytes`` on its own goes alone in its request.
    """
    if max_bytes < 1 or max_actions < 1:
        raise ValueError("max_bytes and max_actions must be positive")
    chunk: list[BulkItem] = []
    size = 0
    for item in items:
        if chunk and (size + item.size > max_bytes or len(chunk) >= max_actions):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item.size
    if chunk:
        yield chunk


def error_type(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("type") or "unknown")
    return str(error) if error else "unknown"


def error_reason(error: Any) -> str:
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        caused = error.get("caused_by")
        if isinstance(caused, dict) and caused.get("reason"):
            reason += f" (caused by {caused.get('type')}: {caused.get('reason')})"
        return reason[:2000]
    return str(error)[:2000]


_TYPE_RE = re.compile(r"[a-z][a-z0-9_]{0,79}")


def public_reason(error: Any) -> str:
    """What a bad row may say about a refusal: the error types only (``x caused by y``).

    The cluster's messages quote the shared mapping (field names and types that other
    apps' documents created) and preview values: a tenant must not learn them from its
    own bad rows, so they go to the log (``error_reason``), never to bad rows.
    """
    kinds: list[str] = []
    while isinstance(error, dict) and len(kinds) < 3:
        kind = error_type(error)
        kinds.append(kind if _TYPE_RE.fullmatch(kind) else "unknown")
        error = error.get("caused_by")
    return " caused by ".join(kinds) or "unknown"


def classify_item(status: int, error: Any = None) -> Outcome:
    """The outcome of one bulk response item."""
    if 200 <= status < 300:
        return Outcome.OK
    if status in (400, 413) and error_type(error) not in TRANSIENT_400_TYPES:
        return Outcome.PERMANENT
    return Outcome.TRANSIENT


#: Bulk requests: patient retries (a throttled cluster recovers in seconds; the rest is redelivered).
DEFAULT_BACKOFF = Backoff(max_attempts=6, base_s=0.2, cap_s=10.0)
