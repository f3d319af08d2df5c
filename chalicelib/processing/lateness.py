"""Lateness rules, pure: what is too late to aggregate, and the watermark.

Two rules, applied the same way in the aggregation consumer and in finalization:

* **Maximum lateness.** An event whose ``event_time`` is more than
  ``max_lateness`` before its own ``received_at`` is not aggregated: it goes to
  bad rows (the raw archive still keeps it). Judged per event against its own
  arrival, so the answer never depends on when or in which batch it is seen.
* **Watermark** (bounded out-of-orderness, as Flink computes it): per shard the
  newest event time seen minus ``allowed_lateness``. A window that ended at or
  before it is closed, and events still counted into it are *late*
  (``late_count``). An event time counts at most as its ``received_at``, so a
  device clock in the future cannot drag the watermark ahead.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

#: The watermark of a shard with no history: older than any event, so nothing is late yet.
NO_WATERMARK = -(2 ** 62)


def split_too_late(events: pa.Table, max_lateness_ms: int) -> tuple[pa.Table, pa.Table]:
    """Separate events more than ``max_lateness_ms`` older than their ``received_at``.

    Returns:
        ``(kept, too_late)``, both in the input's order.
    """
    limit = pc.subtract(events["received_at"], pa.scalar(max_lateness_ms, pa.int64()))
    old = pc.fill_null(pc.less(events["event_time"], limit), False)
    if not pc.any(old).as_py():
        return events, events.slice(0, 0)
    return events.filter(pc.invert(old)), events.filter(old)


def watermark(max_event_time_ms: int | None, allowed_lateness_ms: int) -> int:
    """The watermark after ``max_event_time_ms`` (None: no history -> ``NO_WATERMARK``)."""
    if max_event_time_ms is None:
        return NO_WATERMARK
    return int(max_event_time_ms) - int(allowed_lateness_ms)


def max_event_time_seen(events: pa.Table) -> int | None:
    """The newest event time of a batch for the watermark, each capped at its ``received_at``."""
    if events.num_rows == 0:
        return None
    return pc.max(pc.min_element_wise(events["event_time"], events["received_at"])).as_py()
