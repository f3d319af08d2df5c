"""Kinesis adapter: PutRecords with the service limits, retries and backoff."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.stream.retry import Backoff

log = logging.getLogger(__name__)

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
RETRYABLE_CODES = frozenset({
    "ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException",
    "KMSThrottlingException", "InternalFailure", "InternalFailureException", "ServiceUnavailable",
    "ServiceUnavailableException", "RequestTimeout", "RequestTimeoutException",
})


#: Kinesis PutRecords: a few quick retries (the API call must answer fast; the client retries the rest).
DEFAULT_BACKOFF = Backoff(max_attempts=5, base_s=0.05, cap_s=1.0)


@dataclass(frozen=True)
class PutOutcome:
    """Which of the given records Kinesis stored, and why the others were not."""

    stored: frozenset[int]
    failures: dict[int, str]


def plan_calls(blobs: Sequence[bytes], keys: Sequence[str]) -> list[list[int]]:
    """Group record positions into PutRecords calls within 500 records / 5 MiB."""
    calls: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, (blob, key) in enumerate(zip(blobs, keys)):
        record_size = len(blob) + len(key.encode())
        if current and (len(current) == MAX_RECORDS_PER_CALL or size + record_size > MAX_BYTES_PER_CALL):
            calls.append(current)
            current, size = [], 0
        current.append(i)
        size += record_size
    if current:
        calls.append(current)
    return calls


class KinesisWriter:
    """Writes blobs to one stream; retries failed records, reports exact outcome."""

    def __init__(self, client, stream_name: str, policy: Backoff = DEFAULT_BACKOFF,
                 sleep: Callable[[float], None] = time.sleep,
                 new_partition_key: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self._client = client
        self._stream = stream_name
        self._policy = policy
        self._sleep = sleep
        self._new_key = new_partition_key

    def put(self, blobs: Sequence[bytes]) -> PutOutcome:
        # A random partition key per record spreads load over every shard;
        # results do not depend on placement because partials are mergeable.
        keys = [self._new_key() for _ in blobs]
        stored: set[int] = set()
        failures: dict[int, str] = {}
        pending = list(range(len(blobs)))
        for attempt in range(self._policy.max_attempts):
            if attempt:
                self._sleep(self._policy.delay(attempt))
            retry: list[int] = []
            for call in plan_calls([blobs[i] for i in pending], [keys[i] for i in pending]):
                positions = [pending[j] for j in call]
                for position, error in self._put_call(positions, blobs, keys).items():
                    if error is None:
                        stored.add(position)
                        failures.pop(position, None)
                    else:
                        failures[position] = error[1]
                        if error[0]:
                            retry.append(position)
            pending = retry
            if not pending:
                break
            log.warning("kinesis: %d record(s) failed on attempt %d; retrying", len(pending), attempt + 1)
        return PutOutcome(frozenset(stored), failures)

    def _put_call(self, positions: list[int], blobs, keys) -> dict[int, tuple[bool, str] | None]:
        """One PutRecords call -> {position: None if stored else (retryable, reason)}."""
        try:
            response = self._client.put_records(
                StreamName=self._stream,
                Records=[{"Data": blobs[p], "PartitionKey": keys[p]} for p in positions],
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            return {p: (code in RETRYABLE_CODES, f"{code}: {exc}") for p in positions}
        except BotoCoreError as exc:  # connection errors, timeouts
            return {p: (True, f"{type(exc).__name__}: {exc}") for p in positions}
        outcome: dict[int, tuple[bool, str] | None] = {}
        for position, result in zip(positions, response["Records"]):
            code = result.get("ErrorCode")
            if code:
                outcome[position] = (code in RETRYABLE_CODES, f"{code}: {result.get('ErrorMessage', '')}")
            else:
                outcome[position] = None
        return outcome
