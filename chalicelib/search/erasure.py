"""Deleting some users' documents from every daily index (the privacy deletion job's search step)."""

from __future__ import annotations

from typing import Any, Callable

from chalicelib.search.naming import index_pattern


class SearchEraser:
    """``delete_by_query`` of (app, users) over ``<prefix>-*``, refreshed, so a search right after finds none."""

    def __init__(self, client: Callable[[], Any], prefix: str) -> None:
        self._client, self._prefix = client, prefix

    def erase(self, app_id: str, user_ids: list[str]) -> int:
        deleted = 0
        for i in range(0, len(user_ids), 1000):
            answer = self._client().delete_by_query(
                index=index_pattern(self._prefix), conflicts="proceed", refresh=True,
                allow_no_indices=True, expand_wildcards="all",
                body={"query": {"bool": {"filter": [{"term": {"app_id": app_id}},
                                                    {"terms": {"user_id": user_ids[i:i + 1000]}}]}}})
            deleted += int(answer.get("deleted", 0))
        return deleted
