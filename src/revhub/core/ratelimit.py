"""Token-bucket rate limits and daily quotas, per credential and per domain.

The bucket is kept as GCRA (the generic cell rate algorithm): one timestamp per bucket, the
"theoretical arrival time", instead of a token count and a refill clock. It is exactly a
token bucket of ``burst`` tokens refilled at ``rate`` a second, and it needs one atomic
read-modify-write, which makes the Redis version a short Lua script. The maintained Python
libraries (``limits``) offer fixed and sliding windows, not a bucket with burst, hence this.

In embedded mode buckets live in process memory; with ``REVHUB_REDIS_URL`` they live in
Redis, so every api process draws on the same bucket. Redis' own clock is used there, so
processes with drifting clocks still agree.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import redis
import redis.asyncio
import structlog
from redis.commands.core import AsyncScript

from revhub.core.settings import RateLimit

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float
    retry_after_seconds: float = 0.0
    quota_exhausted: bool = False

    def headers(self) -> dict[str, str]:
        """IETF ``RateLimit-*`` fields, plus ``Retry-After`` when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_seconds)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_seconds)))
        return headers


def gcra(tat: float, now: float, limit: RateLimit) -> tuple[bool, float, Decision]:
    """One request against a bucket whose theoretical arrival time is ``tat``.

    Returns whether it is allowed, the new ``tat`` to store, and the decision to report.
    """
    interval = 1.0 / limit.rate
    capacity = limit.burst * interval
    tat = max(tat, now)
    new_tat = tat + interval
    allow_at = new_tat - capacity
    if now < allow_at:
        remaining = 0
        return False, tat, Decision(False, limit.burst, remaining, tat - now, allow_at - now)
    remaining = int((now - allow_at) / interval + 1e-9)
    return True, new_tat, Decision(True, limit.burst, remaining, new_tat - now)


class Limiter(Protocol):
    def take(self, key: str, limit: RateLimit) -> Decision:
        """One token, from a thread (a blocking call)."""
        ...

    async def draw(self, key: str, limit: RateLimit) -> Decision:
        """One token, from the event loop, which it never blocks."""
        ...

    async def aclose(self) -> None:
        """Let go of what :meth:`draw` opened on the running loop."""
        ...

    def ping(self) -> None: ...


class MemoryLimiter:
    """Buckets in this process; right for embedded mode's single api process."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._quota: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, key: str, limit: RateLimit) -> Decision:
        now = time.monotonic()
        day_key = f"{key}:{_utc_day()}"
        with self._lock:
            if limit.daily_quota and self._quota.get(day_key, 0) >= limit.daily_quota:
                return _quota_exhausted(limit)
            allowed, tat, decision = gcra(self._tats.get(key, 0.0), now, limit)
            if allowed:
                self._tats[key] = tat
                if limit.daily_quota:
                    self._quota[day_key] = self._quota.get(day_key, 0) + 1
        return decision

    async def draw(self, key: str, limit: RateLimit) -> Decision:
        return self.take(key, limit)

    async def aclose(self) -> None:
        return None

    def ping(self) -> None:
        return None


_GCRA_LUA = """
local key, qkey = KEYS[1], KEYS[2]
local interval, burst, quota = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if quota > 0 and tonumber(redis.call('GET', qkey) or '0') >= quota then
  return {-1, 0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, tostring(tat - now), tostring(allow_at - now)}
end
redis.call('SET', key, tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
if quota > 0 then
  redis.call('INCR', qkey)
  redis.call('EXPIRE', qkey, 172800)
end
return {1, tostring(new_tat - now), tostring((now - allow_at) / interval)}
"""


class RedisLimiter:
    """Buckets in Redis, shared by every api process; fails open if Redis is unreachable.

    Failing open keeps the hub answering while Redis is down; ``/readyz`` reports it and
    every miss is logged, so the outage is seen rather than turned into refusals.

    Requests draw from the event loop through an asyncio client (:meth:`draw`), one per
    loop, since its connections belong to the loop that opened them. Handing the call to a
    thread instead cost the loop a wake-up and a hand-back per request: at 200 single leads
    a second on PostgreSQL, a seventh of the loop's time went on that hop.
    """

    def __init__(self, url: str, prefix: str = "revhub:rl:") -> None:
        self._url = url
        self._redis = redis.Redis.from_url(url, **_TIMEOUTS)
        self._script = self._redis.register_script(_GCRA_LUA)
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncScript] = (
            weakref.WeakKeyDictionary()
        )
        self._prefix = prefix

    def take(self, key: str, limit: RateLimit) -> Decision:
        try:
            reply = self._script(keys=self._keys(key), args=_args(limit))
        except redis.RedisError as exc:
            return _failed_open(exc, limit)
        return _decision(reply, limit)

    async def draw(self, key: str, limit: RateLimit) -> Decision:
        try:
            reply = await self._loop_script()(keys=self._keys(key), args=_args(limit))
        except redis.RedisError as exc:
            return _failed_open(exc, limit)
        return _decision(reply, limit)

    async def aclose(self) -> None:
        script = self._by_loop.pop(asyncio.get_running_loop(), None)
        if script is not None:
            await script.registered_client.aclose()

    def _loop_script(self) -> AsyncScript:
        loop = asyncio.get_running_loop()
        script = self._by_loop.get(loop)
        if script is None:
            client = redis.asyncio.Redis.from_url(self._url, **_TIMEOUTS)
            script = self._by_loop[loop] = client.register_script(_GCRA_LUA)
        return script

    def _keys(self, key: str) -> list[str]:
        return [self._prefix + key, f"{self._prefix}q:{key}:{_utc_day()}"]

    def ping(self) -> None:
        self._redis.ping()


_TIMEOUTS: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def _args(limit: RateLimit) -> list[float | int]:
    return [1.0 / limit.rate, limit.burst, limit.daily_quota]


def _decision(reply: Any, limit: RateLimit) -> Decision:
    """The script's ``{status, first, second}``: -1 quota used up, 0 refused, 1 allowed."""
    status, first, second = reply
    if int(status) == -1:
        return _quota_exhausted(limit)
    if int(status) == 0:
        return Decision(False, limit.burst, 0, float(first), float(second))
    return Decision(True, limit.burst, int(float(second) + 1e-9), float(first))


def _failed_open(exc: redis.RedisError, limit: RateLimit) -> Decision:
    log.error("rate_limit_unavailable", error=str(exc))
    return Decision(True, limit.burst, limit.burst, 0.0)


def _utc_day() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def _quota_exhausted(limit: RateLimit) -> Decision:
    now = datetime.now(UTC)
    seconds_left = 86_400 - (now.hour * 3600 + now.minute * 60 + now.second)
    return Decision(False, limit.burst, 0, seconds_left, seconds_left, quota_exhausted=True)


def make_limiter(redis_url: str | None, prefix: str = "revhub:") -> Limiter:
    return RedisLimiter(redis_url, prefix=f"{prefix}rl:") if redis_url else MemoryLimiter()
