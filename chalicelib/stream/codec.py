"""The Kinesis record format shared by the ingest API and every processor.

Like the Kinesis Producer Library's aggregation, one Kinesis record carries
many events, so a shard's 1,000 records/s limit is not the ceiling.

A record is::

    b"EP1Z" | uint32 little-endian: length of the NDJSON | zstd(NDJSON)

Each NDJSON line is one canonical event (see ``chalicelib.ingest.validation``) with a
fixed set of keys; ``attributes`` is carried as a JSON *string* so that
processors can parse the envelope columnar (``pyarrow.json`` with an
explicit schema) and archive the attributes verbatim.

zstd comes from the standard library's ``compression.zstd`` (Python 3.14+)
or its backport ``backports.zstd`` (a 0.5 MB wheel), not from pyarrow: the
ingest API packs records without loading pyarrow, numpy or duckdb, which keeps
its cold start short. It decompresses at >1 GB/s, far below the parse cost.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Sequence


try:  # Python 3.14+
    from compression import zstd as _zstd
except ImportError:  # Python 3.11-3.13: the backport of PEP 784
    from backports import zstd as _zstd

MAGIC = b"EP1Z"
HEADER = struct.Struct("<4sI")
HEADER_SIZE = HEADER.size
#: Kinesis' hard limit for one record's data blob.
MAX_RECORD_BYTES = 1024 * 1024
_LEVEL = 1



class UndecodableRecord(ValueError):
    """A Kinesis record that is not in this format (or is corrupt)."""


@dataclass(frozen=True)
class PackedRecord:
    """One Kinesis record and the request positions of the events it holds."""

    data: bytes
    event_indexes: tuple[int, ...]


def encode_lines(lines: Sequence[bytes]) -> bytes:
    """Compress NDJSON lines (each without its newline) into one record."""
    ndjson = b"\n".join(lines) + b"\n"
    compressed = _zstd.compress(ndjson, level=_LEVEL)
    return HEADER.pack(MAGIC, len(ndjson)) + compressed


def decode_record(data: bytes) -> bytes:
    """Return the NDJSON payload of a record (ends with a newline)."""
    if len(data) < HEADER_SIZE:
        raise UndecodableRecord(f"record of {len(data)} bytes is shorter than the header")
    magic, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise UndecodableRecord(f"unknown record format {magic!r}")
    try:
        # Bounded by the header's length: a corrupt record cannot expand without limit.
        decompressor = _zstd.ZstdDecompressor()
        payload = decompressor.decompress(memoryview(data)[HEADER_SIZE:], max_length=length + 1)
    except (_zstd.ZstdError, OSError, ValueError, EOFError) as exc:  # corrupt or truncated frame
        raise UndecodableRecord(f"corrupt zstd payload: {exc}") from exc
    if not decompressor.eof or len(payload) != length:
        raise UndecodableRecord(f"corrupt zstd payload: {len(payload)} bytes decoded, the header says {length}"
                                + ("" if decompressor.eof else " (truncated frame)"))
    return payload


def pack(lines: Sequence[bytes], indexes: Iterable[int] | None = None,
         max_record_bytes: int = MAX_RECORD_BYTES) -> list[PackedRecord]:
    """Pack event lines into as few records as the record size limit allows.

    The whole batch is compressed first; only when the result is too big is it
    split in halves (recursively), so typical requests become one record.
    """
    idx = tuple(range(len(lines))) if indexes is None else tuple(indexes)
    if not lines:
        return []
    data = encode_lines(lines)
    if len(data) <= max_record_bytes:
        return [PackedRecord(data, idx)]
    if len(lines) == 1:
        raise ValueError(f"one event encodes to {len(data)} bytes, over the record limit")
    mid = len(lines) // 2
    return (pack(lines[:mid], idx[:mid], max_record_bytes)
            + pack(lines[mid:], idx[mid:], max_record_bytes))
