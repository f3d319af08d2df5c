"""Route helpers: JSON responses, query parameters, and authentication done once.

``app.py`` declares each route with :meth:`Routes.public` or
:meth:`Routes.authenticated`; the handler body only parses its request and calls
one service. Typed :class:`~chalicelib.http.errors.RequestError` exceptions
become their status and ``{"error": message}`` here, in one place.

:meth:`Routes.sdk` declares the SDK-compatible ingestion routes (Segment,
PostHog): the key may also come from ``Authorization: Basic`` or the body
(:func:`~chalicelib.http.dialects.find_key`), and errors take the shape that
protocol's clients read (:mod:`chalicelib.http.dialects`).

Rate limits (:mod:`chalicelib.apps.ratelimit`): ``admit(app_id, events, requests)`` takes
the request tokens of an authenticated route after its key is checked (429 otherwise): one,
or the read's cost (``cost=``, :mod:`chalicelib.http.read_costs`). Ingestion routes count
their events, so their services call it themselves once the body is read and before
anything is written (``counts_events=True``, and every SDK route); before that, as soon as
the key is known, ``check(app_id)`` refuses a request the app's bucket already refuses
(on the state last seen: no store call), so a refused body is never decoded. An SDK
route finds the key in its headers before the body, or in the body once decoded (then
the check runs before the messages are validated).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import orjson
from chalice import Chalice, Response

from chalicelib.http.dialects import KEY_HEADER, NATIVE, POSTHOG, SEGMENT, Dialect, Script, SdkCall, find_key
from chalicelib.http.errors import BadRequest, RequestError, Unauthorized
from chalicelib.http.read_costs import (ReadGuard, insight_cost, metrics_cost, person_cost, pipeline_cost,
                                       regulations_cost, sessions_cost)

__all__ = ["KEY_HEADER", "NATIVE", "POSTHOG", "SEGMENT", "Routes", "SdkCall", "error_response", "insight_cost",
           "json_body", "json_response", "metrics_cost", "person_cost", "pipeline_cost", "query_params",
           "regulations_cost", "sessions_cost"]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body=orjson.dumps(body).decode(), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def error_response(exc: RequestError, dialect: Dialect = NATIVE) -> Response:
    return json_response(dialect.error_body(exc), exc.status, exc.headers)


def query_params(request) -> dict[str, Any]:
    """Query parameters with repeats kept as lists, so services can refuse them."""
    params = request.query_params
    if not params:
        return {}
    return {name: (values if len(values := params.getlist(name)) > 1 else values[0]) for name in params}


def json_body(request) -> Any:
    """The request's JSON body (400 when it is not JSON)."""
    try:
        return orjson.loads(request.raw_body or b"")
    except orjson.JSONDecodeError:
        raise BadRequest("the body must be JSON") from None


