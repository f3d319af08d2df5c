"""The S3 writer of bad rows (schema and keys: ``stream/badrows.py``)."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from chalicelib.stream.badrows import PREFIX, BadRow, group_by_object

log = logging.getLogger(__name__)


class S3BadRowsSink:
    """Writes one NDJSON object per source record (``PutObject`` overwrites: re-deliveries are safe)."""

    def __init__(self, s3_client: Any, bucket: str, consumer: str, prefix: str = PREFIX) -> None:
        self._s3, self._bucket, self._consumer, self._prefix = s3_client, bucket, consumer, prefix

    def write(self, rows: Sequence[BadRow]) -> None:
        objects = group_by_object(self._consumer, rows, self._prefix)
        for key, body in objects.items():
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/x-ndjson")
        if rows:
            log.warning("bad rows: %d row(s) of %d record(s) -> s3://%s/%s/%s/", len(rows), len(objects),
                        self._bucket, self._prefix, self._consumer)
