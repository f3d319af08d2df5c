"""The one retry policy: exponential backoff with full jitter, bounded attempts.

Used for every write that can be throttled: Kinesis PutRecords (ingest), bulk
requests to the search cluster (indexer). ``delay(retry)`` of retry ``n``
(0-based) is uniform in ``[0, min(cap, base * 2**n)]`` ("full jitter", the AWS
Architecture Blog's recommendation: it spreads retries of many clients best).
Pure: randomness is injected.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Backoff:
    """Attempts and delays of a retried call.

    Attributes:
        max_attempts: total tries including the first (>= 1).
        base_s: the first retry waits up to this.
        cap_s: no wait is longer than this.
    """

    max_attempts: int = 5
    base_s: float = 0.1
    cap_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_s < 0 or self.cap_s < 0:
            raise ValueError("max_attempts must be >= 1 and the delays >= 0")

    def delay(self, retry: int, rand: Callable[[], float] | random.Random = random.random) -> float:
        """Seconds to wait before retry number ``retry`` (0 = the first retry)."""
        draw = rand.random() if isinstance(rand, random.Random) else rand()
        return draw * min(self.cap_s, self.base_s * (2 ** retry))
