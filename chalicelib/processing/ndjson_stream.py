"""Parse many zstd-compressed NDJSON frames in one DuckDB pass (internal).

Each frame is preceded by a tiny sentinel frame ``{"__epz_u": <i>}`` and
the stream ends with a trailer sentinel; concatenated zstd frames form one
valid zstd stream, which is written to an anonymous in-memory file
(``memfd``; a temporary file where memfd is missing) and read with
``read_ndjson(..., compression='zstd')``.  Window functions over the
sentinel column give every row the number of its frame; ``count == max + 1``
on every row and the trailer prove that no row was lost or misattributed
(a line carrying the sentinel key itself fails these checks).
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
from typing import Sequence

import duckdb
import numpy as np
import pyarrow as pa

SENTINEL = "__epz_u"
PARSED_ATTRIBUTES = "parsed_attributes"
_IOV_MAX = 1000
_MAX_RAW_BLOCK = 128 * 1024
_DUCK_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT"}


class StreamParseError(Exception):
    """DuckDB rejected the stream, or the sentinel checks failed."""


def raw_frame(payload: bytes) -> bytes:
    """A zstd frame that stores ``payload`` uncompressed (raw blocks)."""
    out = [struct.pack("<IBI", 0xFD2FB528, 0xA0, len(payload))]  # single segment, 4-byte size
    for pos in range(0, max(len(payload), 1), _MAX_RAW_BLOCK):
        block = payload[pos:pos + _MAX_RAW_BLOCK]
        last = int(pos + _MAX_RAW_BLOCK >= len(payload))
        out.append(struct.pack("<I", last | (len(block) << 3))[:3])
        out.append(block)
    return b"".join(out)


_SENTINEL_PREFIX = b'{"' + SENTINEL.encode() + b'":'
_SMALL_FRAME_HEAD = b"\x28\xb5\x2f\xfd\x20"  # magic, single segment with a 1-byte content size


def _sentinel(unit: int) -> bytes:
    """``raw_frame(b'{"__epz_u":<unit>}\\n')``, built without the general loop."""
    payload = b"%s%d}\n" % (_SENTINEL_PREFIX, unit)
    size = len(payload)  # < 32, so the 3-byte raw block header is (1 | size << 3), 0, 0
    return _SMALL_FRAME_HEAD + bytes((size, 1 | (size << 3), 0, 0)) + payload


def _write_stream(fd: int, frames: Sequence[bytes | memoryview]) -> None:
    parts: list[bytes | memoryview] = []
    for u, frame in enumerate(frames):
        parts.append(_sentinel(u))
        parts.append(frame)
    parts.append(_sentinel(len(frames)))
    for start in range(0, len(parts), _IOV_MAX):
        chunk = parts[start:start + _IOV_MAX]
        expected = sum(len(p) for p in chunk)
        written = os.writev(fd, chunk)
        if written != expected:  # short write: finish byte by byte
            rest = b"".join(bytes(p) for p in chunk)[written:]
            while rest:
                rest = rest[os.write(fd, rest):]


def _query(path: str, schema: pa.Schema, n_units: int, struct_sql: str | None) -> str:
    columns = ", ".join([f"{SENTINEL}: 'BIGINT'"]
                        + [f"{f.name}: '{_DUCK_TYPES[f.type]}'" for f in schema])
    names = ", ".join(f.name for f in schema)
    if struct_sql is None:
        extra = "starts_with(attributes, '{') AND json_valid(attributes) AS __attrs_ok"
    else:
        # Validity is completed in _invalid_mask: referring to the alias here
        # would make DuckDB evaluate json_transform twice.
        extra = (f"try(json_transform(attributes, '{struct_sql}')) AS {PARSED_ATTRIBUTES}, "
                 f"starts_with(attributes, '{{') AS __attrs_ok")
    return (f"SELECT __unit, __cnt, {SENTINEL}, {names}, {extra} FROM ("
            f"SELECT *, max({SENTINEL}) OVER w AS __unit, count({SENTINEL}) OVER w AS __cnt "
            f"FROM read_ndjson('{path}', columns={{{columns}}}, compression='zstd', "
            f"format='newline_delimited') "
            f"WINDOW w AS (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) "
            f"WHERE {SENTINEL} IS NULL OR {SENTINEL} = {n_units}")


def parse_frames(frames: Sequence[bytes | memoryview], schema: pa.Schema, struct_sql: str | None,
                 con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Parse zstd frames of NDJSON in one DuckDB pass.

    Args:
        frames: zstd frames, each holding whole NDJSON lines.
        schema: the columns to read (string and int64 only).
        struct_sql: ``json_transform`` structure for ``parsed_attributes``,
            or None to only check ``attributes`` with ``json_valid``.
        con: the DuckDB connection.

    Returns:
        ``__unit`` (frame number of each row), the schema's columns, then
        ``parsed_attributes`` if requested, then ``__attrs_ok`` (attributes
        starts with "{" and, without ``struct_sql``, is valid JSON).

    Raises:
        StreamParseError: DuckDB failed, or a line carries the sentinel key.
    """
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        fd, path, tmp = memfd("epz-records"), None, None
        path = f"/proc/self/fd/{fd}"
    else:  # pragma: no cover - non-Linux development machines
        tmp = tempfile.NamedTemporaryFile(suffix=".ndjson.zst", delete=False)
        fd, path = tmp.fileno(), tmp.name
    try:
        _write_stream(fd, frames)
        try:
            table = con.sql(_query(path, schema, len(frames), struct_sql)).to_arrow_table()
        except duckdb.Error as exc:
            raise StreamParseError(clean_message(str(exc))) from None
    finally:
        if tmp is None:
            os.close(fd)
        else:  # pragma: no cover
            tmp.close()
            os.unlink(path)
    n = table.num_rows
    sentinel = table.column(SENTINEL)
    if n == 0 or sentinel.null_count != n - 1 or sentinel[n - 1].as_py() != len(frames) \
            or table.column("__cnt")[n - 1].as_py() != len(frames) + 1:
        raise StreamParseError(f"a line carries the reserved key {SENTINEL!r} or rows were lost")
    table = table.slice(0, n - 1)
    unit = table.column("__unit").to_numpy()
    if unit.size and not np.array_equal(table.column("__cnt").to_numpy(), unit + 1):
        raise StreamParseError(f"a line carries the reserved key {SENTINEL!r}")
    return table.drop_columns(["__cnt", SENTINEL])


def clean_message(message: str) -> str:
    message = re.sub(r'in file "[^"]*",?\s*', "", message)
    message = re.sub(r",?\s*in line \d+", "", message)
    message = message.split("\n", 1)[0].replace("Invalid Input Error: ", "")
    return message.strip() or "unparseable"
