"""Helpers for the tests that run real `revhub` processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def revhub_cli(env: dict[str, str], *args: str) -> str:
    """Run ``python -m revhub ARGS`` as a user would; its stdout, after checking it worked."""
    done = subprocess.run(
        [sys.executable, "-m", "revhub", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def hub_env(tmp_path: Path, scratch_database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVHUB_")}
    env.update(
        {
            "REVHUB_DATA_DIR": str(tmp_path / "data"),
            "REVHUB_DATABASE_URL": scratch_database_url,
            "COLUMNS": "300",
        }
    )
    return env


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "revhub", "serve", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "server exited early"
            try:
                return httpx.get(self.url + "/readyz", timeout=1)
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("server did not become ready")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=15)
        self._log.close()
        return code


@pytest.fixture
def start_server(hub_env: dict[str, str], tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []

    class Started(Server):
        def __init__(self, env: dict[str, str] | None = None) -> None:
            super().__init__(env or hub_env, tmp_path / f"server-{len(started)}.log")
            started.append(self)

    yield Started
    for server in started:
        if server.process.poll() is None:
            server.stop()
