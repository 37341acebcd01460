"""Token buckets per credential and domain; 429 with Retry-After and RateLimit headers.

The HTTP tests run on the configured backend: in memory, or Redis when REVHUB_REDIS_URL is set.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from revhub.api import create_app
from revhub.core.db import Database
from revhub.core.ratelimit import Decision, MemoryLimiter, RedisLimiter, gcra
from revhub.core.settings import RateLimit, Settings
from tests.factories import ApiKeyFactory


@pytest.fixture
def tight_app(settings: Settings, db: Database) -> FastAPI:
    tight = settings.model_copy(
        update={
            "rate_limit": RateLimit(rate=0.01, burst=3),
            "rate_limits": {"admin": RateLimit(rate=0.01, burst=2)},
        }
    )
    return create_app(tight, db=db, check_schema=False)


@pytest.fixture
def tight_client(tight_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(tight_app) as client:
        yield client


def test_burst_then_429_with_retry_after(tight_client: TestClient, api_keys: ApiKeyFactory) -> None:
    _key, token = api_keys.create(role="sales")
    headers = {"X-API-Key": token}
    answers = [tight_client.get("/api/v1/auth/me", headers=headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    refused = answers[3]
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["Retry-After"]) >= 90
    assert refused.headers["RateLimit-Limit"] == "3"
    assert "default" in refused.json()["detail"]


def test_each_credential_has_its_own_bucket(
    tight_client: TestClient, api_keys: ApiKeyFactory
) -> None:
    _a, first = api_keys.create(role="sales")
    _b, second = api_keys.create(role="sales")
    for _ in range(3):
        tight_client.get("/api/v1/auth/me", headers={"X-API-Key": first})
    assert tight_client.get("/api/v1/auth/me", headers={"X-API-Key": first}).status_code == 429
    assert tight_client.get("/api/v1/auth/me", headers={"X-API-Key": second}).status_code == 200


def test_domains_have_their_own_limits(tight_client: TestClient, api_keys: ApiKeyFactory) -> None:
    _key, token = api_keys.create(role="admin")
    headers = {"X-API-Key": token}
    admin_calls = [tight_client.get("/api/v1/keys", headers=headers).status_code for _ in range(3)]
    assert admin_calls == [200, 200, 429]
    assert tight_client.get("/api/v1/auth/me", headers=headers).status_code == 200


def test_daily_quota_refuses_once_used_up() -> None:
    limiter = MemoryLimiter()
    quota = RateLimit(rate=1000, burst=1000, daily_quota=2)
    decisions = [limiter.take("cred:sales", quota) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[2].quota_exhausted and int(decisions[2].headers()["Retry-After"]) >= 1


@given(
    rate=st.floats(min_value=0.1, max_value=1000),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=60),
)
def test_gcra_never_allows_more_than_burst_plus_refill(
    rate: float, burst: int, gaps: list[float]
) -> None:
    limit = RateLimit(rate=rate, burst=burst)
    tat, now, allowed = 0.0, 1000.0, 0
    for gap in gaps:
        now += gap
        ok, tat, decision = gcra(tat, now, limit)
        allowed += ok
        assert 0 <= decision.remaining <= burst
    assert allowed <= burst + (now - 1000.0) * rate + 1e-6


@pytest.mark.redis
def test_two_hubs_on_one_redis_share_one_bucket(
    settings: Settings, db: Database, api_keys: ApiKeyFactory, redis_url: str
) -> None:
    shared = settings.model_copy(
        update={"redis_url": redis_url, "rate_limit": RateLimit(rate=0.01, burst=4)}
    )
    _key, token = api_keys.create(role="finance")
    headers = {"X-API-Key": token}
    with (
        TestClient(create_app(shared, db=db, check_schema=False)) as one,
        TestClient(create_app(shared, db=db, check_schema=False)) as two,
    ):
        codes = [
            (one if i % 2 else two).get("/api/v1/auth/me", headers=headers).status_code
            for i in range(6)
        ]
    assert codes == [200, 200, 200, 200, 429, 429]


def test_redis_limiter_fails_open_when_redis_is_down() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0")
    assert limiter.take("k", RateLimit(rate=1, burst=1)).allowed

    async def from_the_loop() -> bool:
        try:
            return (await limiter.draw("k", RateLimit(rate=1, burst=1))).allowed
        finally:
            await limiter.aclose()

    assert asyncio.run(from_the_loop())


@pytest.mark.redis
def test_the_loop_and_threads_draw_on_one_redis_bucket(redis_url: str) -> None:
    """Routes draw on the event loop, the token endpoint from a thread: one bucket."""
    limiter = RedisLimiter(redis_url, prefix=f"test:{uuid.uuid4().hex}:")
    limit = RateLimit(rate=0.01, burst=3, daily_quota=5)

    async def drawn(times: int) -> list[Decision]:
        try:
            return [await limiter.draw("cred:sales", limit) for _ in range(times)]
        finally:
            await limiter.aclose()

    first = limiter.take("cred:sales", limit)
    rest = asyncio.run(drawn(3))
    assert [d.allowed for d in (first, *rest)] == [True, True, True, False]
    assert [d.remaining for d in (first, *rest)] == [2, 1, 0, 0]
    assert rest[-1].retry_after_seconds > 90
    assert asyncio.run(drawn(1))[0].allowed is False


def test_token_endpoint_is_limited_per_client_address(
    settings: Settings, db: Database, api_keys: ApiKeyFactory
) -> None:
    limited = settings.model_copy(update={"rate_limits": {"oauth": RateLimit(rate=0.01, burst=2)}})
    key, secret = api_keys.create(role="sales")
    form = {"grant_type": "client_credentials", "client_id": str(key.id), "client_secret": secret}
    with TestClient(create_app(limited, db=db, check_schema=False)) as client:
        codes = [client.post("/api/v1/oauth/token", data=form).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
