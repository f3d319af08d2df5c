"""GET /v1/search: run a validated query against the daily indices (I/O only)."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

from chalicelib.search.bulk import error_type
from chalicelib.search.documents import document_to_event
from chalicelib.search.errors import SearchParameterError, SearchUnavailableError
from chalicelib.search.query import SearchSettings, build_search_body, encode_cursor, parse_search_params, \
    search_indices

log = logging.getLogger(__name__)


def search_events(client: Any, app_id: str, params: Mapping[str, Any] | None, now_ms: int,
                  settings: SearchSettings = SearchSettings()) -> dict[str, Any]:
    """Search the caller's events, newest first.

    Returns ``{"total": N, "hits": [event...], "next_cursor": str | None}``;
    ``total`` counts all hits of the query, not only this page.

    Raises:
        SearchParameterError: a bad parameter (-> 400).
        SearchUnavailableError: the cluster did not answer (-> 503).
    """
    query = parse_search_params(app_id, params, now_ms, settings)
    indices = search_indices(query, settings)
    try:
        response = client.search(index=",".join(indices), body=build_search_body(query),
                                 ignore_unavailable=True, allow_no_indices=True,
                                 request_timeout=settings.request_timeout_s)
    except OSConnectionError as exc:
        raise SearchUnavailableError(f"the search cluster is unreachable ({type(exc).__name__})") from exc
    except TransportError as exc:
        status = exc.status_code
        if status == 400:
            info = exc.info.get("error", exc.info) if isinstance(exc.info, dict) else exc.info
            log.warning("search: query rejected by the cluster: %s", exc)
            raise SearchParameterError(f"the query could not be run ({error_type(info)}); "
                                       "simplify q") from exc
        if isinstance(status, int) and (status == 429 or status >= 500):
            raise SearchUnavailableError(f"the search cluster is busy or failing ({status})") from exc
        raise
    hits = response["hits"]["hits"]
    page = hits[:query.size]
    next_cursor = encode_cursor(query, page[-1]["sort"]) if len(hits) > query.size else None
    total = response["hits"]["total"]
    return {
        "total": total["value"] if isinstance(total, dict) else int(total),
        "hits": [document_to_event(hit["_source"]) for hit in page],
        "next_cursor": next_cursor,
    }
