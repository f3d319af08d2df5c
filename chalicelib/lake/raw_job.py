"""The scheduled ``commit_events`` job: commit staged batches, then keep the table small.

One invocation is the table's only writer: the committer's appends, compaction's
overwrites, expiry and deletes never race each other (reserved concurrency 1).
It takes the raw table's writer lease first (chalicelib/lake/writer_lock.py), so the
privacy deletion job, which may run elsewhere, never overlaps it: a run that finds the
lease held does nothing (the next run commits). The orphan sweep lists the whole table location, so it runs at most once per
:data:`chalicelib.lake.raw_maintenance.SWEEP_PERIOD_MS` (the last sweep is kept in the state table).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from chalicelib.lake.raw_commit import StagedCommitter
from chalicelib.lake.raw_maintenance import SWEEP_PERIOD_MS, RawMaintenance
from chalicelib.lake.state import StateStore
from chalicelib.lake.writer_lock import LockHeld, WriterLock

SWEEP_JOB = "raw-table-sweep"
OWNER = "commit-events"


class RawTableJob:
    def __init__(self, committer: StagedCommitter, maintenance: RawMaintenance, state: StateStore,
                 clock_ms: Callable[[], int], sweep_period_ms: int = SWEEP_PERIOD_MS,
                 lock: WriterLock | None = None) -> None:
        self._committer, self._maintenance, self._state = committer, maintenance, state
        self._clock_ms, self._sweep_period_ms, self._lock = clock_ms, sweep_period_ms, lock

    def run(self) -> dict:
        if self._lock is None:
            return self._run()
        try:
            self._lock.acquire(OWNER)
        except LockHeld as exc:
            return {"skipped": str(exc)}
        try:
            return self._run()
        finally:
            self._lock.release(OWNER)

    def _run(self) -> dict:
        committed = self._committer.run()
        now = self._clock_ms()
        last = self._state.last_run_ms(SWEEP_JOB)
        sweep = last is None or now - last >= self._sweep_period_ms
        maintained = self._maintenance.run(sweep=sweep)
        if sweep:
            self._state.mark_run(SWEEP_JOB, now)
        return {"commit": dataclasses.asdict(committed), "maintenance": dataclasses.asdict(maintained)}
