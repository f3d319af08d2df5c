"""Where each route family finds its key, and the error shapes its clients read."""

import base64

import pytest

from chalicelib.http.dialects import NATIVE, POSTHOG, SEGMENT, basic_user, find_key
from chalicelib.http.errors import BadRequest, PayloadTooLarge, ServiceUnavailable, TooManyRequests, Unauthorized


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_segment_reads_the_write_key_from_basic_auth_then_the_body():
    assert find_key({"authorization": basic("wk-1")}, "wk-body", SEGMENT) == "wk-1"
    assert find_key({}, "wk-body", SEGMENT) == "wk-body"
    assert find_key({"authorization": "Basic !!not-base64"}, "wk-body", SEGMENT) == "wk-body"
    assert find_key({"authorization": "Bearer wk-1"}, None, SEGMENT) is None


def test_the_api_key_header_works_on_every_route_and_comes_first():
    for dialect in (NATIVE, SEGMENT, POSTHOG):
        assert find_key({"x-api-key": "h", "authorization": basic("b")}, "body", dialect) == "h"


def test_each_dialect_reads_only_the_places_it_allows():
    assert find_key({"authorization": basic("b")}, "body", NATIVE) is None
    assert find_key({"authorization": basic("b")}, None, POSTHOG) is None
    assert find_key({}, "body", POSTHOG) == "body"


@pytest.mark.parametrize("header, user", [(basic("k", "ignored"), "k"), (basic(""), None), ("basic " + base64.b64encode(
    b"k2:").decode(), "k2"), (None, None), ("Basic", None)])
def test_basic_user_is_the_part_before_the_colon(header, user):
    assert basic_user(header) == user


@pytest.mark.parametrize("exc, segment_code, posthog_type", [
    (BadRequest("malformed JSON"), "invalid_request", "validation_error"),
    (Unauthorized("unknown API key"), "unauthorized", "authentication_error"),
    (PayloadTooLarge("too big"), "payload_too_large", "validation_error"),
    (TooManyRequests("slow down"), "rate_limited", "throttled_error"),
    (ServiceUnavailable("later"), "service_unavailable", "server_error"),
])
def test_errors_take_the_shape_each_protocols_clients_read(exc, segment_code, posthog_type):
    assert NATIVE.error_body(exc) == {"error": exc.message}
    assert SEGMENT.error_body(exc) == {"code": segment_code, "message": exc.message}
    body = POSTHOG.error_body(exc)
    assert body["type"] == posthog_type and body["detail"] == exc.message and body["code"]
