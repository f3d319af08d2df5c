"""The local stack keeps its data across restarts: S3 objects and DynamoDB items in a data folder.

moto keeps everything in memory, so without this a Ctrl-C loses the lake, the apps and
their keys. The supervisor (``eventpipe/local/stack.py``) calls, in this order:

* **start**: moto up -> :meth:`DataFolder.restore` (buckets, objects with their content
  type and user metadata, tables with their key schema, items) -> bootstrap (creates only
  what is missing: the restored demo key and apps stay) -> the API opens -> the runner ->
  the search indices rebuilt by ``eventpipe replay`` from the restored raw archive, in the
  background (they are not saved; progress lines until ``search: caught up``).
* **while running**: :meth:`DataFolder.save` every ``save_every_s`` (30 s by default).
* **Ctrl-C / SIGTERM**: the API stops first (no new events), :func:`drain` waits until
  every consumer's checkpoint is at the last record of every shard (bounded; it says
  which consumer is behind if it gives up; not the search indexer's: the next start
  rebuilds search from the archive anyway), the runner stops (nothing writes any more),
  one last save, then search and moto stop.

**The folder.** ``snapshot.json`` (every bucket's keys with ETag, size, content type,
metadata and the blob holding the body; every table's key schema and items) and
``blobs/<sha256>`` (object bodies, content-addressed). A save GETs only the objects whose
ETag changed since the previous snapshot, writes new blobs, then replaces
``snapshot.json`` atomically (temporary file, fsync, rename) and only then deletes the
blobs nothing refers to: a crash at any point leaves the previous snapshot whole.

**The stream does not survive.** moto comes back with a new, empty Kinesis stream (same
name, ARN and shard ids). Three things in the lake refer to sequence numbers of the old
one: the runner's checkpoints (``checkpoint|<arn>|<consumer>|<shard>``), the archive's
per-shard progress (``progress|archive|<shard>``, lake/state.py) and every output named
by shard and first sequence number, with the partials' ``last-sequence`` metadata that
the finalizer compares with that progress before it finalizes a partition. moto would
number the new stream 1, 2, 3... again: the first new batch would then *overwrite* the
restored archive file and partials of the old stream's first batch (found by the test
of windows open across a restart), and old progress would let new partials through
before their records are archived. So the stack runs moto through
``eventpipe/local/moto_server.py``, whose sequence numbers grow with time as real
Kinesis's do: every number of the new stream is greater than any the lake holds, and
the restored state keeps its meaning as it is:

* a checkpoint at an old number reads the whole new stream (``AFTER_SEQUENCE_NUMBER``),
  its counters ``delivered``/``retries``/``dead_lettered`` go on growing;
* the archive's progress is below every new number: a new partial waits until the
  archive has its records, as before the restart;
* a restored partial is covered by the restored progress, because the save at Ctrl-C
  comes after the drain (the archive consumer had made durable every record of the old
  stream). Restored objects keep their bodies, so their ETags (MD5) and the finalizer's
  manifests still match. Windows open at the restart are finalized after it from the
  raw archive, as if nothing had happened.

One rule covers the case without a drain: the restore raises each shard's archive
progress to the greatest ``last-sequence`` of the restored objects on that shard. The old
stream is gone, so what the archive holds of it is all it will ever hold: a partition
whose partials came from records the archive never got is finalized from what the
archive has (finals and SQL agree) instead of waiting forever.

**After a crash** (SIGKILL of the supervisor: the children die with it) there was no
drain and no final save: the next start restores the last periodic save. Lost: what
arrived after that save, and what was still on the stream, not yet written by every
consumer, at the moment of the save (the pipeline's lag, normally below a second).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import orjson
from botocore.exceptions import ClientError

log = logging.getLogger(__name__)
SNAPSHOT = "snapshot.json"
BLOBS = "blobs"
VERSION = 1
#: The user metadata of outputs naming the shard and last sequence number they hold (lake/consumers.py).
SHARD_ID, LAST_SEQUENCE = "shard-id", "last-sequence"


@dataclass(frozen=True)
class SaveReport:
    objects: int
    bytes: int
    fetched: int
    tables: int
    items: int
    seconds: float

    def describe(self) -> str:
        return (f"saved {self.objects} object(s) ({self.bytes / 1e6:.1f} MB, {self.fetched} changed), "
                f"{self.items} item(s) of {self.tables} table(s) in {self.seconds:.1f}s")


@dataclass(frozen=True)
class RestoreReport:
    objects: int
    bytes: int
    tables: int
    items: int
    apps: int
    keys: int
    saved_at_ms: int
    seconds: float

    def describe(self) -> str:
        return (f"restored {self.objects} object(s) ({self.bytes / 1e6:.1f} MB), {self.items} item(s) of "
                f"{self.tables} table(s): {self.apps} app(s), {self.keys} key(s); saved "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(self.saved_at_ms / 1000))}; "
                f"{self.seconds:.1f}s")


def _write_atomically(path: Path, data: bytes) -> None:
    # Per process and thread: two objects with the same body are the same blob, written at once.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _list_objects(s3, bucket: str):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        yield from page.get("Contents", [])


def _scan(dynamodb, table: str) -> list[dict]:
    items = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items += page["Items"]
    return items


class DataFolder:
    """Snapshots of moto's S3 and DynamoDB in one folder (see the module docstring)."""

    def __init__(self, path: str | Path, s3, dynamodb, state_table: str, apps_table: str,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.path = Path(path)
        self._s3, self._db, self._state_table, self._apps_table = s3, dynamodb, state_table, apps_table
        self._clock_ms = clock_ms

    # ------------------------------------------------------------------ the folder
    @property
    def snapshot_path(self) -> Path:
        return self.path / SNAPSHOT

    def load(self) -> dict | None:
        """The last complete snapshot, or None."""
        try:
            snapshot = orjson.loads(self.snapshot_path.read_bytes())
        except FileNotFoundError:
            return None
        if snapshot.get("version") != VERSION:
            raise ValueError(f"{self.snapshot_path}: snapshot version {snapshot.get('version')}, expected {VERSION}")
        return snapshot

    def clear(self) -> None:
        """Forget the saved data (``--fresh``): the snapshot, then the blobs."""
        self.snapshot_path.unlink(missing_ok=True)
        self._collect_garbage(set())

    def _blob(self, digest: str) -> Path:
        return self.path / BLOBS / digest

    def _collect_garbage(self, keep: set[str]) -> None:
        folder = self.path / BLOBS
        if folder.is_dir():
            for blob in folder.iterdir():
                if blob.name not in keep:
                    blob.unlink(missing_ok=True)

    # ------------------------------------------------------------------ save
    def save(self) -> SaveReport:
        began = time.monotonic()
        (self.path / BLOBS).mkdir(parents=True, exist_ok=True)
        previous = self.load() or {"buckets": {}}
        buckets: dict[str, dict[str, dict]] = {}
        changed: list[tuple[str, str]] = []
        for bucket in [b["Name"] for b in self._s3.list_buckets().get("Buckets", [])]:
            before = previous["buckets"].get(bucket, {})
            buckets[bucket] = {}
            for obj in _list_objects(self._s3, bucket):
                key, etag = obj["Key"], obj.get("ETag", "")
                old = before.get(key)
                if old is not None and old["etag"] == etag and self._blob(old["blob"]).exists():
                    buckets[bucket][key] = old
                else:
                    changed.append((bucket, key))
        with ThreadPoolExecutor(max_workers=8) as pool:
            entries = list(pool.map(lambda job: self._fetch(*job), changed))
        fetched = 0
        for (bucket, key), entry in zip(changed, entries):
            if entry is not None:  # None: deleted since the listing
                buckets[bucket][key] = entry
                fetched += 1
        tables = {}
        for name in self._db.list_tables().get("TableNames", []):
            description = self._db.describe_table(TableName=name)["Table"]
            tables[name] = {"key_schema": description["KeySchema"],
                            "attribute_definitions": description["AttributeDefinitions"],
                            "items": _scan(self._db, name)}
        snapshot = {"version": VERSION, "saved_at_ms": self._clock_ms(), "buckets": buckets, "tables": tables}
        _write_atomically(self.snapshot_path, orjson.dumps(snapshot))
        self._collect_garbage({e["blob"] for entries in buckets.values() for e in entries.values()})
        return SaveReport(sum(len(e) for e in buckets.values()),
                          sum(x["size"] for e in buckets.values() for x in e.values()), fetched, len(tables),
                          sum(len(t["items"]) for t in tables.values()), time.monotonic() - began)

    def _fetch(self, bucket: str, key: str) -> dict | None:
        try:
            response = self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None  # deleted since the listing (e.g. a compacted partial)
            raise
        body = response["Body"].read()
        digest = hashlib.sha256(body).hexdigest()
        blob = self._blob(digest)
        if not blob.exists():
            _write_atomically(blob, body)
        return {"etag": response.get("ETag", ""), "blob": digest, "size": len(body),
                "content_type": response.get("ContentType"), "metadata": response.get("Metadata", {})}

    # ------------------------------------------------------------------ restore
    def restore(self, snapshot: dict, region: str) -> RestoreReport:
        """Put the snapshot into an empty moto, before bootstrap and before the API opens (module docstring)."""
        from eventpipe.local.bootstrap import ensure_bucket

        began = time.monotonic()
        puts = []
        for bucket, entries in snapshot["buckets"].items():
            ensure_bucket(self._s3, bucket, region)
            puts += [(bucket, key, entry) for key, entry in entries.items()]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda job: self._put(*job), puts))
        items = 0
        for name, table in snapshot["tables"].items():
            self._create_table(name, table)
            self._write_items(name, table["items"])
            items += len(table["items"])
        self._archive_covers_the_old_stream(puts)
        apps = snapshot["tables"].get(self._apps_table, {"items": []})["items"]
        # Key hashes are hex; the app's limits and rate-limit buckets share the table under "<kind>#<app>".
        keys = [i for i in apps if "#" not in i.get("key_hash", {}).get("S", "#")]
        return RestoreReport(len(puts), sum(e["size"] for _, _, e in puts), len(snapshot["tables"]), items,
                             len({i["app_id"]["S"] for i in keys if "app_id" in i}), len(keys),
                             snapshot["saved_at_ms"], time.monotonic() - began)

    def _put(self, bucket: str, key: str, entry: dict) -> None:
        metadata = entry.get("metadata") or {}
        extra = {"ContentType": entry["content_type"]} if entry.get("content_type") else {}
        self._s3.put_object(Bucket=bucket, Key=key, Body=self._blob(entry["blob"]).read_bytes(), Metadata=metadata,
                            **extra)

    def _create_table(self, name: str, table: dict) -> None:
        try:
            self._db.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=table["key_schema"],
                                  AttributeDefinitions=table["attribute_definitions"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise

    def _write_items(self, table: str, items: Sequence[dict]) -> None:
        for i in range(0, len(items), 25):
            requests = {table: [{"PutRequest": {"Item": item}} for item in items[i:i + 25]]}
            while requests:
                requests = self._db.batch_write_item(RequestItems=requests).get("UnprocessedItems") or None

    def _archive_covers_the_old_stream(self, puts: Sequence[tuple[str, str, dict]]) -> None:
        """Raise each shard's archive progress to the last sequence number restored objects hold
        (the old stream is gone: the archive holds all of it it ever will)."""
        from chalicelib.lake.state import StateStore

        last: dict[str, int] = {}
        for _, _, entry in puts:
            metadata = entry.get("metadata") or {}
            if SHARD_ID in metadata and metadata.get(LAST_SEQUENCE, "").isdigit():
                shard = metadata[SHARD_ID]
                last[shard] = max(last.get(shard, 0), int(metadata[LAST_SEQUENCE]))
        state = StateStore(self._db, self._state_table)
        for shard, sequence_number in sorted(last.items()):
            state.raise_archived_through(shard, str(sequence_number))  # only ever raises


@dataclass(frozen=True)
class DrainReport:
    drained: bool
    #: consumer -> records still behind, summed over the shards (empty when drained).
    behind: dict[str, int]
    seconds: float

    def describe(self) -> str:
        if self.drained:
            return f"drained: every consumer is at the tip of every shard ({self.seconds:.1f}s)"
        late = ", ".join(f"{name} {n} record(s) behind" for name, n in sorted(self.behind.items()))
        return (f"NOT drained after {self.seconds:.0f}s: {late}; saving anyway (those records are lost "
                "at the restart, the stream does not survive it)")


def drain(kinesis, dynamodb, state_table: str, stream_name: str, consumers: Sequence[str],
          timeout_s: float = 60.0, poll_s: float = 0.5) -> DrainReport:
    """Wait until every consumer's checkpoint is at the last record of every shard (or ``timeout_s``)."""
    from chalicelib.reads.stream_lag import CheckpointLag

    lag = CheckpointLag(kinesis, dynamodb, state_table, stream_name, lambda: int(time.time() * 1000))
    began = time.monotonic()
    while True:
        behind: dict[str, int] = {}
        for row in lag.read(consumers).rows:
            if row.behind:
                behind[row.consumer] = behind.get(row.consumer, 0) + row.behind
        elapsed = time.monotonic() - began
        if not behind or elapsed >= timeout_s:
            return DrainReport(not behind, behind, elapsed)
        time.sleep(poll_s)
