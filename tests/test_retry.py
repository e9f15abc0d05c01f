from __future__ import annotations

from random import Random

import pytest

from review_reminders.retry import RetryPolicy, parse_retry_after

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        ("0", 0.0),
        ("0.7", 0.7),
        (" 2.25 ", 2.25),
        ("Fri, 15 Jan 2027 08:00:10 GMT", 10.0),
        ("Fri, 15 Jan 2027 08:00:10 -0000", 10.0),
        ("Fri, 15 Jan 2027 07:59:00 GMT", 0.0),
    ],
)
def test_retry_after_forms(header: str, expected: float) -> None:
    assert parse_retry_after(header, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("header", [None, "", "soon", "-1", "1e999", "Fri, 99 Foo 2027", "\u0663"])
def test_retry_after_unreadable_is_none(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


def test_backoff_grows_and_caps() -> None:
    policy = RetryPolicy(budget_s=100, wait_initial_s=0.5, wait_max_s=4.0, rng=Random(7))
    waits = [policy.backoff(attempt) for attempt in range(1, 7)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for wait, ceiling in zip(waits, ceilings, strict=True):
        assert ceiling / 2 <= wait <= ceiling


def test_retry_after_used_over_backoff() -> None:
    policy = RetryPolicy(budget_s=10)
    assert policy.next_wait(1, 0.7, elapsed_s=0) == 0.7


def test_wait_past_budget_refused() -> None:
    policy = RetryPolicy(budget_s=10)
    assert policy.next_wait(3, 4.0, elapsed_s=7.0) is None


def test_zero_budget_never_retries() -> None:
    policy = RetryPolicy(budget_s=0)
    assert policy.next_wait(1, None, elapsed_s=0) is None
