"""Event-time window math: durations, tumbling and hopping windows.

All times are integer epoch milliseconds (UTC).  Windows are aligned to the
epoch: a window starts at a multiple of its *slide* (for tumbling windows the
slide equals the size) and covers the half-open interval
``[window_start, window_start + size)``.

Hopping windows (Flink's "sliding" windows) require ``size % slide == 0``, so
every event belongs to exactly ``size // slide`` windows.  The vectorized
aggregation works on *panes* (slide-sized buckets, as in Flink's pane
optimisation): each event is added to exactly one pane and a window is the
merge of its ``size // slide`` consecutive panes.

Lateness: with a watermark ``W`` (ms, see ``lateness.watermark``), a window is
*closed* when ``window_end <= W``; an event counted into a closed window is *late*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import DurationError, InvalidArgumentError

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_duration(text: str) -> int:
    """Parse a duration such as ``"30s"``, ``"1m"``, ``"2h"`` or ``"7d"``.

    Args:
        text: a positive integer followed by one unit among s, m, h, d.

    Returns:
        The duration in milliseconds.

    Raises:
        DurationError: the text is not a positive duration in that form.
    """
    if not isinstance(text, str):
        raise DurationError(f"expected a duration string like '5m', got {text!r}")
    match = _DURATION.match(text)
    if not match:
        raise DurationError(f"expected a duration <integer><s|m|h|d> like '5m', got {text!r}")
    value = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if value <= 0:
        raise DurationError(f"duration must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class WindowSpec:
    """An epoch-aligned event-time window.

    Attributes:
        size_ms: window length in ms.
        slide_ms: distance between consecutive window starts in ms; equal to
            ``size_ms`` for tumbling windows, a divisor of it for hopping ones.
    """

    size_ms: int
    slide_ms: int

    def __post_init__(self) -> None:
        if self.size_ms <= 0 or self.slide_ms <= 0:
            raise InvalidArgumentError("window size and slide must be positive")
        if self.size_ms % self.slide_ms:
            raise InvalidArgumentError("window size must be a multiple of the slide")

    @classmethod
    def tumbling(cls, size_ms: int) -> "WindowSpec":
        """Return a tumbling window of ``size_ms``."""
        return cls(size_ms, size_ms)

    @classmethod
    def hopping(cls, size_ms: int, slide_ms: int) -> "WindowSpec":
        """Return a hopping window of ``size_ms`` starting every ``slide_ms``."""
        return cls(size_ms, slide_ms)

    @property
    def is_tumbling(self) -> bool:
        """True when windows do not overlap (slide == size)."""
        return self.size_ms == self.slide_ms

    @property
    def windows_per_event(self) -> int:
        """How many windows contain any given instant (size // slide)."""
        return self.size_ms // self.slide_ms


def window_starts(event_time_ms: int, spec: WindowSpec) -> list[int]:
    """Scalar reference: starts of every window containing ``event_time_ms``.

    Args:
        event_time_ms: the event time (epoch ms, may be negative).
        spec: the window definition.

    Returns:
        The window starts in increasing order; one for tumbling windows,
        ``size // slide`` for hopping windows.
    """
    last = (event_time_ms // spec.slide_ms) * spec.slide_ms  # floor, also < 0
    first = last - spec.size_ms + spec.slide_ms
    return list(range(first, last + 1, spec.slide_ms))


def pane_index(event_time_ms: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Vectorized: the pane (slide bucket) number of each event time.

    Pane ``q`` covers ``[q * slide, (q + 1) * slide)``.  Uses floor division,
    so negative times (before 1970) land in the right pane.

    Args:
        event_time_ms: int64 array of event times.
        spec: the window definition.

    Returns:
        int64 array of pane numbers.
    """
    return np.floor_divide(np.asarray(event_time_ms, dtype=np.int64), spec.slide_ms)


def assign_windows(event_time_ms: np.ndarray, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized: expand events to (event position, window start) pairs.

    Args:
        event_time_ms: int64 array of event times.
        spec: the window definition.

    Returns:
        ``(event_idx, window_start)``, both int64 arrays of length
        ``len(event_time_ms) * spec.windows_per_event``; for each event the
        window starts appear in increasing order, like :func:`window_starts`.
    """
    times = np.asarray(event_time_ms, dtype=np.int64)
    per = spec.windows_per_event
    last = pane_index(times, spec) * spec.slide_ms
    offsets = (np.arange(per, dtype=np.int64) - (per - 1)) * spec.slide_ms
    starts = (last[:, None] + offsets[None, :]).reshape(-1)
    return np.repeat(np.arange(len(times), dtype=np.int64), per), starts


def is_late(window_end_ms: np.ndarray | int, watermark_ms: int) -> np.ndarray | bool:
    """True where a window is closed by the watermark (``window_end <= W``)."""
    return np.asarray(window_end_ms) <= watermark_ms
