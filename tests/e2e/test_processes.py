"""Real `revhub serve` processes: what a user starts, checked from outside over HTTP."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.e2e.conftest import Server, free_port, revhub_cli


def test_embedded_server_migrates_itself_and_is_ready(
    start_server: type[Server], hub_env: dict[str, str]
) -> None:
    server = start_server()
    ready = server.wait_ready()
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    token = re.search(
        r"rhk_[A-Za-z0-9_-]+",
        revhub_cli(hub_env, "keys", "create", "--name", "e2e", "--role", "analyst"),
    )
    assert token
    me = httpx.get(server.url + "/api/v1/auth/me", headers={"X-API-Key": token.group(0)})
    assert me.status_code == 200 and me.json()["role"] == "analyst"
    assert server.stop() in (0, -signal.SIGTERM), "uvicorn re-raises SIGTERM after a clean stop"


def test_production_mode_refuses_an_out_of_date_schema(hub_env: dict[str, str]) -> None:
    env = {
        **hub_env,
        "REVHUB_MODE": "production",
        "REVHUB_JWT_SECRET": "j" * 40,
        "REVHUB_PII_KEY": "p" * 40,
        "REVHUB_AUDIT_KEY": "a" * 40,
    }
    done = subprocess.run(
        [sys.executable, "-m", "revhub", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "revhub migrate" in done.stderr


@pytest.mark.redis
def test_two_api_processes_on_one_redis_share_one_rate_limit(
    start_server: type[Server], hub_env: dict[str, str], redis_url: str
) -> None:
    revhub_cli(hub_env, "migrate")
    token = re.search(
        r"rhk_[A-Za-z0-9_-]+",
        revhub_cli(hub_env, "keys", "create", "--name", "shared", "--role", "sales"),
    )
    assert token
    env = {
        **hub_env,
        "REVHUB_REDIS_URL": redis_url,
        "REVHUB_RATE_LIMIT": '{"rate": 0.01, "burst": 6}',
    }
    servers = [start_server(env), start_server(env)]
    for server in servers:
        assert server.wait_ready().json()["checks"]["redis"] == "ok"
    headers = {"X-API-Key": token.group(0)}
    answers = [
        httpx.get(servers[i % 2].url + "/api/v1/auth/me", headers=headers) for i in range(10)
    ]
    assert [a.status_code for a in answers] == [200] * 6 + [429] * 4
    assert {a.headers["Retry-After"] for a in answers[6:]} != set()
    assert answers[5].headers["RateLimit-Remaining"] == "0"


def test_embedded_serve_runs_the_worker_and_sends_webhooks(
    start_server: type[Server], hub_env: dict[str, str]
) -> None:
    received: list[dict[str, str]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"type": self.headers["RevHub-Event-Type"], "body": body.decode()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, args=(0.02,), daemon=True).start()
    try:
        server = start_server()
        server.wait_ready()
        token = re.search(
            r"rhk_[A-Za-z0-9_-]+",
            revhub_cli(hub_env, "keys", "create", "--name", "ops", "--role", "admin"),
        )
        assert token
        admin = {"X-API-Key": token.group(0)}
        for path in ("/metrics", "/api/v1/events/consumers", "/api/v1/jobs"):
            answer = httpx.get(server.url + path, headers=admin, timeout=5)
            assert answer.status_code == 200, (path, answer.text)
        subscribed = httpx.post(
            server.url + "/api/v1/webhooks/subscriptions",
            headers=admin,
            json={
                "name": "sec",
                "url": f"http://127.0.0.1:{hook.server_address[1]}/",
                "topics": ["platform"],
            },
        )
        assert subscribed.status_code == 201, subscribed.text
        httpx.post(
            server.url + "/api/v1/keys", headers=admin, json={"name": "zapier", "role": "marketing"}
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _names_zapier(received):
            time.sleep(0.1)
        assert len(_names_zapier(received)) == 1
        # The CLI's own key is announced too: if the worker (not woken by another process's
        # commit, see QUIET_WAIT_SECONDS) handles that event after the subscription exists,
        # it is delivered as well.
        assert {r["type"] for r in received} == {"api_key.created"}
        assert len(received) <= 2
    finally:
        hook.shutdown()
        hook.server_close()


def _names_zapier(received: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in received if '"name":"zapier"' in r["body"]]


def test_a_burst_of_concurrent_requests_does_not_jam_the_embedded_hub(
    start_server: type[Server], hub_env: dict[str, str]
) -> None:
    """More requests than worker threads, all waiting on SQLite's one writer: the
    per-process cap on open transactions keeps a thread free for the one holding the lock."""
    import asyncio

    env = {**hub_env, "REVHUB_RATE_LIMIT": '{"rate": 100000, "burst": 100000}'}
    server = start_server(env)
    server.wait_ready()
    token = re.search(
        r"rhk_[A-Za-z0-9_-]+",
        revhub_cli(hub_env, "keys", "create", "--name", "burst", "--role", "admin"),
    )
    assert token
    headers = {"X-API-Key": token.group(0)}

    async def burst() -> set[int]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=25) as client:
            answers = await asyncio.gather(
                *[client.get(server.url + "/api/v1/auth/me", headers=headers) for _ in range(200)]
            )
        return {a.status_code for a in answers}

    assert asyncio.run(burst()) == {200}
