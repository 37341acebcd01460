"""Scheduled batch jobs: registry, cron schedule, leases, recorded runs."""
