"""The query tools' typed error."""

from __future__ import annotations


class QueryError(Exception):
    """The SQL could not be translated or executed."""
