"""The committer: staged archive batches -> the raw events Iceberg table, in few commits.

The archive consumer stages one Parquet file per Kinesis batch
(``layout.staged_key``); it never commits (per-batch commits would contend for
the table and grow its metadata by a snapshot per batch). Every few minutes the
committer appends the staged files in **one commit** (several when there is more
than ``max_bytes`` staged), then records each shard's progress ("archived
through", which the finalizer's coverage rule reads) and deletes the files.

Exactly once, whatever crashes (a journal per commit)::

    1. PUT staging/commits/<id>.json   the staged keys this commit takes
    2. append to the table, snapshot summary {"eventpipe.commit": <id>}
    3. raise the shards' progress; delete the staged files; delete the journal

A run first settles every journal it finds: if a snapshot carries the journal's id,
the commit landed (finish step 3); otherwise it never did (drop the journal: its
files are still staged and are committed again). So a staged file is committed at
most once and no staged row is lost. A file staged again after its commit (Kinesis
re-delivery of a batch) adds copies of rows already in the table: compaction keeps
one (the duplicate rule). Journals are settled long before maintenance may expire
the snapshots that carry their ids (:data:`chalicelib.lake.raw_maintenance.SNAPSHOT_RETENTION_MS`).

Run one committer at a time (reserved concurrency 1 on AWS; the local runner runs
schedules one after the other): concurrent runs stay correct but may commit a file
twice before compaction removes the copies.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

import orjson
import pyarrow as pa

from chalicelib.lake import layout, s3io
from chalicelib.lake.raw_table import RawTable, arrow_table_schema
from chalicelib.lake.state import StateStore

log = logging.getLogger(__name__)
COMMIT_PROPERTY = "eventpipe.commit"
#: Staged bytes (compressed Parquet) per commit at most; a run makes several commits if needed.
MAX_COMMIT_BYTES = 256 * 1024 * 1024
MAX_COMMITS_PER_RUN = 20


@dataclass
class CommitReport:
    commits: int = 0
    files: int = 0
    rows: int = 0
    recovered: int = 0
    dropped_journals: int = 0
    shards: dict[str, str] = field(default_factory=dict)


class StagedCommitter:
    def __init__(self, s3, bucket: str, raw: RawTable, state: StateStore,
                 max_bytes: int = MAX_COMMIT_BYTES, max_commits: int = MAX_COMMITS_PER_RUN) -> None:
        self._s3, self._bucket, self._raw, self._state = s3, bucket, raw, state
        self._max_bytes, self._max_commits = max_bytes, max_commits

    def run(self) -> CommitReport:
        report = CommitReport()
        self.settle_journals(report)
        while report.commits < self._max_commits:
            chunk = self._next_chunk()
            if not chunk:
                break
            self.commit(chunk, report)
        return report

    def staged(self) -> list[dict]:
        """The staged files, oldest batch first per shard."""
        return sorted(s3io.list_keys(self._s3, self._bucket, layout.STAGING_PREFIX), key=lambda o: o["Key"])

    def _next_chunk(self) -> list[str]:
        chunk, size = [], 0
        for obj in self.staged():
            if chunk and size + obj["Size"] > self._max_bytes:
                break
            chunk.append(obj["Key"])
            size += obj["Size"]
        return chunk

    # ------------------------------------------------------------------------ one commit
    def commit(self, keys: list[str], report: CommitReport) -> None:
        commit_id = uuid.uuid4().hex
        journal_key = f"{layout.COMMITS_PREFIX}{commit_id}.json"
        self._s3.put_object(Bucket=self._bucket, Key=journal_key, ContentType="application/json",
                            Body=orjson.dumps({"id": commit_id, "files": keys}))
        tables = [t for t in s3io.read_many(self._s3, self._bucket, keys) if t.num_rows]
        schema = arrow_table_schema()
        rows = pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()
        if rows.num_rows:  # batches without events append nothing, but their progress counts
            rows = rows.sort_by([("app_id", "ascending"), ("event_time", "ascending")])
            self._raw.table().append(rows, snapshot_properties={COMMIT_PROPERTY: commit_id})
        self._finish(journal_key, keys, report)
        report.commits += 1
        report.files += len(keys)
        report.rows += rows.num_rows
        log.info("committed %d staged file(s), %d row(s) (commit %s)", len(keys), rows.num_rows, commit_id)

    def _finish(self, journal_key: str, keys: list[str], report: CommitReport) -> None:
        progress: dict[str, int] = {}
        for key in keys:
            shard, last = layout.staged_position(key)
            progress[shard] = max(progress.get(shard, -1), int(last))
        for shard, last in sorted(progress.items()):
            self._state.raise_archived_through(shard, str(last))
            report.shards[shard] = str(last)
        s3io.delete_keys(self._s3, self._bucket, keys)
        s3io.delete_keys(self._s3, self._bucket, [journal_key])

    # ------------------------------------------------------------------------ recovery
    def settle_journals(self, report: CommitReport) -> None:
        journals = [o["Key"] for o in s3io.list_keys(self._s3, self._bucket, layout.COMMITS_PREFIX)]
        if not journals:
            return
        landed = {s.summary[COMMIT_PROPERTY] for s in self._raw.table().snapshots()
                  if s.summary is not None and s.summary[COMMIT_PROPERTY]}
        for journal_key in journals:
            body = s3io.get_bytes(self._s3, self._bucket, journal_key)
            journal = orjson.loads(body) if body else {"id": None, "files": []}
            if journal["id"] in landed:
                self._finish(journal_key, journal["files"], report)
                report.recovered += 1
                log.info("commit %s had landed: %d staged file(s) cleaned up", journal["id"], len(journal["files"]))
            else:
                s3io.delete_keys(self._s3, self._bucket, [journal_key])
                report.dropped_journals += 1
                log.info("commit %s never landed: its staged files are committed again", journal["id"])
