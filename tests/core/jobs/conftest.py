"""Job fixtures: a registry with a counting job, a failing job and seed placeholders."""

from __future__ import annotations

from datetime import timedelta

import pytest

from revhub.core.jobs.defaults import default_registry
from revhub.core.jobs.registry import JobRegistry
from tests.core.jobs import plugin


@pytest.fixture
def registry() -> JobRegistry:
    """The defaults (seed jobs without handlers, outbox_prune) plus the plugin's two jobs."""
    jobs = default_registry(outbox_retention=timedelta(days=7), bus="local", consumers=[])
    plugin.register_jobs(jobs)
    return jobs
