"""S3 mechanics, in one place (as awswrangler keeps them): listing pages, reads,
a missing key as ``None``, batch deletes. Plain boto3 + pyarrow: the same against AWS and moto.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

#: S3's DeleteObjects takes at most this many keys per request.
DELETE_BATCH = 1000
MISSING = ("NoSuchKey", "404", "NotFound")


def is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in MISSING


def list_keys(s3, bucket: str, prefix: str) -> Iterator[dict]:
    """Every object under ``prefix`` (all pages), as ListObjectsV2 ``Contents`` entries."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def list_prefixes(s3, bucket: str, prefix: str) -> list[str]:
    """The "folders" directly under ``prefix`` (``CommonPrefixes`` with delimiter ``/``)."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return found


def get_bytes(s3, bucket: str, key: str) -> bytes | None:
    """The object's body, or None when there is no such key."""
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def head(s3, bucket: str, key: str) -> dict | None:
    """HeadObject's answer, or None when there is no such key."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def read_parquet(s3, bucket: str, key: str) -> pa.Table:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return pq.read_table(io.BytesIO(body))


def read_many(s3, bucket: str, keys: list[str], threads: int = 8) -> list[pa.Table]:
    """Parquet files read in parallel, in the order of ``keys``."""
    if not keys:
        return []
    with ThreadPoolExecutor(max_workers=min(threads, len(keys))) as pool:
        return list(pool.map(lambda key: read_parquet(s3, bucket, key), keys))


def delete_keys(s3, bucket: str, keys: Iterable[str]) -> int:
    """Delete the keys (missing ones are fine), 1,000 per request; returns how many were asked."""
    keys = list(keys)
    for i in range(0, len(keys), DELETE_BATCH):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + DELETE_BATCH]],
                                                 "Quiet": True})
    return len(keys)


class _Ranges(io.RawIOBase):
    """A read-only file of ``size`` bytes of which some ranges were fetched; a read outside them
    fetches its range with one ranged GET (a wrong guess costs a request, never a wrong byte)."""

    def __init__(self, size: int, fetch) -> None:  # noqa: ANN001
        self._size, self._fetch, self._parts, self._pos = size, fetch, [], 0

    def add(self, start: int, data: bytes) -> None:
        self._parts.append((start, data))

    def get(self, start: int, end: int) -> bytes:
        for first, data in self._parts:
            if first <= start and end <= first + len(data):
                return data[start - first:end - first]
        data = self._fetch(start, end)
        self.add(start, data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset if whence == 0 else self._pos + offset if whence == 1 else self._size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def size(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        out = self.get(self._pos, end) if end > self._pos else b""
        self._pos = end
        return out


def read_parquet_groups(s3, bucket: str, key: str, select, tail: int) -> tuple[pa.Table, str]:  # noqa: ANN001
    """Some row groups of a Parquet object, read by range: ``select(FileMetaData)`` -> (row group
    indexes, the [start, end) byte span of their column chunks or None). One suffix GET of ``tail``
    bytes (the footer; the whole object when it is no larger), one more when the footer is larger
    than that, and one ranged GET of the span unless the suffix held it.
    Returns (the rows of those groups, the object's ETag)."""
    first = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{tail}")
    body, etag = first["Body"].read(), first.get("ETag", "")
    size = int(first["ContentRange"].rsplit("/", 1)[1]) if first.get("ContentRange") else len(body)

    def fetch(start: int, end: int) -> bytes:
        return s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", IfMatch=etag)["Body"].read()

    source = _Ranges(size, fetch)
    source.add(size - len(body), body)
    footer = int.from_bytes(body[-8:-4], "little") + 8
    metadata = pq.read_metadata(pa.BufferReader(b"PAR1" + source.get(size - footer, size)))
    groups, span = select(metadata)
    if span is not None:  # one GET for all the groups' column chunks (unless the suffix holds them)
        source.get(*span)
    parquet = pq.ParquetFile(pa.PythonFile(source, mode="r"), metadata=metadata)
    return parquet.read_row_groups(groups) if groups else parquet.schema_arrow.empty_table(), etag
