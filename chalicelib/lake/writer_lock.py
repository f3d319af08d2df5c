"""A lease on the raw events table: its writers (the committer job, the privacy deletion job) never overlap.

The ``commit_events`` job is the table's single writer on AWS (reserved concurrency 1), but the deletion
job may run elsewhere (``eventpipe regulations process``, its own schedule). Both take this lease (an
item of the state table, written conditionally) before they touch the table or its staged files; a
holder that dies lets go when its lease expires. An owner may take its own lease again at once (a
deletion job rerun after a crash does not wait for the lease of the one that was killed).
"""

from __future__ import annotations

from typing import Callable

from botocore.exceptions import ClientError

LOCK_KEY = "lock|raw-table"
DEFAULT_LEASE_MS = 15 * 60_000


class LockHeld(RuntimeError):
    """Another writer holds the raw table's lease."""


class WriterLock:
    def __init__(self, dynamodb, table: str, clock_ms: Callable[[], int], lease_ms: int = DEFAULT_LEASE_MS) -> None:
        self._db, self._table, self._clock_ms, self._lease_ms = dynamodb, table, clock_ms, lease_ms

    def acquire(self, owner: str) -> None:
        now = self._clock_ms()
        try:
            self._db.put_item(TableName=self._table,
                              Item={"pk": {"S": LOCK_KEY}, "owner": {"S": owner}, "until": {"N": str(now + self._lease_ms)}},
                              ConditionExpression="attribute_not_exists(pk) OR #u < :now OR #o = :me",
                              ExpressionAttributeNames={"#u": "until", "#o": "owner"},
                              ExpressionAttributeValues={":now": {"N": str(now)}, ":me": {"S": owner}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise LockHeld(f"the raw table's writer lease is held by another job; retry later") from exc
            raise

    def release(self, owner: str) -> None:
        try:
            self._db.delete_item(TableName=self._table, Key={"pk": {"S": LOCK_KEY}},
                                 ConditionExpression="#o = :me", ExpressionAttributeNames={"#o": "owner"},
                                 ExpressionAttributeValues={":me": {"S": owner}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
