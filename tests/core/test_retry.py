"""Retry policies (seed 002 RetryPolicy): backoff shapes, Retry-After, which errors retry."""

from __future__ import annotations

import pytest

from revhub.core.retry import RetryableError, RetryPolicy


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("exponential", [0.1, 0.2, 0.4, 0.8, 1.0]),
        ("linear", [0.1, 0.2, 0.3, 0.4, 0.5]),
        ("fixed", [0.1, 0.1, 0.1, 0.1, 0.1]),
    ],
)
def test_backoff_shapes_are_capped(strategy: str, expected: list[float]) -> None:
    policy = RetryPolicy(backoff_strategy=strategy, base_delay_ms=100, max_delay_ms=1000)  # type: ignore[arg-type]
    assert [policy.delay_seconds(n) for n in range(1, 6)] == pytest.approx(expected)


def test_retry_after_wins_when_longer_but_never_past_the_cap() -> None:
    policy = RetryPolicy(base_delay_ms=100, max_delay_ms=60_000)
    assert policy.wait_seconds(1, 30) == 30
    assert policy.wait_seconds(1, 0.01) == pytest.approx(0.1)
    assert policy.wait_seconds(1, 86_400) == 60


def test_run_retries_only_listed_errors_and_sleeps_per_policy() -> None:
    slept: list[float] = []
    calls: list[int] = []
    policy = RetryPolicy(max_attempts=3, base_delay_ms=100, retryable_errors=["RetryableError"])

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RetryableError("busy", retry_after=2)
        return "done"

    assert policy.run(flaky, sleep=slept.append) == "done"
    assert slept == [2, 2]

    def broken() -> None:
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        policy.run(broken, sleep=slept.append)
    assert slept == [2, 2]


def test_codes_and_wildcards_choose_what_retries() -> None:
    assert RetryPolicy(retryable_errors=["HTTP_503"]).is_retryable(
        RetryableError("x", code="HTTP_503")
    )
    assert not RetryPolicy(retryable_errors=["HTTP_503"]).is_retryable(RuntimeError("x"))
    assert RetryPolicy(retryable_errors=["*"]).is_retryable(RuntimeError("x"))
