"""The deletion job: every due ``delete`` / ``suppress_with_delete`` regulation, in one batch, across every store.

Steps (each idempotent: a job killed anywhere and run again finishes the work; a regulation stays
``running`` with its user ids until the last step is done)::

    1. take the raw table's writer lease (chalicelib/lake/writer_lock.py): no commit, compaction or
       expiry runs meanwhile; commit what is staged (the committer, journals settled first)
    2. note the (app, dt, hour)s that hold the users' rows (kept in the regulation, so a rerun
       after the delete still knows them), then ``delete`` the rows (copy-on-write: the files
       holding them are rewritten without them, one commit)
    3. expire every snapshot but the current one and delete every file no snapshot reaches
       (data files, manifests: their column bounds may name a user); the bytes leave S3
    4. staged batches written since step 1: rows of the users dropped
    5. search: ``delete_by_query`` over every daily index
    6. bad rows and dead letters (chalicelib/lake/erasure.py)
    7. rollups: each noted hour (and the hours before it whose windows reach into it) is
       re-finalized from the cleaned raw table and its covered partials are deleted at once;
       an hour still open is left to the finalizer (it finalizes from the cleaned table when the
       hour closes, then deletes the partials after its grace period) and the regulation stays
       ``running`` until a later run finds it closed
    8. the regulation is ``done``: counts and times kept, user ids removed

``checkpoint(step)`` is called between steps (tests inject a crash there).
"""

from __future__ import annotations

import logging
import uuid
from typing import Callable, Protocol


from chalicelib.lake import layout, s3io
from chalicelib.lake.erasure import ObjectEraser
from chalicelib.lake.regulations import Regulation, RegulationStore
from chalicelib.lake.writer_lock import WriterLock

log = logging.getLogger(__name__)
PRIVACY_PROPERTY = "eventpipe.privacy"


class Refinalizer(Protocol):
    """Recompute every metric of one (app, dt, hour) from the raw table and retire the partials it
    replaces; returns ``"done"``, or why not yet (``"open"``, ``"waiting-for-archive"``)."""

    def refinalize(self, app_id: str, dt: str, hour: str) -> str: ...


class SearchEraser(Protocol):
    def erase(self, app_id: str, user_ids: list[str]) -> int: ...


class UnitRefinalizer:
    """The :class:`Refinalizer` over the finalize units: every app of the hour is recomputed from the
    cleaned raw table (:meth:`Finalizer.backfill_partition`, unit by unit; the worker's hook rewrites
    the persons and sessions of each (app, hour)), then the hour's partials are deleted at once: they
    hold the deleted users' hashes, and every app in them now has final rows (readers take those)."""

    def __init__(self, finalizer, metrics, s3, bucket: str) -> None:
        self._finalizer, self._metrics, self._s3, self._bucket = finalizer, metrics, s3, bucket
        self._done: dict[tuple[str, str], str] = {}
        self.partials_deleted = 0

    def refinalize(self, app_id: str, dt: str, hour: str) -> str:
        if (dt, hour) in self._done:
            return self._done[(dt, hour)]
        partials = {m.name: {o["Key"]: o.get("ETag", "") for o in
                             s3io.list_keys(self._s3, self._bucket, layout.rollup_prefix(m, "partial", dt, hour))}
                    for m in self._metrics.metrics}
        outcome = "done"
        for metric in self._metrics.metrics:  # (one computation per hour: the metrics share it)
            report = self._finalizer.backfill_partition(metric, dt, hour)
            if report.action != "backfilled":
                outcome = report.action
                break
        if outcome == "done":
            for metric in self._metrics.metrics:
                now = {o["Key"]: o.get("ETag", "") for o in
                       s3io.list_keys(self._s3, self._bucket, layout.rollup_prefix(metric, "partial", dt, hour))}
                # only the partials the recomputation covered (one rewritten since is left to the planner)
                self.partials_deleted += s3io.delete_keys(self._s3, self._bucket, [
                    k for k, etag in now.items() if partials[metric.name].get(k) == etag])
        self._done[(dt, hour)] = outcome
        return outcome


