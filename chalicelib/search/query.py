"""GET /v1/search: query-string parameters -> OpenSearch request. Pure logic.

Parameters: ``q``, ``event_type``, ``user_id``, ``from``, ``to``, ``size``,
``cursor``. The time range is half-open, ``[from, to)``; by default the 24 h
before now. The cursor pins the time range of the first page, so paging
through "the last 24 h" stays on one consistent window while time moves on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Mapping

import orjson

from chalicelib.stream.envelope import EVENT_TYPE_RE, MAX_USER_ID_CHARS
from chalicelib.search.errors import SearchParameterError
from chalicelib.search.naming import DAY_MS, DEFAULT_PREFIX, check_prefix, indices_covering
from chalicelib.stream import instants

PARAMS = ("q", "event_type", "user_id", "from", "to", "size", "cursor")
#: ``simple_query_string`` operators allowed: boolean logic, phrases, grouping,
#: escapes and trailing-``*`` prefixes. No FUZZY, NEAR/SLOP (expensive, and
#: ``simple_query_string`` has no regex operator at all).
QUERY_FLAGS = "AND|OR|NOT|PHRASE|PRECEDENCE|WHITESPACE|ESCAPE|PREFIX"
#: The searchable form of attributes (``attribute_index``). ``attributes.*`` reaches the
#: indices created under the previous template (per-attribute dynamic fields) until
#: retention drops them; on today's template it matches no field.
QUERY_FIELDS = ("attr.text", "attr.text.keyword", "attr.numbers", "attr.flags", "attributes.*")
_CURSOR_VERSION = 1
#: Characters that end a term in simple_query_string syntax.
_TERM_BREAK = set(" \t\r\n+|-()\"~")


@dataclass(frozen=True)
class SearchSettings:
    prefix: str = DEFAULT_PREFIX
    default_size: int = 50
    max_size: int = 500
    default_window_ms: int = DAY_MS
    max_range_days: int = 31
    max_query_chars: int = 256
    min_prefix_chars: int = 3
    request_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        check_prefix(self.prefix)


@dataclass(frozen=True)
class SearchQuery:
    """A validated search: everything needed to build the request and the next cursor."""

    app_id: str
    q: str | None
    event_type: str | None
    user_id: str | None
    from_ms: int
    to_ms: int
    size: int
    search_after: tuple[int, str] | None
    fingerprint: str



def _single(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if isinstance(value, (list, tuple)):
        if len(value) > 1:
            raise SearchParameterError(f"give {name} at most once")
        value = value[0] if value else None
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def parse_instant(value: str, name: str) -> int:
    """ISO-8601 with a zone (``Z`` or ``+09:00``) -> epoch ms (``stream.instants``)."""
    try:
        return instants.parse_instant(value, name)
    except instants.InvalidInstant as exc:
        raise SearchParameterError(str(exc)) from None


def check_free_text(q: str, settings: SearchSettings) -> str:
    """Reject what the cluster should never be asked: leading and too-short prefix wildcards."""
    if len(q) > settings.max_query_chars:
        raise SearchParameterError(f"q has {len(q)} characters; the limit is {settings.max_query_chars}")
    for match in re.finditer(r"(?<!\\)\*", q):
        start = match.start()
        while start > 0 and q[start - 1] not in _TERM_BREAK:
            start -= 1
        term = q[start:match.start()].replace("\\", "").rstrip("*")
        if not term:
            raise SearchParameterError("leading wildcards are not allowed in q (e.g. '*foo'); "
                                       "use a prefix such as 'foo*'")
        if len(term) < settings.min_prefix_chars:
            raise SearchParameterError(f"a prefix search needs at least {settings.min_prefix_chars} "
                                       f"characters before '*' (got {term!r})")
    return q


def _fingerprint(app_id: str, values: dict[str, str | None]) -> str:
    key = orjson.dumps([app_id] + [values[name] for name in ("q", "event_type", "user_id", "from", "to")])
    return hashlib.sha256(key).hexdigest()[:16]


def encode_cursor(query: SearchQuery, sort_values: list[Any]) -> str:
    """The opaque cursor for the page after the hit with ``sort_values``."""
    payload = {"v": _CURSOR_VERSION, "f": query.fingerprint, "w": [query.from_ms, query.to_ms],
               "a": [int(sort_values[0]), str(sort_values[1])]}
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


def decode_cursor(token: str, fingerprint: str) -> tuple[int, int, tuple[int, str]]:
    """``(from_ms, to_ms, search_after)`` of a cursor made for the same query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = orjson.loads(raw)
        version, owner, (from_ms, to_ms), (after_time, after_id) = (
            payload["v"], payload["f"], payload["w"], payload["a"])
        if not (isinstance(from_ms, int) and isinstance(to_ms, int) and isinstance(after_time, int)
                and isinstance(after_id, str)):
            raise TypeError("bad field types")
        if not (0 <= from_ms <= instants.MAX_INSTANT_MS and 0 <= to_ms <= instants.MAX_INSTANT_MS
                and -(2 ** 63) <= after_time < 2 ** 63):
            raise ValueError("out of range")
    except (binascii.Error, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise SearchParameterError("cursor is malformed; pass next_cursor from a previous response unchanged") \
            from None
    if version != _CURSOR_VERSION or owner != fingerprint:
        raise SearchParameterError("cursor belongs to a different query: keep q, event_type, user_id, "
                                   "from and to unchanged while paging")
    return from_ms, to_ms, (after_time, after_id)


def parse_search_params(app_id: str, params: Mapping[str, Any] | None, now_ms: int,
                        settings: SearchSettings = SearchSettings()) -> SearchQuery:
    """Validate the query string; raises SearchParameterError with a message for the caller."""
    if not app_id:
        raise ValueError("app_id is required (it comes from the authenticated key)")
    params = params or {}
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise SearchParameterError(f"unknown parameter(s) {', '.join(map(repr, unknown))}; "
                                   f"allowed: {', '.join(PARAMS)}")
    values = {name: _single(params, name) for name in PARAMS}

    q = values["q"]
    if q is not None:
        check_free_text(q, settings)
    event_type = values["event_type"]
    if event_type is not None and not EVENT_TYPE_RE.fullmatch(event_type):
        raise SearchParameterError(f"event_type {event_type[:80]!r} must match ^[a-z][a-z0-9_]{{0,63}}$")
    user_id = values["user_id"]
    if user_id is not None and len(user_id) > MAX_USER_ID_CHARS:
        raise SearchParameterError(f"user_id has {len(user_id)} characters; the limit is {MAX_USER_ID_CHARS}")

    size = settings.default_size
    if values["size"] is not None:
        if not re.fullmatch(r"[0-9]{1,6}", values["size"]) or not 1 <= int(values["size"]) <= settings.max_size:
            raise SearchParameterError(f"size must be a whole number from 1 to {settings.max_size}")
        size = int(values["size"])

    fingerprint = _fingerprint(app_id, values)
    search_after = None
    if values["cursor"] is not None:
        from_ms, to_ms, search_after = decode_cursor(values["cursor"], fingerprint)
    else:
        to_ms = now_ms if values["to"] is None else parse_instant(values["to"], "to")
        if values["from"] is None:
            from_ms = to_ms - settings.default_window_ms
        else:
            from_ms = parse_instant(values["from"], "from")
    if from_ms >= to_ms:
        raise SearchParameterError("from must be before to")
    if to_ms - from_ms > settings.max_range_days * DAY_MS:
        days = (to_ms - from_ms) / DAY_MS
        raise SearchParameterError(f"the time range spans {days:.1f} days; the maximum is "
                                   f"{settings.max_range_days} days")
    return SearchQuery(app_id, q, event_type, user_id, from_ms, to_ms, size, search_after, fingerprint)


def search_indices(query: SearchQuery, settings: SearchSettings = SearchSettings()) -> list[str]:
    """The concrete daily indices that can hold hits, newest first."""
    return indices_covering(query.from_ms, query.to_ms, settings.prefix)


def build_search_body(query: SearchQuery) -> dict[str, Any]:
    """The request body: app filter always on, newest first, one extra hit to detect a next page."""
    filters: list[dict[str, Any]] = [
        {"term": {"app_id": query.app_id}},
        {"range": {"event_time": {"gte": query.from_ms, "lt": query.to_ms, "format": "epoch_millis"}}},
    ]
    if query.event_type is not None:
        filters.append({"term": {"event_type": query.event_type}})
    if query.user_id is not None:
        filters.append({"term": {"user_id": query.user_id}})
    boolean: dict[str, Any] = {"filter": filters}
    if query.q is not None:
        boolean["must"] = [{"simple_query_string": {
            "query": query.q,
            "fields": list(QUERY_FIELDS),
            "flags": QUERY_FLAGS,
            "default_operator": "and",
            # numeric and boolean fields: skip them for a word instead of failing.
            "lenient": True,
            "analyze_wildcard": False,
            "auto_generate_synonyms_phrase_query": False,
        }}]
    body: dict[str, Any] = {
        "size": query.size + 1,
        "track_total_hits": True,
        "query": {"bool": boolean},
        "sort": [
            {"event_time": {"order": "desc", "unmapped_type": "date"}},
            {"event_id": {"order": "desc", "unmapped_type": "keyword"}},
        ],
    }
    if query.search_after is not None:
        body["search_after"] = list(query.search_after)
    return body
