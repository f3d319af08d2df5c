"""The composable index template of the daily event indices.

``build_index_template`` is pure; ``ensure_template`` writes it only when the
stored copy differs (a fingerprint in ``_meta``), so it is idempotent and
cheap to call at every cold start.

Mapping choices:

* The whole mapping is ``dynamic: strict`` and fixed: no document can add a
  field, so none can be refused, or indexed differently, because of documents
  sent before it (another app's or its own, today's index or one created early
  by an event dated tomorrow), and the field count is the same whatever
  attribute names tenants send.
* ``attributes`` is stored unindexed (``enabled: false``): kept in
  ``_source`` exactly as sent. Its values are searchable through the fixed
  ``attr`` object that ``attribute_index`` derives (text, numbers, flags,
  ``path=value`` pairs, nested numeric ``{path, value}``).
"""

from __future__ import annotations

import hashlib
import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson
from opensearchpy.exceptions import TransportError

from chalicelib.search import attribute_index
from chalicelib.search.errors import TemplateError
from chalicelib.stream import envelope
from chalicelib.search.naming import DEFAULT_PREFIX, check_prefix, index_pattern

DATE_FORMAT = "strict_date_optional_time||epoch_millis"
#: ``index.<key>``: a search over 2 s (query phase) or a bulk item over 2 s is a warning, half a
#: second is worth an info line; fetches (documents back) should never take a second.
SLOWLOG_THRESHOLDS = {
    "search.slowlog.threshold.query.warn": "2s", "search.slowlog.threshold.query.info": "500ms",
    "search.slowlog.threshold.fetch.warn": "1s",
    "indexing.slowlog.threshold.index.warn": "2s", "indexing.slowlog.threshold.index.info": "500ms",
}


@dataclass(frozen=True)
class TemplateSettings:
    """Index settings; ``None`` leaves a setting out (Serverless collections reject them)."""

    prefix: str = DEFAULT_PREFIX
    shards: int | None = 1
    replicas: int | None = 1
    refresh_interval: str | None = "1s"
    total_fields_limit: int | None = 2000
    #: Slow-log thresholds (search query/fetch, indexing): the domain publishes its slow logs, and a
    #: node writes one only for an index whose settings name a threshold. ``None``: none set.
    slowlog: dict[str, str] | None = dataclasses.field(default_factory=lambda: dict(SLOWLOG_THRESHOLDS))
    priority: int = 100

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        if self.shards is not None and self.shards < 1:
            raise ValueError("shards must be >= 1")
        if self.replicas is not None and self.replicas < 0:
            raise ValueError("replicas must be >= 0")

    @property
    def name(self) -> str:
        return f"{self.prefix}-daily"


def _index_settings(settings: TemplateSettings) -> dict[str, Any]:
    index: dict[str, Any] = {}
    if settings.shards is not None:
        index["number_of_shards"] = settings.shards
    if settings.replicas is not None:
        index["number_of_replicas"] = settings.replicas
    if settings.refresh_interval is not None:
        index["refresh_interval"] = settings.refresh_interval
    if settings.total_fields_limit is not None:
        index["mapping"] = {"total_fields": {"limit": settings.total_fields_limit}}
    for key, value in sorted((settings.slowlog or {}).items()):
        node = index
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return {"index": index} if index else {}


def event_mappings() -> dict[str, Any]:
    return {
        "dynamic": "strict",
        "properties": {
            **envelope.opensearch_properties(DATE_FORMAT),
            "location": {"type": "geo_point"},
            "attributes": {"type": "object", "enabled": False},
            "attr": attribute_index.mapping(),
        },
    }


def fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def build_index_template(settings: TemplateSettings) -> dict[str, Any]:
    """The body of ``PUT _index_template/<name>``, with a content fingerprint in ``_meta``."""
    template: dict[str, Any] = {"mappings": event_mappings()}
    index_settings = _index_settings(settings)
    if index_settings:
        template["settings"] = index_settings
    body: dict[str, Any] = {
        "index_patterns": [index_pattern(settings.prefix)],
        "priority": settings.priority,
        "template": template,
    }
    body["_meta"] = {"managed_by": "chalicelib.search", "fingerprint": fingerprint(body)}
    return body


def ensure_template(client: Any, settings: TemplateSettings) -> bool:
    """Create or update the template; returns True when it was written, False when current.

    Only indices created afterwards use a changed template: existing daily
    indices keep their mapping (at most ``retention`` days of drift).
    """
    body = build_index_template(settings)
    try:
        stored = client.indices.get_index_template(name=settings.name, ignore=[404])  # 404: none yet
        for entry in stored.get("index_templates", []):
            meta = entry.get("index_template", {}).get("_meta") or {}
            if entry.get("name") == settings.name and meta.get("fingerprint") == body["_meta"]["fingerprint"]:
                return False
        client.indices.put_index_template(name=settings.name, body=body)
    except TransportError as exc:
        raise TemplateError(f"index template {settings.name!r}: {exc}") from exc
    return True
