"""How the DynamoDB buckets answer DynamoDB's failures, and the writes they build (no server)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from chalicelib.http.errors import ServiceUnavailable, TooManyRequests
from chalicelib.apps.ratelimit import NS, BucketState, Limits, decide
from chalicelib.apps.ratelimit_store import DynamoBuckets, update_request

NOW_MS = 1_767_268_800_000
LIMITS = Limits(events_per_second=100, requests_per_second=10, burst_seconds=1)


class FailingClient:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def update_item(self, **_):
        raise self.error


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "UpdateItem")


def test_dynamodb_throttling_the_bucket_is_a_429_for_that_app():
    buckets = DynamoBuckets(FailingClient(client_error("ThrottlingException")), "apps", lambda: NOW_MS)
    with pytest.raises(TooManyRequests) as refused:
        buckets.take("a", LIMITS, 1, 5)
    assert refused.value.headers == {"Retry-After": "1"}


@pytest.mark.parametrize("error", [client_error("ResourceNotFoundException"),
                                   EndpointConnectionError(endpoint_url="http://dynamodb")])
def test_any_other_dynamodb_failure_is_a_503(error):
    buckets = DynamoBuckets(FailingClient(error), "apps", lambda: NOW_MS)
    with pytest.raises(ServiceUnavailable) as unavailable:
        buckets.take("a", LIMITS, 1, 5)
    assert unavailable.value.headers == {"Retry-After": "1"}


def test_a_full_bucket_is_set_and_a_busy_one_is_added_to():
    now = NOW_MS * (NS // 1000)
    full = update_request("apps", "a", decide(LIMITS, BucketState(), 1, 5, now))
    assert full["UpdateExpression"] == "SET #r = :rnew, #e = :enew"
    assert full["ConditionExpression"] == "(attribute_not_exists(#r) OR #r <= :now) AND " \
                                          "(attribute_not_exists(#e) OR #e <= :now)"
    busy = update_request("apps", "a", decide(LIMITS, BucketState(now + 1, now + 1), 1, 0, now))
    assert busy["UpdateExpression"] == "SET #r = #r + :radd" and "#e" not in busy["ExpressionAttributeNames"]
    assert busy["ConditionExpression"] == "(#r > :now AND #r <= :rmax)"
    assert busy["ExpressionAttributeValues"][":rmax"] == {"N": str(now + NS - NS // 10)}
    assert busy["Key"] == {"key_hash": {"S": "bucket#a"}}
