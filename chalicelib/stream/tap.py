"""The tap consumer: counts and logs what the stream delivers (local debugging, never deployed).

It is the simplest consumer of the stream and the one the end-to-end test
watches: with a tap file configured it appends one JSON line per event
(``event_id``, ``app_id``, ``shard_id``, ``sequence_number``) to it.
"""

from __future__ import annotations

import logging

import orjson

from chalicelib.stream.records import decode_batch


def tap_batch(records: list[dict], log: logging.Logger, tap_file: str | None = None) -> dict:
    events = 0
    undecodable = 0
    lines: list[bytes] = []
    for decoded in decode_batch(records):
        if decoded.error is not None:
            undecodable += 1
            log.warning("tap: undecodable record %s: %s", decoded.ref.sequence_number, decoded.error)
            continue
        for line in decoded.lines:
            event = orjson.loads(line)
            events += 1
            if tap_file:
                lines.append(orjson.dumps({"event_id": event["event_id"], "app_id": event["app_id"],
                                           "shard_id": decoded.ref.shard_id,
                                           "sequence_number": decoded.ref.sequence_number}))
    if tap_file and lines:
        with open(tap_file, "ab") as handle:
            handle.write(b"\n".join(lines) + b"\n")
    first = records[0]["kinesis"]["sequenceNumber"] if records else "-"
    last = records[-1]["kinesis"]["sequenceNumber"] if records else "-"
    log.info("tap: delivered %d record(s), %d event(s), %d undecodable, sequence %s..%s",
             len(records), events, undecodable, first, last)
    return {"records": len(records), "events": events, "undecodable": undecodable}
