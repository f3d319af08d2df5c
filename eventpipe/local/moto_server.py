"""moto's server, with Kinesis sequence numbers that grow with time, as real Kinesis's do.

moto numbers each shard's records 1, 2, 3...; a restarted moto (the local stack keeps
its data across restarts, ``persistence.py``) would number the new stream's records 1,
2, 3... again. Everything the pipeline writes is named by shard and sequence number
(archive files, partials, bad rows: a re-delivered batch overwrites its own output), so
the new stream's first batch would overwrite the restored lake's files of the old
stream's first batch. Real Kinesis never reuses a number: they increase with time, also
across a deleted and re-created stream. This launcher gives moto the same property:
``max(previous + 1, microseconds since the epoch)``, so the numbers of a restarted stack
are greater than any the lake holds, and the restored checkpoints and archive progress
keep their meaning (``AFTER_SEQUENCE_NUMBER <old checkpoint>`` reads the whole new stream).

It also keeps moto's access log (werkzeug's ``"POST / HTTP/1.1" 400 -`` line per AWS call,
colour-coded by status) out of the stack's output: ``EVENTPIPE_VERBOSE=1`` shows it.

``python -m eventpipe.local.moto_server -H 127.0.0.1 -p 5000`` takes moto.server's arguments.
"""

from __future__ import annotations

import logging
import os
import sys
import time


def use_time_ordered_sequences() -> None:
    """Replace moto's per-shard counter (moto.kinesis.models.Shard.put_record) in this process."""
    from moto.kinesis import models

    def put_record(self, partition_key: str, data: str, explicit_hash_key: str) -> str:
        last = self.get_max_sequence_number() if self.records else 0
        sequence_number = max(last + 1, time.time_ns() // 1000)
        self.records[sequence_number] = models.Record(partition_key, data, sequence_number, explicit_hash_key)
        return str(sequence_number)

    models.Shard.put_record = put_record


def quiet_access_log() -> None:
    """werkzeug logs each request at INFO (and sets INFO itself only when no level is set); errors still show."""
    if os.environ.get("EVENTPIPE_VERBOSE") != "1":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    use_time_ordered_sequences()
    quiet_access_log()
    from moto.server import main as moto_main
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