class Routes:
    """Registers handlers on a Chalice app; ``authenticate`` maps an API key to its app id."""

    def __init__(self, app: Chalice, authenticate: Callable[[str | None], str],
                 admit: Callable[[str, int, int], None] | None = None,
                 check: Callable[[str], None] | None = None, reads: Callable[[], ReadGuard] | None = None) -> None:
        self._app, self._authenticate, self._admit, self._check = app, authenticate, admit, check
        self._reads = reads

    def _register(self, path: str, methods: list[str], handler: Callable, with_app: bool,
                  counts_events: bool = False, cost: Callable[[dict], int] | None = None, **options: Any) -> None:
        @functools.wraps(handler)
        def view(**url_params: Any) -> Response:
            request = self._app.current_request
            try:
                if with_app:
                    app_id = self._authenticate(find_key(request.headers, None, NATIVE))
                    if counts_events:
                        if self._check is not None:
                            self._check(app_id)  # before the body is decoded; the service admits its events
                    elif cost is not None and self._admit is not None and self._reads is not None:
                        result = self._read(request, app_id, handler, cost, url_params)
                        return result if isinstance(result, Response) else json_response(result)
                    elif self._admit is not None:
                        self._admit(app_id, 0, 1)
                    result = handler(request, app_id, **url_params)
                else:
                    result = handler(request, **url_params)
            except RequestError as exc:
                return error_response(exc)
            return result if isinstance(result, Response) else json_response(result)

        self._app.route(path, methods=methods, **options)(view)

    def _read(self, request, app_id: str, handler: Callable, cost: Callable[[dict], int],
              url_params: dict[str, Any]) -> Any:
        """A read with a cost: its tokens, shared with an identical one in flight (read_costs.ReadGuard).

        A POST read (an insight) is priced from its JSON body, and only an identical body shares."""
        if request.method == "POST":
            params = json_body(request)
            key = (request.path, tuple(sorted(url_params.items())), bytes(request.raw_body or b""))
        else:
            params = query_params(request)
            key = (request.path, tuple(sorted(url_params.items())),
                   tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())))
        return self._reads().run(app_id, key, cost(params), lambda tokens: self._admit(app_id, 0, tokens),
                                 lambda: handler(request, app_id, **url_params))

    def _register_sdk(self, path: str, handler: Callable, dialect: Dialect, methods: list[str]) -> None:
        @functools.wraps(handler)
        def view(**url_params: Any) -> Response:
            request = self._app.current_request

            def authenticate(body_key: str | None) -> str:
                key = find_key(request.headers, body_key, dialect)
                if not key:
                    raise Unauthorized(dialect.missing_key)
                app_id = self._authenticate(key)
                if self._check is not None:
                    self._check(app_id)
                return app_id

            try:
                if find_key(request.headers, None, dialect):  # the key is in the headers (it wins over the body's):
                    authenticate(None)  # a refused request is answered before its body is decoded
                result = handler(SdkCall(path, request.raw_body or b"", request.headers.get("content-type"),
                                         request.headers.get("content-encoding"), query_params(request),
                                         authenticate), **url_params)
            except RequestError as exc:
                return error_response(exc, dialect)
            if isinstance(result, Script):
                return Response(body=result.text, status_code=200, headers={"Content-Type": Script.CONTENT_TYPE})
            return result if isinstance(result, Response) else json_response(result)

        # Any content type (browsers send JSON as text/plain), and CORS: browser SDKs call cross-origin.
        self._app.route(path, methods=methods, content_types=["*/*"], cors=True)(view)

    def public(self, path: str, methods: tuple[str, ...] = ("GET",), **options: Any) -> Callable:
        """A route without a key: ``handler(request, **url_params)``."""
        def register(handler: Callable) -> Callable:
            self._register(path, list(methods), handler, False, **options)
            return handler
        return register

    def sdk(self, dialect: Dialect, *paths: str, methods: tuple[str, ...] = ("POST",)) -> Callable:
        """Routes of an SDK-compatible API (POST unless told): ``handler(call: SdkCall, **url_params)``.

        The handler's service decodes the body and calls ``call.authenticate(body_key)``
        (401 without a key, in the dialect's error shape, like every other error). Every answer
        carries CORS headers; a :class:`~chalicelib.http.dialects.Script` is answered as JavaScript.
        """
        def register(handler: Callable) -> Callable:
            for path in paths:
                self._register_sdk(path, handler, dialect, list(methods))
            return handler
        return register

    def authenticated(self, path: str, methods: tuple[str, ...] = ("GET",), counts_events: bool = False,
                      cost: Callable[[dict], int] | None = None, **options: Any) -> Callable:
        """A route that needs an app key: ``handler(request, app_id, **url_params)``; 401 without one.

        Each request takes a token of the app's requests/s limit (429 over it), or ``cost(query
        params)`` tokens (reads, shared with an identical read in flight); with ``counts_events``
        the handler's service takes it with the request's events.
        """
        def register(handler: Callable) -> Callable:
            self._register(path, list(methods), handler, True, counts_events, cost, **options)
            return handler
        return register
