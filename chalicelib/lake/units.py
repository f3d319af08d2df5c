"""Finalization work units: what one finalize-worker invocation computes (pure: no I/O, no clock).

A unit is one (app, dt, hour) — or slice ``k`` of ``n`` of it when the app's hour holds more
raw rows than :data:`ROWS_PER_UNIT`. It computes **every metric** of its slice from one read of
the raw table, pruned to the app (the table is partitioned by ``app_id``) and to the slice's
event-time range.

**The slice rule** (by window range, not by key hash): slice ``k`` of ``n`` owns the windows whose
``window_start`` lies in ``[hour + k*H/n, hour + (k+1)*H/n)`` (H = one hour), and reads the
events with ``event_time`` in ``[that start, that end + max(size - slide))`` — every event of every
window it owns. Each (app, window, key) group is owned by exactly one slice and computed from
all of its events, so exact distinct counts and percentile sketches are never split, and the
union of the slices' finals equals the one-unit finals row for row. Why not a hash of the group
key: a metric without keys has one group per window (it could not be split), and metrics with
different keys would each need the whole hour, so the read could not be pruned; a window range
prunes the read itself (Parquet statistics on ``event_time``), which is what bounds a unit's
memory. A window longer than a slice's range only widens that slice's read (by the window).
Slice bounds need not align with any window: a window belongs to the slice its start falls in;
but the slice count is chosen by each slice's real read (:func:`slices_for`), which favours
counts whose bounds fall on the windows' boundaries (12 five-minute slices rather than 24 that
re-read half of the hour).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import orjson

from chalicelib.lake import layout

#: Raw rows one unit may read. Measured (bench/finalize.py --s3 files --events 1e6 5e6 --rows-per-unit 6000000,
#: 2026-12-07): a unit's peak RSS is ~130 MB (interpreter) + ~500 MB per million raw rows (every metric,
#: exact distinct sets, 50k users, the duplicate rule over every copy of the unit's ids), so 4M rows keep
#: a unit near 2.1 GB, under the 3 GB bound with room for the Iceberg reader (on moto, a 4M-row unit's
#: whole process, moto's copy of the data included, peaked at 2.3 GB). A slice also reads the events of
#: its last windows past its share of the hour (:func:`read_shares`).
ROWS_PER_UNIT = 4_000_000
#: More slices than this make slices shorter than a minute (the smallest window slide in use).
MAX_SLICES = 60
UNITS_PREFIX = f"{layout.ROLLUPS_PREFIX}_units/"


@dataclass(frozen=True, order=True)
class Unit:
    app_id: str
    dt: str
    hour: str
    slice: int = 0
    slices: int = 1

    def __post_init__(self) -> None:
        layout.hour_start_ms(self.dt, self.hour)  # raises ValueError on a bad partition
        if not (0 <= self.slice < self.slices <= MAX_SLICES):
            raise ValueError(f"slice {self.slice} of {self.slices} is not a slice")
        if not self.app_id or "/" in self.app_id:
            raise ValueError(f"bad app id {self.app_id!r}")

    @property
    def window_range(self) -> tuple[int, int]:
        """[start, end) of the window starts this unit owns."""
        start = layout.hour_start_ms(self.dt, self.hour)
        return (start + self.slice * layout.HOUR_MS // self.slices,
                start + (self.slice + 1) * layout.HOUR_MS // self.slices)

    def event_range(self, metrics) -> tuple[int, int]:
        """[start, end) of the event times the unit reads: every event of every window it owns
        (the last window a metric starts before the slice's end, to that window's end)."""
        start, end = self.window_range
        last = max((((end - 1) // m.window.slide_ms) * m.window.slide_ms + m.window.size_ms
                    for m in metrics.metrics), default=end)
        return start, max(end, last)

    def message(self) -> str:
        return orjson.dumps({"app_id": self.app_id, "dt": self.dt, "hour": self.hour,
                             "slice": self.slice, "slices": self.slices}).decode()

    @classmethod
    def from_message(cls, body: str | bytes) -> "Unit":
        """A queue message's body -> the unit (ValueError for anything else: a poison message)."""
        try:
            data = orjson.loads(body)
            return cls(str(data["app_id"]), str(data["dt"]), str(data["hour"]),
                       int(data.get("slice", 0)), int(data.get("slices", 1)))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a finalization unit: {body!r:.200}") from exc


