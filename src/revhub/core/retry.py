"""Retry policies as configuration (seed 002 ``RetryPolicy``), run by tenacity.

A policy names its backoff (exponential, linear or fixed), base and maximum delay, the number
of attempts and which errors are worth retrying. A remote system's ``Retry-After`` wins over
the computed backoff when it asks for longer: retrying sooner would only be refused again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TypeVar

from pydantic import BaseModel, Field
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

T = TypeVar("T")


class RetryableError(Exception):
    """A failure worth another try; ``retry_after`` (seconds) is the remote side's wish."""

    def __init__(self, message: str, *, retry_after: float | None = None, code: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code or type(self).__name__


class RetryPolicy(BaseModel):
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_strategy: Literal["exponential", "linear", "fixed"] = "exponential"
    base_delay_ms: int = Field(default=200, ge=0)
    max_delay_ms: int = Field(default=10_000, ge=0)
    retryable_errors: list[str] = Field(
        default_factory=lambda: ["RetryableError", "TimeoutError", "ConnectionError"],
        description="Exception class names (or RetryableError codes) that are retried; "
        "['*'] retries every error.",
    )

    def delay_seconds(self, attempt: int) -> float:
        """Backoff before attempt ``attempt + 1``: base·2^(n-1), base·n or base, capped."""
        base = self.base_delay_ms / 1000
        if self.backoff_strategy == "exponential":
            delay: float = base * 2 ** (attempt - 1)
        elif self.backoff_strategy == "linear":
            delay = base * attempt
        else:
            delay = base
        return min(delay, self.max_delay_ms / 1000)

    def is_retryable(self, error: BaseException) -> bool:
        if "*" in self.retryable_errors:
            return True
        names = {cls.__name__ for cls in type(error).__mro__}
        if isinstance(error, RetryableError):
            names.add(error.code)
        return bool(names & set(self.retryable_errors))

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return self.wait_seconds(state.attempt_number, getattr(error, "retry_after", None))

    def wait_seconds(self, attempt: int, retry_after: float | None) -> float:
        """The backoff, or the remote side's ``Retry-After`` when longer; never past
        ``max_delay_ms`` (a remote asking for a day must not park a worker for a day)."""
        delay = self.delay_seconds(attempt)
        if retry_after:
            delay = max(delay, float(retry_after))
        return min(delay, self.max_delay_ms / 1000)

    def run(
        self,
        operation: Callable[[], T],
        *,
        sleep: Callable[[float], None] | None = None,
        before_sleep: Callable[[RetryCallState], None] | None = None,
    ) -> T:
        """Call ``operation`` until it succeeds, an error is not retryable, or attempts run out;
        the last error is re-raised."""
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(self.is_retryable),
            reraise=True,
            before_sleep=before_sleep,
            sleep=sleep or time.sleep,
        )
        return retrying(operation)
