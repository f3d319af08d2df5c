"""Sends finalization units to the ``finalize-units`` SQS queue (SendMessageBatch, 10 per call)."""

from __future__ import annotations

import time
from typing import Callable

from chalicelib.lake.units import Unit

#: SQS takes at most this many messages per SendMessageBatch.
SEND_BATCH = 10


class UnitQueueError(RuntimeError):
    """Some units could not be sent (the planner records nothing for their hour: it plans them again)."""


class UnitQueue:
    def __init__(self, sqs, queue_url: str, attempts: int = 5, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sqs, self._url, self._attempts, self._sleep = sqs, queue_url, attempts, sleep

    def send(self, units: list[Unit]) -> None:
        """Every unit once (SQS may deliver a message more than once: a unit is idempotent);
        entries SQS refuses in a batch are sent again, with backoff."""
        for i in range(0, len(units), SEND_BATCH):
            pending = {str(j): unit for j, unit in enumerate(units[i:i + SEND_BATCH])}
            for attempt in range(self._attempts):
                answer = self._sqs.send_message_batch(QueueUrl=self._url, Entries=[
                    {"Id": j, "MessageBody": unit.message()} for j, unit in pending.items()])
                pending = {f["Id"]: pending[f["Id"]] for f in answer.get("Failed", [])}
                if not pending:
                    break
                self._sleep(min(2.0, 0.1 * 2 ** attempt))
            if pending:
                raise UnitQueueError(f"{len(pending)} unit(s) not sent to {self._url}: "
                                     f"{', '.join(u.message() for u in pending.values())}")

    def depth(self) -> dict[str, int]:
        """Visible and in-flight messages (approximate, as SQS counts them)."""
        attrs = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return {"visible": int(attrs["ApproximateNumberOfMessages"]),
                "in_flight": int(attrs["ApproximateNumberOfMessagesNotVisible"])}
