"""Cron schedules, in UTC: checking an expression, its next time, its latest due time.

An expression has five fields (minute hour day-of-month month day-of-week) or six, the sixth
being seconds (handy for tests and demos: ``* * * * * */2`` is every two seconds).

One deliberate difference from classic cron: when both day-of-month and day-of-week are
restricted, a day must match **both**. So ``0 5 1-7 * 1`` is "the first Monday of the month
at 05:00" (seed 002's monthly jobs); classic cron would fire on days 1 to 7 *and* every Monday.
Nobody writing ``1-7`` and ``1`` together means the latter.

``off`` (in ``REVHUB_JOB_SCHEDULES``) takes a job off the schedule; it can still be run by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from croniter import CroniterError, croniter

OFF = "off"
_REFERENCE = datetime(2026, 1, 1, tzinfo=UTC)


def problem(expression: str) -> str | None:
    """Why ``expression`` is not a usable schedule, or None when it is."""
    if expression == OFF:
        return None
    if not croniter.is_valid(expression):
        return (
            f"{expression!r} is not a cron expression; write five fields "
            "(minute hour day-of-month month day-of-week, e.g. '0 2 * * *' for 02:00 UTC daily), "
            "a sixth for seconds, or 'off'"
        )
    try:
        next_time(expression, after=_REFERENCE)
    except CroniterError:
        return f"{expression!r} never fires (no date matches it)"
    return None


def next_time(expression: str, *, after: datetime) -> datetime:
    """The first time strictly after ``after`` that the schedule fires."""
    return _iterator(expression, after).get_next(datetime)


def latest_due(expression: str, *, now: datetime) -> datetime:
    """The most recent time at or before ``now`` that the schedule fired."""
    start = now + timedelta(microseconds=1)
    return _iterator(expression, start).get_prev(datetime)


def _iterator(expression: str, start: datetime) -> croniter:
    return croniter(expression, start.astimezone(UTC), day_or=False)
