"""Typed errors of the search package.

The HTTP-facing ones subclass the project's ``RequestError`` family so the
HTTP layer maps them without a special case: bad parameters -> 400, backend
unavailable -> 503.
"""

from __future__ import annotations

from chalicelib.http.errors import BadRequest, ServiceUnavailable


class SearchParameterError(BadRequest):
    """A query-string parameter of GET /v1/search is invalid; the message says which and why."""


class SearchUnavailableError(ServiceUnavailable):
    """The search cluster did not answer (connection error, timeout, 429 or 5xx)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class TemplateError(RuntimeError):
    """The index template could not be read or written."""
