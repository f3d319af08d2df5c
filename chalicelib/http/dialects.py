"""How a family of routes finds its app key and words its errors: the native API, Segment, PostHog.

SDKs cannot be taught our header: Segment's clients send the write key as the
HTTP Basic user name (``Authorization: Basic base64("<key>:")``) and as
``writeKey`` in the body, PostHog's as ``api_key`` in the body (posthog-js as
``properties.token`` of each event). :func:`find_key` is the one place that
reads a key from a request, for every route; every key maps to its app through
the same ``AppStore``. Each dialect answers errors in the shape its clients read:
``{"error"}`` (native), ``{"code", "message"}`` (Segment), ``{"type", "code",
"detail"}`` (PostHog). Keys are never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

from chalicelib.http.errors import RequestError

KEY_HEADER = "x-api-key"
AUTHORIZATION = "authorization"


def _native_error(exc: RequestError) -> dict[str, Any]:
    return {"error": exc.message}


_SEGMENT_CODES = {400: "invalid_request", 401: "unauthorized", 404: "not_found", 413: "payload_too_large",
                  415: "unsupported_media_type", 429: "rate_limited", 503: "service_unavailable"}
_POSTHOG_CODES = {400: ("validation_error", "invalid_payload"), 401: ("authentication_error", "invalid_api_key"),
                  404: ("validation_error", "not_found"), 413: ("validation_error", "payload_too_large"),
                  415: ("validation_error", "unsupported_media_type"), 429: ("throttled_error", "rate_limited"),
                  503: ("server_error", "service_unavailable")}


def _segment_error(exc: RequestError) -> dict[str, Any]:
    return {"code": _SEGMENT_CODES.get(exc.status, "error"), "message": exc.message}


def _posthog_error(exc: RequestError) -> dict[str, Any]:
    kind, code = _POSTHOG_CODES.get(exc.status, ("server_error", "error"))
    return {"type": kind, "code": code, "detail": exc.message}


@dataclass(frozen=True)
class Dialect:
    """Where a route family reads its key from and how it answers errors.

    Attributes:
        name: for messages and docs.
        basic_auth: the key may come as the HTTP Basic user name.
        body_key: the key may come from the body (the protocol parser finds it).
        missing_key: the 401 message when no key was sent.
        error_body: a ``RequestError`` -> the JSON body of its response.
    """

    name: str
    basic_auth: bool = False
    body_key: bool = False
    missing_key: str = f"missing API key: send it in the {KEY_HEADER} header"
    error_body: Callable[[RequestError], dict[str, Any]] = field(default=_native_error)


NATIVE = Dialect("native")
SEGMENT = Dialect("segment", basic_auth=True, body_key=True,
                  missing_key="missing write key: send it as the HTTP Basic user name or as writeKey in the body",
                  error_body=_segment_error)
POSTHOG = Dialect("posthog", body_key=True,
                  missing_key="missing project API key: send it as api_key in the body",
                  error_body=_posthog_error)


def basic_user(authorization: str | None) -> str | None:
    """The user name of an ``Authorization: Basic`` header (Segment's write key), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return decoded.partition(":")[0] or None


def find_key(headers: Mapping[str, str], body_key: str | None, dialect: Dialect) -> str | None:
    """The app key of a request, the one rule for every route.

    ``x-api-key`` first (every route accepts it), then, where the dialect allows,
    the HTTP Basic user name, then the key the protocol found in the body.
    """
    key = headers.get(KEY_HEADER)
    if key:
        return key
    if dialect.basic_auth:
        key = basic_user(headers.get(AUTHORIZATION))
        if key:
            return key
    return body_key if dialect.body_key and body_key else None


@dataclass(frozen=True)
class SdkCall:
    """One request to an SDK-compatible route, as the ingest service needs it.

    Attributes:
        path: the route (``/v1/batch``, ``/batch``...): the protocol reads the message type from it.
        body: the body as received.
        content_type, content_encoding: the headers.
        query: query parameters (PostHog's ``compression``).
        authenticate: the key found in the body (or None) -> the app id; raises ``Unauthorized``.
    """

    path: str
    body: bytes
    content_type: str | None
    content_encoding: str | None
    query: Mapping[str, Any]
    authenticate: Callable[[str | None], str]


@dataclass(frozen=True)
class Script:
    """An SDK route's answer that is JavaScript rather than JSON (posthog-js loads its remote config as a script)."""

    CONTENT_TYPE: ClassVar[str] = "application/javascript"
    text: str
