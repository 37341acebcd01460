"""Helpers for the tests that run real `revhub` processes."""

from __future__ import annotations

import socket
import subprocess
import sys


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
