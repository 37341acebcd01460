"""The jobs a hub starts with: seed 002's ``BatchSyncSchedule`` and the kernel's own.

The seed's ten jobs belong to domains that have not landed yet, so they are registered
without a handler ("no handler yet"): listed with their schedule, never fired, refused when
run by hand. Each domain later registers its job under the same name with a handler
(``registry.register(Job(...))`` from its ``jobs.py``, or a ``register_jobs(registry)``
function in a ``REVHUB_PLUGINS`` module). ``REVHUB_JOB_SCHEDULES`` overrides any schedule.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from datetime import timedelta

from revhub.core.errors import ConfigurationError
from revhub.core.jobs import outbox_prune
from revhub.core.jobs.registry import Job, JobRegistry
from revhub.core.jobs.schedule import OFF
from revhub.core.settings import Settings

DAILY_0200 = "0 2 * * *"
DAILY_0600 = "0 6 * * *"
SUNDAY_0300 = "0 3 * * 0"
WEDNESDAY_0400 = "0 4 * * 3"
FIRST_MONDAY_0500 = "0 5 1-7 * 1"  # both day fields restricted: both must match (schedule.py)

SEED_JOBS: tuple[tuple[str, str, str, str], ...] = (
    ("crm_contact_sync", DAILY_0200, "crm", "Sync contacts to the connected CRM."),
    ("campaign_performance_summary", DAILY_0200, "reporting", "Summarise campaign results."),
    ("financial_data_export", DAILY_0600, "finance", "Export spend and revenue to finance."),
    ("health_score_update", DAILY_0600, "success", "Recompute customer health scores."),
    ("comprehensive_analytics", SUNDAY_0300, "reporting", "Weekly cross-domain analytics."),
    ("roi_calculations", SUNDAY_0300, "finance", "Weekly campaign and channel ROI."),
    ("budget_optimization_analysis", WEDNESDAY_0400, "finance", "Budget reallocation advice."),
    ("attribution_modeling", WEDNESDAY_0400, "attribution", "Re-run the attribution models."),
    ("executive_reporting", FIRST_MONDAY_0500, "reporting", "Monthly executive report."),
    ("strategic_analysis", FIRST_MONDAY_0500, "reporting", "Monthly strategic analysis."),
)


def default_registry(
    *, outbox_retention: timedelta, bus: str, consumers: Iterable[str]
) -> JobRegistry:
    """Seed 002's jobs (no handler yet) and ``outbox_prune`` (daily 03:30 UTC)."""
    registry = JobRegistry()
    for name, schedule, domain, description in SEED_JOBS:
        registry.register(Job(name, schedule, description=description, domain=domain))
    registry.register(
        Job(
            outbox_prune.NAME,
            outbox_prune.SCHEDULE,
            handle=outbox_prune.outbox_prune(
                retention=outbox_retention, bus=bus, consumers=consumers
            ),
            description="Delete outbox rows past the retention that every consumer has read.",
        )
    )
    return registry


def build_registry(
    settings: Settings,
    *,
    consumers: Iterable[str],
    domains: Iterable[Callable[[JobRegistry], None]] = (),
) -> JobRegistry:
    """The hub's jobs: defaults, then each domain's, then plugins' ``register_jobs``, then
    configured schedules.

    ``consumers`` are the names of the consumers that have a handler (``outbox_prune`` waits
    for them on the local bus).
    """
    registry = default_registry(
        outbox_retention=timedelta(days=settings.outbox_retention_days),
        bus=settings.bus,
        consumers=consumers,
    )
    for register in domains:
        register(registry)
    for module_name in settings.plugins:
        register_jobs = getattr(importlib.import_module(module_name), "register_jobs", None)
        if register_jobs is not None:
            register_jobs(registry)
    apply_schedules(registry, settings.job_schedules)
    return registry


def apply_schedules(registry: JobRegistry, schedules: dict[str, str]) -> None:
    """Override schedules by job name (already checked as cron by the settings); a name no
    job has is a typo that would silently leave a job on its default, so it is refused."""
    unknown = sorted(set(schedules) - set(registry.jobs))
    if unknown:
        raise ConfigurationError(
            f"REVHUB_JOB_SCHEDULES names unknown job(s) {', '.join(unknown)}; "
            f"known jobs: {', '.join(sorted(registry.jobs))}"
        )
    for name, expression in schedules.items():
        registry.reschedule(name, None if expression == OFF else expression)
