"""Small pipeline state in the DynamoDB state table: watermarks and progress.

Both only ever move forward: writes are conditional ("only if greater"), so
concurrent or replayed invocations can never move them back.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

SEQUENCE_WIDTH = 56  # Kinesis sequence numbers have up to 56 digits


def _padded(sequence_number: str) -> str:
    return f"{int(sequence_number):0{SEQUENCE_WIDTH}d}"


class StateStore:
    def __init__(self, dynamodb, table: str) -> None:
        self._db, self._table = dynamodb, table

    def _get(self, pk: str) -> dict | None:
        return self._db.get_item(TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")

    def _raise_to(self, pk: str, value: dict) -> None:
        try:
            self._db.put_item(TableName=self._table, Item={"pk": {"S": pk}, "v": value},
                              ConditionExpression="attribute_not_exists(v) OR v < :v",
                              ExpressionAttributeValues={":v": value})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def max_event_time(self, consumer: str, shard_id: str) -> int | None:
        item = self._get(f"watermark|{consumer}|{shard_id}")
        return int(item["v"]["N"]) if item else None

    def raise_max_event_time(self, consumer: str, shard_id: str, event_time_ms: int) -> None:
        self._raise_to(f"watermark|{consumer}|{shard_id}", {"N": str(event_time_ms)})

    def archived_through(self, shard_id: str) -> int | None:
        """The last sequence number the raw archive has made durable on a shard."""
        item = self._get(f"progress|archive|{shard_id}")
        return int(item["v"]["S"]) if item else None

    def raise_archived_through(self, shard_id: str, sequence_number: str) -> None:
        self._raise_to(f"progress|archive|{shard_id}", {"S": _padded(sequence_number)})

    def last_run_ms(self, job: str) -> int | None:
        """When a periodic job (e.g. the raw table's orphan sweep) last ran (epoch ms)."""
        item = self._get(f"lastrun|{job}")
        return int(item["v"]["N"]) if item else None

    def mark_run(self, job: str, at_ms: int) -> None:
        self._raise_to(f"lastrun|{job}", {"N": str(at_ms)})
