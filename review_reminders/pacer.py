"""One shared pace for every Graph request of a process, adapted to Graph's throttling.

Access-review calls of one app share a single Graph throttle bucket, so workers that each back
off on their own keep hitting it. The pacer instead gives every request (a batched sub-request
counts as one) a slot in one schedule:

- before any 429 it lets requests through as fast as the concurrency limit allows;
- a 429 pauses everyone until Graph's `Retry-After` has passed, and sets the pace just below the
  throughput measured over the last window, which is about the bucket's refill rate;
- each success then raises the pace a little, to find the limit again if it grows.
"""

from __future__ import annotations

import logging
from collections import deque

from .retry import Clock

logger = logging.getLogger(__name__)

# Graph's access-review bucket is counted over 10 s, so throughput is measured over as long.
PACE_WINDOW_S = 10.0
# After a 429 the pace drops to this share of the measured throughput.
PACE_DECREASE = 0.9
# Each success raises the pace by this share, about +10 % per 100 requests.
PACE_INCREASE = 0.001
MIN_PACE_PER_S = 0.2
# Fewer requests than this in the window tell little about the bucket, so a 429 only pauses.
MIN_PACE_SAMPLE = 20
# Pause taken on a 429 that came without Retry-After.
DEFAULT_THROTTLE_PAUSE_S = 2.0


class Pacer:
    """Schedule of Graph requests shared by every worker; see the module docstring."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._pace_per_s: float | None = None
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._last_cut = float("-inf")
        self._recent: deque[tuple[float, int]] = deque()
        self.throttled = 0

    @property
    def pace_per_s(self) -> float | None:
        """Requests per second allowed now; None until the first 429."""
        return self._pace_per_s

    # NOTE: measured over the last window, the first cuts still count the bucket's free initial
    # burst, so the pace starts too high and steps down over the first 10 s (docs/benchmarks.md).
    # Measuring only since the previous pause left the 429s unchanged in a trial (142 against
    # 139 at 1,000 targets), because most come from batches of 20 that leave together.
    def _throughput_per_s(self, now: float) -> float | None:
        while self._recent and self._recent[0][0] < now - PACE_WINDOW_S:
            self._recent.popleft()
        count = sum(count for _, count in self._recent)
        if count < MIN_PACE_SAMPLE:
            return None
        # A job younger than the window has sent its requests over a shorter span.
        span_s = max(1.0, now - self._recent[0][0])
        return count / span_s

    async def acquire(self, count: int = 1) -> None:
        """Wait for the slot of `count` requests, pausing while Graph asked everyone to wait."""
        while True:
            now = self._clock.monotonic()
            start = max(now, self._paused_until)
            if self._pace_per_s is not None:
                start = max(start, self._next_slot)
                self._next_slot = start + count / self._pace_per_s
            if start <= now:
                break
            await self._clock.sleep(start - now)
            # A 429 seen while this request waited moves every slot; take a new one then.
            if self._paused_until <= self._clock.monotonic():
                break
        self._recent.append((self._clock.monotonic(), count))

    def record_success(self, count: int = 1) -> None:
        """Raise the pace a little after requests that Graph did not throttle."""
        if self._pace_per_s is not None:
            self._pace_per_s *= 1 + PACE_INCREASE * count

    def record_throttled(self, retry_after_s: float | None) -> None:
        """Pause every request until Graph's wait is over, and lower the pace once per pause."""
        self.throttled += 1
        now = self._clock.monotonic()
        wait_s = retry_after_s if retry_after_s is not None else DEFAULT_THROTTLE_PAUSE_S
        self._paused_until = max(self._paused_until, now + wait_s)
        self._next_slot = max(self._next_slot, self._paused_until)
        # Requests already in flight when the bucket ran dry come back 429 as well: cut once.
        if now < self._last_cut + wait_s:
            return
        self._last_cut = now
        throughput = self._throughput_per_s(now)
        if throughput is not None:
            pace = throughput * PACE_DECREASE
            if self._pace_per_s is not None:
                pace = min(pace, self._pace_per_s * PACE_DECREASE)
            self._pace_per_s = max(MIN_PACE_PER_S, pace)
        logger.warning(
            "Graph throttled the app: pausing all requests for %.1f s%s",
            wait_s,
            f", then {self._pace_per_s:.1f} requests/s" if self._pace_per_s else "",
            extra={"retry_after_s": retry_after_s, "pace_per_s": self._pace_per_s},
        )
