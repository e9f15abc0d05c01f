"""Token bucket that makes the Graph emulator return 429 once a client sends too fast."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

# Absorbs float rounding in the refill, so that a bucket refilled to exactly one token admits.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Throttle:
    """Rate limit of `limit` requests per `window_s` seconds, allowing bursts of up to `limit`.

    The bucket starts full and refills continuously at `limit / window_s` tokens per second.
    """

    limit: int
    window_s: float = 10.0

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"Throttle limit must be at least 1, got {self.limit}")
        if not self.window_s > 0:
            raise ValueError(f"Throttle window_s must be positive, got {self.window_s}")


def retry_after_seconds(wait_s: float) -> int:
    """Convert a wait in seconds to a Retry-After value: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait_s - _EPSILON))


class TokenBucket:
    """Thread-safe token bucket for `throttle`, read against `time_source` (seconds)."""

    def __init__(self, throttle: Throttle, time_source: Callable[[], float]) -> None:
        self.throttle = throttle
        self._time_source = time_source
        self._lock = threading.Lock()
        self._capacity = float(throttle.limit)
        self._rate = throttle.limit / throttle.window_s
        self._tokens = self._capacity
        self._updated = time_source()

    def take(self) -> float | None:
        """Remove one token and return None, or return the seconds until a token is available."""
        with self._lock:
            now = self._time_source()
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._updated = now
            if self._tokens >= 1 - _EPSILON:
                self._tokens = max(0.0, self._tokens - 1)
                return None
            return (1 - self._tokens) / self._rate
