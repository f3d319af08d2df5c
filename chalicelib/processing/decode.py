"""Decode a Lambda batch of Kinesis records into one Arrow table of events.

Fast path (no per-event Python):

1. Per record: the one record decoder, ``stream.records.record_data`` (base64 with
   ``pybase64`` when installed, the ``EP1Z`` header of ``chalicelib.stream.codec``).
2. The records' zstd frames are written, each after a tiny *sentinel* frame
   holding ``{"__epz_u": <unit>}``, into an anonymous in-memory file
   (``memfd``).  Concatenated zstd frames are one valid zstd stream, so
   DuckDB's NDJSON reader decompresses and parses everything in one native
   pass (``read_ndjson(..., columns=..., compression='zstd')``).  Running
   ``max``/``count`` window functions over the sentinel column give every
   event row its record, and a trailer sentinel plus ``count == max + 1``
   prove that no row was lost or misattributed.
3. Schema checks are vectorized: required fields non-null, ``event_type``
   against ``^[a-z][a-z0-9_]{0,63}$`` (on the dictionary of distinct types),
   ``attributes`` a string holding a JSON object.  With ``attribute_types``
   the attributes are also parsed in the same pass (``json_transform``) into
   a ``parsed_attributes`` struct column for the aggregation.

Fallback: if DuckDB rejects the stream (a corrupt zstd frame, a line that is
not JSON or has a value that cannot be converted), the records are parsed in
chunks of 64, then one by one, then a failing record line by line, so that
one bad record or line never sinks the batch.  Bad input comes back as
:class:`BadRecord` values (sequence number, reason, original bytes).

Conversions follow DuckDB's JSON reader: numeric strings and booleans are
accepted for the integer fields (``"17"`` -> 17, ``true`` -> 1), numbers for
string fields become their text.  The ingest API already enforces the exact
types, so this leniency only matters for hand-made records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chalicelib.stream import codec, envelope
from chalicelib.stream.records import UndecodableRecord, record_data
from .errors import InvalidArgumentError
from .ndjson_stream import PARSED_ATTRIBUTES, StreamParseError, parse_frames, raw_frame

#: Columns of the events table, in order (the canonical event keys of ``stream.envelope`` ...).
EVENT_SCHEMA = envelope.arrow_schema()
#: ... followed by these two: the Kinesis sequence number (exact string,
#: dictionary-encoded per record: real sequence numbers have ~56 digits and
#: do not fit an int64) and the record's index in the Lambda batch.
SEQUENCE_NUMBER = "sequence_number"
RECORD_INDEX = "record_index"
REQUIRED = envelope.REQUIRED_FIELDS
EVENT_TYPE_PATTERN = envelope.EVENT_TYPE_PATTERN
_ATTRIBUTE_TYPES = ("VARCHAR", "DOUBLE")
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_CHUNK = 64


@dataclass(frozen=True)
class BadRecord:
    """A record or line that could not be turned into an event.

    Attributes:
        sequence_number: the Kinesis sequence number (compare as integers).
        record_index: position of the record in the Lambda batch.
        line_index: position of the line among the record's non-empty lines,
            or None when the whole record is bad.
        reason: why it was rejected.
        data: the original bytes: the line, or the record's base64-decoded
            data (the raw base64 text if that could not be decoded).
    """

    sequence_number: str
    record_index: int
    line_index: int | None
    reason: str
    data: bytes


@dataclass(frozen=True)
class DecodedBatch:
    """The result of :func:`decode_records`.

    Attributes:
        events: one row per valid event, in batch order (record, then line);
            the ``EVENT_SCHEMA`` columns, then ``sequence_number`` and
            ``record_index``, then ``parsed_attributes`` if requested.
        bad: rejected records and lines.
        sequence_numbers: every record's sequence number, in batch order.
    """

    events: pa.Table
    bad: tuple[BadRecord, ...]
    sequence_numbers: tuple[str, ...]


class _Unit(NamedTuple):
    """A piece of input parsed together: a whole record or one line."""

    record: int
    first_line: int
    frame: bytes | memoryview  # zstd frame(s) holding NDJSON
    raw: bytes | None  # record data incl. EP1Z header (record units)
    line: bytes | None  # the line (line units)


def decode_records(records: Sequence[Mapping[str, Any]], *,
                   attribute_types: Mapping[str, str] | None = None,
                   con: duckdb.DuckDBPyConnection | None = None) -> DecodedBatch:
    """Decode the ``Records`` of a Kinesis-triggered Lambda event.

    Args:
        records: ``event["Records"]``; each has ``kinesis.data`` (base64 of a
            ``chalicelib.stream.codec`` record) and ``kinesis.sequenceNumber``.
        attribute_types: attribute name -> ``"VARCHAR"`` or ``"DOUBLE"`` to
            parse into the ``parsed_attributes`` column (use
            ``MetricSet.attribute_types``); None to skip.
        con: DuckDB connection to use (its ``threads`` setting is the
            caller's choice); a private in-memory one when None.

    Returns:
        The events table, the bad records and the sequence numbers.
    """
    struct_sql = _struct_sql(attribute_types)
    sequence_numbers: list[str] = []
    bad: list[BadRecord] = []
    units: list[_Unit] = []
    header_size = codec.HEADER_SIZE
    for i, rec in enumerate(records):
        seq = _sequence_of(rec)
        sequence_numbers.append(seq)
        try:
            raw = record_data(rec)  # the one record decoder (stream/records.py): base64 + header
        except UndecodableRecord as exc:
            bad.append(BadRecord(seq, i, None, exc.reason, exc.data))
            continue
        units.append(_Unit(i, 0, memoryview(raw)[header_size:], raw, None))
    own = con is None
    con = duckdb.connect() if own else con
    try:
        tables, more_bad = _decode_units(units, sequence_numbers, struct_sql, con)
    finally:
        if own:
            con.close()
    events, invalid = _assemble(tables, sequence_numbers, struct_sql)
    bad += more_bad + invalid
    bad.sort(key=lambda b: (b.record_index, -1 if b.line_index is None else b.line_index))
    return DecodedBatch(events, tuple(bad), tuple(sequence_numbers))


def _sequence_of(rec: Any) -> str:
    try:
        return str(rec["kinesis"]["sequenceNumber"])
    except (KeyError, TypeError):
        return ""


def _struct_sql(attribute_types: Mapping[str, str] | None) -> str | None:
    if not attribute_types:
        return None
    for name, typ in attribute_types.items():
        if not _ATTRIBUTE_NAME.match(name) or typ not in _ATTRIBUTE_TYPES:
            raise InvalidArgumentError(f"attribute_types: {name!r} -> {typ!r}; expected a name matching "
                                       f"{_ATTRIBUTE_NAME.pattern} and one of {_ATTRIBUTE_TYPES}")
    return json.dumps(dict(attribute_types), separators=(",", ":"))


def _decode_units(units: list[_Unit], seqs: list[str], struct_sql: str | None,
                  con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[pa.Table, list[_Unit]]], list[BadRecord]]:
    """Parse units, narrowing failures down to single records and lines."""
    if not units:
        return [], []
    try:
        return [(parse_frames([u.frame for u in units], EVENT_SCHEMA, struct_sql, con), units)], []
    except StreamParseError as exc:
        if len(units) == 1:
            return _single_failed(units[0], str(exc), seqs, struct_sql, con)
        size = _CHUNK if len(units) > _CHUNK else 1
        tables: list[tuple[pa.Table, list[_Unit]]] = []
        bad: list[BadRecord] = []
        for start in range(0, len(units), size):
            t, b = _decode_units(units[start:start + size], seqs, struct_sql, con)
            tables += t
            bad += b
        return tables, bad


def _single_failed(unit: _Unit, reason: str, seqs: list[str], struct_sql: str | None,
                   con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[pa.Table, list[_Unit]]], list[BadRecord]]:
    seq = seqs[unit.record]
    if unit.raw is None:  # a single line
        return [], [BadRecord(seq, unit.record, unit.first_line, reason, unit.line or b"")]
    try:
        text = codec.decode_record(unit.raw)
    except codec.UndecodableRecord as exc:
        return [], [BadRecord(seq, unit.record, None, str(exc), unit.raw)]
    lines = _lines(text)
    line_units = [_Unit(unit.record, k, raw_frame(line + b"\n"), None, line) for k, line in enumerate(lines)]
    return _decode_units(line_units, seqs, struct_sql, con)


def _lines(text: bytes) -> list[bytes]:
    """The non-empty lines of an NDJSON payload (DuckDB skips empty ones)."""
    return [line for line in text.split(b"\n") if line.strip()]


# ------------------------------------------------------------- validation
def _invalid_mask(table: pa.Table) -> np.ndarray:
    """Rows breaking the schema: required nulls, bad event_type, bad attributes."""
    bad = np.zeros(table.num_rows, dtype=bool)
    for name in REQUIRED:
        col = table.column(name)
        if col.null_count:
            bad |= col.is_null().to_numpy(zero_copy_only=False)
    types = pc.dictionary_encode(table.column("event_type").combine_chunks())
    type_ok = pc.match_substring_regex(types.dictionary, EVENT_TYPE_PATTERN)
    if not pc.all(type_ok).as_py():
        bad |= ~pc.fill_null(pc.take(type_ok, types.indices), True).to_numpy(zero_copy_only=False)
    attrs_ok = pc.fill_null(table.column("__attrs_ok"), False)
    if PARSED_ATTRIBUTES in table.column_names:  # try(json_transform) is null for invalid JSON
        attrs_ok = pc.and_(attrs_ok, pc.is_valid(table.column(PARSED_ATTRIBUTES)))
    bad |= ~attrs_ok.to_numpy(zero_copy_only=False)
    return bad


def _reason(row: dict[str, Any]) -> str:
    missing = [name for name in REQUIRED if row[name] is None]
    if missing:
        return f"missing required field(s): {', '.join(missing)}"
    if not re.match(EVENT_TYPE_PATTERN, row["event_type"]):
        return f"event_type {row['event_type']!r} does not match {EVENT_TYPE_PATTERN}"
    return "attributes is not a string holding a JSON object"


def _bad_rows(table: pa.Table, units: list[_Unit], unit_col: np.ndarray, rows: np.ndarray,
              seqs: list[str]) -> list[BadRecord]:
    """BadRecords (with the original line bytes) for the given row numbers."""
    first_row = np.searchsorted(unit_col, np.arange(len(units)), side="left")
    lines_cache: dict[int, list[bytes]] = {}
    out = []
    for row in rows.tolist():
        u = int(unit_col[row])
        unit = units[u]
        pos = row - int(first_row[u])
        if unit.line is not None:
            data = unit.line
        else:
            if u not in lines_cache:
                try:
                    lines_cache[u] = _lines(codec.decode_record(unit.raw or b""))
                except codec.UndecodableRecord:
                    lines_cache[u] = []
            lines = lines_cache[u]
            data = lines[pos] if pos < len(lines) else (unit.raw or b"")
        values = {name: table.column(name)[row].as_py() for name in REQUIRED}
        out.append(BadRecord(seqs[unit.record], unit.record, unit.first_line + pos, _reason(values), data))
    return out


def _assemble(parts: Iterable[tuple[pa.Table, list[_Unit]]], seqs: list[str],
              struct_sql: str | None) -> tuple[pa.Table, list[BadRecord]]:
    """Validate the parsed parts and build the events table."""
    with_struct = struct_sql is not None
    names = [f.name for f in EVENT_SCHEMA] + ([PARSED_ATTRIBUTES] if with_struct else [])
    tables, record_index, bad = [], [], []
    for table, units in parts:
        unit_col = table.column("__unit").to_numpy()
        invalid = _invalid_mask(table)
        records = np.fromiter((u.record for u in units), dtype=np.int32, count=len(units))[unit_col]
        if invalid.any():
            bad += _bad_rows(table, units, unit_col, np.flatnonzero(invalid), seqs)
            keep = ~invalid
            table, records = table.filter(pa.array(keep)), records[keep]
        tables.append(table.select(names))
        record_index.append(records)
    if tables:
        events = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        rec = np.concatenate(record_index) if len(record_index) > 1 else record_index[0]
    else:
        events = _empty_events(struct_sql)
        rec = np.zeros(0, dtype=np.int32)
    rec_arr = pa.array(rec, pa.int32())
    seq_arr = pa.DictionaryArray.from_arrays(rec_arr, pa.array(seqs, pa.string()))
    events = events.append_column(SEQUENCE_NUMBER, seq_arr).append_column(RECORD_INDEX, rec_arr)
    if with_struct:  # keep the documented column order: parsed_attributes last
        events = events.select([c for c in events.column_names if c != PARSED_ATTRIBUTES] + [PARSED_ATTRIBUTES])
    return events, bad


def _empty_events(struct_sql: str | None) -> pa.Table:
    table = EVENT_SCHEMA.empty_table()
    if struct_sql is not None:
        fields = [(name, pa.float64() if typ == "DOUBLE" else pa.string())
                  for name, typ in json.loads(struct_sql).items()]
        table = table.append_column(PARSED_ATTRIBUTES, pa.array([], pa.struct(fields)))
    return table