class DeletionJob:
    def __init__(self, store: RegulationStore, lock: WriterLock, committer, raw, maintenance, eraser: ObjectEraser,
                 search: SearchEraser | None, refinalizer: Callable[[], Refinalizer], clock_ms: Callable[[], int],
                 lookback_hours: int = 0, checkpoint: Callable[[str], None] = lambda step: None,
                 people=None) -> None:
        self._store, self._lock, self._committer, self._raw = store, lock, committer, raw
        self._maintenance, self._eraser, self._search = maintenance, eraser, search
        self._new_refinalizer, self._clock_ms, self._lookback = refinalizer, clock_ms, lookback_hours
        self._checkpoint, self._people = checkpoint, people

    def run(self) -> dict:
        due = self._store.due()
        if not due:
            return {"regulations": 0}
        owner = f"privacy-job:{uuid.uuid4().hex}"
        self._lock.acquire(owner)  # LockHeld: the committer (or another deletion job) is at work; retry later
        try:
            return self._run(due)
        except Exception as exc:
            for reg in due:
                reg.error = f"{type(exc).__name__}: {exc}"[:500]
                self._store.save(reg)  # still running: the next run retries
            raise
        finally:
            self._lock.release(owner)

    def _run(self, due: list[Regulation]) -> dict:
        now = self._clock_ms()
        targets: dict[str, set[str]] = {}
        for reg in due:
            reg.status, reg.started_at, reg.error = "running", reg.started_at or now, None
            self._store.save(reg)
            targets.setdefault(reg.app_id, set()).update(reg.user_ids)
        frozen = {app: frozenset(users) for app, users in targets.items()}
        counts: dict[str, dict[str, int]] = {app: {} for app in targets}

        self._committer.run()
        self._checkpoint("committed")
        for app_id, users in frozen.items():
            hours, rows = self._raw_delete(app_id, sorted(users))
            for reg in due:
                if reg.app_id == app_id:
                    reg.results["raw_rows"] = reg.results.get("raw_rows", 0) + rows
                    reg.results.setdefault("hours", [])
                    reg.results["hours"] = sorted(set(map(tuple, reg.results["hours"])) | hours)
                    self._store.save(reg)
        self._checkpoint("raw-deleted")
        expired = self._expire_all()
        self._checkpoint("expired")
        staged_files, staged_rows = self._eraser.staged(frozen)
        searched = {app: self._search.erase(app, sorted(users)) if self._search else 0 for app, users in frozen.items()}
        self._checkpoint("search-erased")
        bad_rows = self._eraser.bad_rows(frozen)
        dead = self._eraser.dead_letters(frozen)
        self._checkpoint("files-erased")
        refinalizer = self._new_refinalizer()
        summary = {"regulations": len(due), "expired_files": expired, "staged_files": staged_files,
                   "staged_rows": staged_rows, "search_documents": sum(searched.values()), "bad_rows": bad_rows,
                   "dead_letter_events": dead}
        for reg in due:
            r = reg.results
            for name, value in (("staged_files", staged_files), ("staged_rows", staged_rows), ("bad_rows", bad_rows),
                                ("dead_letter_events", dead), ("search_documents", searched.get(reg.app_id, 0))):
                r[name] = r.get(name, 0) + value
            pending = []
            for dt, hour in self._hours_to_refinalize(r.get("hours", [])):
                outcome = refinalizer.refinalize(reg.app_id, dt, hour)
                if outcome == "done":
                    r["windows_recomputed"] = r.get("windows_recomputed", 0) + 1
                else:
                    pending.append([dt, hour])
            r["hours"] = pending
            r["partials_deleted"] = getattr(refinalizer, "partials_deleted", 0)
            if not pending and self._people is not None:  # after the hours' sessions were rewritten
                r["person_states"] = r.get("person_states", 0) + self._people.erase(reg.app_id, sorted(frozen[reg.app_id]))
            if not pending:
                reg.status, reg.finished_at, reg.user_ids = "done", self._clock_ms(), []
                r.pop("hours", None)
            self._store.save(reg)
        summary["done"] = sum(1 for r in due if r.status == "done")
        log.info("privacy: %s", summary)
        return summary

    def _raw_delete(self, app_id: str, users: list[str]) -> tuple[set[tuple[str, str]], int]:
        from pyiceberg.expressions import And, EqualTo, In

        where = And(EqualTo("app_id", app_id), In("user_id", users))
        table = self._raw.table()
        if table.current_snapshot() is None:
            return set(), 0
        found = table.scan(row_filter=where, selected_fields=("dt", "hour")).to_arrow()
        if found.num_rows == 0:
            return set(), 0
        hours = {(d, h) for d, h in zip(found["dt"].to_pylist(), found["hour"].to_pylist())}
        table.delete(delete_filter=where, snapshot_properties={PRIVACY_PROPERTY: app_id})
        # The delete's snapshot keeps the removed files' entries (status DELETED, with their column
        # bounds, which may name a user) in a manifest of their own; an append (of no rows) carries
        # only manifests with live files, so once the older snapshots expire that manifest goes too.
        from chalicelib.lake.raw_table import arrow_table_schema
        self._raw.table().append(arrow_table_schema().empty_table(), snapshot_properties={PRIVACY_PROPERTY: "manifests"})
        log.info("privacy: deleted %d raw row(s) of %d user(s) of %s in %d hour(s)", found.num_rows, len(users),
                 app_id, len(hours))
        return hours, found.num_rows

    def _expire_all(self) -> int:
        """Expire every snapshot but the current one, delete what only they reached, then every
        unreferenced file under the table (a killed run's leftovers included)."""
        from chalicelib.lake.raw_maintenance import MaintenanceReport
        report = MaintenanceReport()
        self._maintenance.expire(report)
        self._maintenance.sweep_orphans(report)
        from chalicelib.lake.raw_table import TABLE_PREFIX
        return report.deleted_files + report.swept_orphans + self._eraser.purge_noncurrent(TABLE_PREFIX + "/")

    def _hours_to_refinalize(self, hours) -> list[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for dt, hour in hours:
            start = layout.hour_start_ms(dt, hour)
            for back in range(self._lookback + 1):
                out.add(layout.dt_hour(start - back * layout.HOUR_MS))
        return sorted(out)