def read_shares(metrics, dt: str, hour: str, slices: int) -> list[float]:
    """What share of the hour each slice of ``slices`` reads: its window range plus the rest of its
    last windows (:meth:`Unit.event_range`). A slice ending on a boundary of every tumbling window
    reads no further than its end, so bounds aligned to the windows cost no re-read."""
    shares = []
    for k in range(slices):
        unit = Unit("x", dt, hour, k, slices)
        shares.append((unit.event_range(metrics)[1] - unit.window_range[0]) / layout.HOUR_MS)
    return shares


def slices_for(rows: int, rows_per_unit: int, shares: Callable[[int], list[float]]) -> int:
    """How many slices an (app, hour) of ``rows`` raw rows is split into: the fewest whose largest
    read (``shares(n)``: each slice's share of the hour, at the hour's average rate) stays within
    ``rows_per_unit`` -- e.g. 12 five-minute slices for 20M rows under 5-minute tumbling windows,
    where 24 slices of 2.5 minutes would read half of them twice. When no count does (one window
    holds more rows than a unit may: ~48M events/hour for 5-minute windows at 4M rows), the count
    whose largest read is smallest, and the fewest of those."""
    best, best_read = 1, float("inf")
    for n in range(1, MAX_SLICES + 1):
        largest = rows * max(shares(n))
        if largest <= max(1, rows_per_unit):
            return n
        if largest < best_read - 1e-9:
            best, best_read = n, largest
    return best


def sizing(metrics, dt: str, hour: str) -> Callable[[int], list[float]]:
    """``shares`` for :func:`slices_for`: the read shares of an (app, hour)'s slicings under ``metrics``."""
    cache: dict[int, list[float]] = {}

    def shares(n: int) -> list[float]:
        if n not in cache:
            cache[n] = read_shares(metrics, dt, hour, n)
        return cache[n]
    return shares


def units_of(app_id: str, dt: str, hour: str, rows: int, metrics,
             rows_per_unit: int = ROWS_PER_UNIT) -> list[Unit]:
    n = slices_for(rows, rows_per_unit, sizing(metrics, dt, hour))
    return [Unit(app_id, dt, hour, k, n) for k in range(n)]


def hour_closed(metrics, dt: str, hour: str, now_ms: int, close_delay_ms: int) -> bool:
    """Every window of every metric starting in the hour ended more than the allowed lateness ago."""
    horizon = now_ms - metrics.settings.allowed_lateness_ms - close_delay_ms
    start = layout.hour_start_ms(dt, hour)
    return all(start + layout.HOUR_MS - m.window.slide_ms + m.window.size_ms <= horizon for m in metrics.metrics)


def input_fingerprint(raw_files: list[str], definitions: dict[str, str], slices: int) -> str:
    """What a unit's finals were computed from: the raw data files of (app, dt, hour), the metric
    definitions and the slicing. Any new file (a late event, a commit, a compaction) changes it."""
    digest = hashlib.sha256(orjson.dumps({"files": sorted(raw_files), "defs": definitions, "n": slices},
                                         option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- bookkeeping names
def hour_prefix(dt: str, hour: str) -> str:
    return f"{UNITS_PREFIX}dt={dt}/hour={hour}/"


def app_prefix(dt: str, hour: str, app_id: str) -> str:
    return f"{hour_prefix(dt, hour)}app-{app_id}/"


def slice_manifest_key(unit: Unit, fingerprint: str) -> str:
    """Written by the unit after its final files: slice k of n is done from these inputs."""
    return f"{app_prefix(unit.dt, unit.hour, unit.app_id)}slice-{unit.slice}-of-{unit.slices}-{fingerprint}.json"


def done_key(dt: str, hour: str, app_id: str, fingerprint: str, finalized_at: int) -> str:
    """Written once every slice of a fingerprint is done and the app's final heads point at it."""
    return f"{app_prefix(dt, hour, app_id)}done-{fingerprint}-{finalized_at}.json"


def seen_key(dt: str, hour: str) -> str:
    """The planner's record of the hour's partial files it has attributed to apps."""
    return f"{hour_prefix(dt, hour)}_seen.json"


def parse_unit_key(key: str) -> tuple[str, str, dict] | None:
    """A key under an hour prefix -> (app, kind, fields) for slice manifests and done markers."""
    parts = key.rsplit("/", 2)
    if len(parts) < 3 or not parts[1].startswith("app-") or not parts[2].endswith(".json"):
        return None
    app, name = parts[1][len("app-"):], parts[2][:-len(".json")]
    if name.startswith("done-"):
        fp, _, at = name[len("done-"):].partition("-")
        return app, "done", {"fp": fp, "at": int(at)}
    if name.startswith("slice-"):
        k, _, n, fp = name[len("slice-"):].split("-", 3)
        return app, "slice", {"k": int(k), "n": int(n), "fp": fp}
    return None
