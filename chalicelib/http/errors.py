"""Typed errors that the HTTP layer maps to status codes."""

from __future__ import annotations


class RequestError(Exception):
    """A whole-request error with an HTTP status and a message for the client."""

    status = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(RequestError):
    status = 400


class Unauthorized(RequestError):
    status = 401


class NotFound(RequestError):
    status = 404


class PayloadTooLarge(RequestError):
    status = 413


class UnsupportedMediaType(RequestError):
    status = 415


class ServiceUnavailable(RequestError):
    status = 503


class TooManyRequests(RequestError):
    status = 429
