"""Schedules: seed 002's defaults, configuration overrides and the errors a typo gets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from revhub.core.errors import ConfigurationError
from revhub.core.events.consumers import ConsumerRegistry
from revhub.core.jobs.defaults import build_registry
from revhub.core.jobs.schedule import latest_due, next_time, problem
from revhub.core.settings import Settings, load_settings
from revhub.worker import consumer_registry, job_registry
from tests.core.jobs import plugin

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday

SEED = {
    "crm_contact_sync": "0 2 * * *",
    "campaign_performance_summary": "0 2 * * *",
    "financial_data_export": "0 6 * * *",
    "health_score_update": "0 6 * * *",
    "comprehensive_analytics": "0 3 * * 0",
    "roi_calculations": "0 3 * * 0",
    "budget_optimization_analysis": "0 4 * * 3",
    "attribution_modeling": "0 4 * * 3",
    "executive_reporting": "0 5 1-7 * 1",
    "strategic_analysis": "0 5 1-7 * 1",
}


def _fires(expression: str, count: int, start: datetime = JAN_1) -> list[datetime]:
    times = [next_time(expression, after=start)]
    while len(times) < count:
        times.append(next_time(expression, after=times[-1]))
    return times


def test_the_defaults_are_seed_002s_schedule_with_no_handler_yet(settings: Settings) -> None:
    registry = build_registry(settings, consumers=[])
    seeded = {name: job.schedule for name, job in registry.jobs.items() if name in SEED}
    assert seeded == SEED
    assert not any(registry.jobs[name].has_handler for name in SEED)
    assert registry.jobs["outbox_prune"].schedule == "30 3 * * *"
    assert [j.name for j in registry.scheduled()] == ["outbox_prune"]


def test_daily_and_weekly_defaults_fire_on_their_day_and_hour() -> None:
    assert _fires("0 2 * * *", 2) == [
        datetime(2026, 1, 1, 2, tzinfo=UTC),
        datetime(2026, 1, 2, 2, tzinfo=UTC),
    ]
    sundays = _fires(SEED["roi_calculations"], 3)
    assert {(t.weekday(), t.hour) for t in sundays} == {(6, 3)}
    wednesdays = _fires(SEED["attribution_modeling"], 3)
    assert {(t.weekday(), t.hour) for t in wednesdays} == {(2, 4)}


def test_the_monthly_jobs_fire_only_on_the_first_monday() -> None:
    times = _fires(SEED["executive_reporting"], 24)
    assert all(t.weekday() == 0 and t.day <= 7 and t.hour == 5 for t in times)
    assert [(t.year, t.month) for t in times] == [
        (2026 + m // 12, m % 12 + 1) for m in range(24)
    ], "exactly one run a month"
    assert times[:3] == [
        datetime(2026, 1, 5, 5, tzinfo=UTC),
        datetime(2026, 2, 2, 5, tzinfo=UTC),
        datetime(2026, 3, 2, 5, tzinfo=UTC),
    ]


def test_latest_due_includes_the_exact_fire_time() -> None:
    at_two = datetime(2026, 1, 1, 2, tzinfo=UTC)
    assert latest_due("0 2 * * *", now=at_two) == at_two
    assert latest_due("0 2 * * *", now=at_two.replace(second=59)) == at_two
    yesterday = datetime(2025, 12, 31, 2, tzinfo=UTC)
    assert latest_due("0 2 * * *", now=at_two.replace(hour=1)) == yesterday


def test_a_sixth_field_gives_seconds() -> None:
    assert _fires("* * * * * */2", 2) == [
        datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 4, tzinfo=UTC),
    ]


def test_configuration_overrides_a_schedule_or_takes_it_off(settings: Settings) -> None:
    configured = settings.model_copy(
        update={"job_schedules": {"crm_contact_sync": "15 1 * * *", "outbox_prune": "off"}}
    )
    registry = build_registry(configured, consumers=[])
    assert registry.jobs["crm_contact_sync"].schedule == "15 1 * * *"
    assert registry.jobs["outbox_prune"].schedule is None
    assert registry.scheduled() == []


@pytest.mark.parametrize(
    ("expression", "reason"),
    [("0 25 * * *", "not a cron expression"), ("0 0 30 2 *", "never fires"), ("", "not a cron")],
)
def test_a_bad_cron_expression_is_refused_naming_the_job(
    monkeypatch: pytest.MonkeyPatch, expression: str, reason: str
) -> None:
    monkeypatch.setenv("REVHUB_JOB_SCHEDULES", f'{{"crm_contact_sync": "{expression}"}}')
    with pytest.raises(ConfigurationError, match=reason) as caught:
        load_settings()
    assert "REVHUB_JOB_SCHEDULES, job 'crm_contact_sync'" in str(caught.value)


def test_a_schedule_for_an_unknown_job_is_refused(settings: Settings) -> None:
    typo = settings.model_copy(update={"job_schedules": {"crm_contacts_sync": "0 2 * * *"}})
    with pytest.raises(ConfigurationError, match=r"unknown job.*crm_contacts_sync"):
        build_registry(typo, consumers=[])


def test_problem_accepts_off_and_five_or_six_fields() -> None:
    assert problem("off") is None
    assert problem("0 2 * * *") is None
    assert problem("*/10 * * * * *") is None


def test_a_plugin_registers_jobs_without_registering_consumers(settings: Settings) -> None:
    with_plugin = settings.model_copy(update={"plugins": ["tests.core.jobs.plugin"]})
    consumers = consumer_registry(with_plugin)
    registry = job_registry(with_plugin, consumers)
    assert registry.jobs[plugin.COUNTING].handle is plugin.count_three
    assert isinstance(consumers, ConsumerRegistry)
