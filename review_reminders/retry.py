"""Retry timing: the clock, `Retry-After` parsing and the backoff policy of the Graph client."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from random import Random
from typing import Protocol

RETRY_WAIT_INITIAL_S = 0.5
RETRY_WAIT_MAX_S = 8.0
# A Retry-After shorter than this (0, or a date already past through clock skew) is read as
# "no hint", so that backoff applies instead of retrying at once in a tight loop.
RETRY_AFTER_MIN_S = 0.1
# Attempts of one request at most, whatever the budget leaves room for.
RETRY_MAX_ATTEMPTS = 10


class Clock(Protocol):
    """Time source and sleep, injectable so that tests need not wait for real."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Convert a `Retry-After` header to seconds from `now` (a Unix time).

    The header is either delay-seconds or an HTTP date (RFC 9110, section 10.2.3). Graph also
    sends fractional seconds such as `0.7`, which are accepted. A date in the past gives 0.
    Returns None when the header is absent or unreadable, so the caller falls back to backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text[0].isascii() and text[0].isdigit():
        try:
            seconds = float(text)
        except ValueError:
            return None
        return seconds if seconds >= 0 and seconds != float("inf") else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        # HTTP dates are in GMT. parsedate_to_datetime returns a naive datetime for "-0000".
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


@dataclass
class RetryPolicy:
    """When to retry: Graph's `Retry-After` if given, otherwise exponential backoff with jitter.

    Every request gets `budget_s` seconds in total, counted from its first attempt. A wait
    that would end past the budget is not taken, and the caller reports the failure instead.
    """

    budget_s: float
    wait_initial_s: float = RETRY_WAIT_INITIAL_S
    wait_max_s: float = RETRY_WAIT_MAX_S
    rng: Random = field(default_factory=Random)

    def backoff(self, attempt: int) -> float:
        """Return the wait before retry number `attempt` (from 1) when Graph gave no hint."""
        ceiling = min(self.wait_max_s, self.wait_initial_s * 2.0 ** (attempt - 1))
        # Half fixed, half random: spreads the retries of concurrent workers, yet always backs off.
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def next_wait(
        self, attempt: int, retry_after_s: float | None, elapsed_s: float
    ) -> float | None:
        """Return the wait before retry `attempt`, or None when it would overrun the budget."""
        if attempt >= RETRY_MAX_ATTEMPTS:
            return None
        if retry_after_s is not None and retry_after_s >= RETRY_AFTER_MIN_S:
            wait = retry_after_s
        else:
            wait = self.backoff(attempt)
        if elapsed_s + wait > self.budget_s:
            return None
        return wait

    def attempt_timeout(self, timeout_s: float, elapsed_s: float) -> float:
        """Cut a retry's timeout so that it ends by the budget; the first attempt gets it whole."""
        if elapsed_s <= 0:
            return timeout_s
        return max(RETRY_AFTER_MIN_S, min(timeout_s, self.budget_s - elapsed_s))
