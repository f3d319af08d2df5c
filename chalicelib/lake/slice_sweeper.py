"""Deletes the slice files of superseded finalizations of split (app, hour)s (S3 only).

A split (app, hour) is finalized into slice files named by the inputs' fingerprint
(``app-<app>/slice-<k>-of-<n>-<fp>.parquet``, final_writer.py), and its head names the current
ones. Re-finalizing it (a late event, a compaction, a deletion request) writes a new set beside
the old one. Readers of this project follow the head, but an engine that reads every file under
a partition's folder (Athena, Trino over the Glue tables) would count both sets, and a person's
deleted data would live on in the old one. So the old sets go:

A fingerprint's slices are **stale** when the app's newest done marker is older than the grace
period (a reader that read the old head has finished), names another fingerprint, and the heads
are the ones it recorded (``FinalWriter.verified``: a unit that switched them since is left
alone); and the stale fingerprint either completed before it (its own done marker is older) or
never completed and wrote its last manifest more than :data:`ABANDONED_MS` ago (a computation
still under way, e.g. the slices of a new fingerprint waiting in the queue, is never touched).
Then its slice files (every metric) and its slice manifests are deleted; without its manifests a
late unit of the stale fingerprint can never switch the heads back to files that are gone. A
fingerprint of one slice wrote ``app-<app>.parquet`` itself, which the current computation has
replaced: only its manifest goes.

Engines that read every file of the folder still count a split (app, hour) twice *while* it is
being re-finalized (the new slices are written before the heads switch), and until the grace
period has passed (docs/known-limits.md).
"""

from __future__ import annotations

from typing import Callable

import orjson

from chalicelib.lake import layout, units
from chalicelib.lake.final_writer import FinalWriter
from chalicelib.lake.s3io import delete_keys, get_bytes, list_keys
from chalicelib.processing import MetricSet

#: A fingerprint that never completed is abandoned once its last slice manifest is this old.
ABANDONED_MS = 24 * 3_600_000


class SliceSweeper:
    def __init__(self, s3, bucket: str, metrics: MetricSet, writer: FinalWriter, clock_ms: Callable[[], int],
                 grace_ms: int) -> None:
        self._s3, self._bucket, self._metrics, self._writer = s3, bucket, metrics, writer
        self._clock_ms, self._grace_ms = clock_ms, grace_ms

    def sweep(self, dt: str, hour: str, grace_ms: int | None = None) -> int:
        """Delete the stale slices of the hour's apps; returns the keys deleted. ``grace_ms``
        overrides the grace period (0 right after a deletion request: readers that lose a file
        re-list and read the new head)."""
        grace = self._grace_ms if grace_ms is None else grace_ms
        now = self._clock_ms()
        done: dict[str, dict[str, tuple[int, str]]] = {}          # app -> fp -> its newest (at, key)
        manifests: dict[tuple[str, str], list[tuple[dict, str]]] = {}  # (app, fp) -> [(fields, key)]
        for obj in list_keys(self._s3, self._bucket, units.hour_prefix(dt, hour)):
            parsed = units.parse_unit_key(obj["Key"])
            if parsed is None:
                continue
            app, kind, fields = parsed
            if kind == "done":
                mine = done.setdefault(app, {})
                mine[fields["fp"]] = max(mine.get(fields["fp"], (-1, "")), (fields["at"], obj["Key"]))
            else:
                manifests.setdefault((app, fields["fp"]), []).append((fields, obj["Key"]))
        doomed: list[str] = []
        for app, by_fp in sorted(done.items()):
            current, (at, done_key) = max(by_fp.items(), key=lambda item: item[1])
            if now - at < grace:
                continue
            stale = [(fp, entries) for (a, fp), entries in sorted(manifests.items()) if a == app and fp != current
                     and (by_fp[fp][0] < at if fp in by_fp else self._abandoned(entries, now))]
            if not stale or not self._writer.verified(done_key):
                continue
            for fp, entries in stale:
                for fields, key in entries:
                    if fields["n"] > 1:
                        doomed += [layout.slice_key(m, dt, hour, app, fields["k"], fields["n"], fp)
                                   for m in self._metrics.metrics]
                    doomed.append(key)
        return delete_keys(self._s3, self._bucket, doomed) if doomed else 0

    def _abandoned(self, entries: list[tuple[dict, str]], now: int) -> bool:
        """A fingerprint that never completed: every manifest it wrote is older than ABANDONED_MS
        (one GET each: rare, a computation superseded before its last slice)."""
        for _, key in entries:
            body = get_bytes(self._s3, self._bucket, key)
            if body is None or now - int(orjson.loads(body).get("finalized_at", now)) < ABANDONED_MS:
                return False
        return True
