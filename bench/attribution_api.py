"""Attribution through the API on PostgreSQL: the first request for a period (computed) and a
repeated one (stored report), on ~1,000,000 journeys and ~4,000,000 touchpoints.

The hub is started as a user runs it (``common.sales_hub("postgres")``: migrated database,
``revhub serve`` and a worker). The journeys are then written straight into its database by
SQL (``generate_series``, seeded with ``setseed``): the bulk API would need about an hour
for four million touchpoints, and this benchmark measures reading them, not writing them.

Targets (issue 5): first request < 10 s, repeated < 100 ms.

    python bench/attribution_api.py [--journeys 1000000 --campaigns 20 --runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

ROOT = Path(__file__).resolve().parent
OUTPUT = ROOT / "results" / "attribution_api.json"
ATTRIBUTION = "/api/v1/integrations/sales/attribution"
CHANNELS = ("email", "web", "paid_search", "paid_social", "webinar", "content", "event", "display")
KINDS = ("email_open", "email_click", "content_download", "web_session", "ad_click")
FIRST_TARGET_S, REPEAT_TARGET_MS = 10.0, 100.0
console = Console()

FILL = """
SELECT setseed(%(seed)s);
INSERT INTO campaign (id, key, name, channel, created_at, updated_at)
  SELECT gen_random_uuid(), 'bench-' || i, 'Campaign ' || i,
         (%(channels)s::text[])[1 + i %% %(n_channels)s], now(), now()
  FROM generate_series(1, %(campaigns)s) i;
INSERT INTO account (id, domain, name, created_at, updated_at)
  SELECT gen_random_uuid(), 'a' || i || '.example', 'Account ' || i, now(), now()
  FROM generate_series(1, %(accounts)s) i;
CREATE TEMP TABLE bench_account AS SELECT id, row_number() OVER (ORDER BY id) AS n FROM account;
CREATE TEMP TABLE bench_campaign AS
  SELECT id, channel, row_number() OVER (ORDER BY key) AS n FROM campaign;
CREATE TEMP TABLE bench_person AS
  SELECT gen_random_uuid() AS id, 1 + (i %% %(accounts)s) AS account_n,
         random() < %(conversion)s AS converts,
         now() - interval '330 days' + random() * interval '290 days' AS opened,
         1 + floor(-ln(1 - random()) * %(extra_touches)s)::int AS touches
  FROM generate_series(1, %(journeys)s) i;
INSERT INTO contact (id, account_id, stage, stage_changed_at, created_at, updated_at)
  SELECT p.id, a.id, 'lead', now(), now(), now()
  FROM bench_person p JOIN bench_account a ON a.n = p.account_n;
INSERT INTO touchpoint (id, contact_id, campaign_id, channel, kind, occurred_at, meta, created_at)
  SELECT gen_random_uuid(), t.id, c.id, c.channel, t.kind, t.at, '{}', now()
  FROM (
    SELECT p.id, p.opened - random() * interval '80 days' AS at,
           1 + floor(power(random(), 1.6) * %(campaigns)s)::int AS campaign_n,
           (%(kinds)s::text[])[1 + floor(random() * %(n_kinds)s)::int] AS kind
    FROM bench_person p, LATERAL generate_series(1, p.touches)
  ) t JOIN bench_campaign c ON c.n = t.campaign_n;
INSERT INTO lead (id, contact_id, capture_count, in_queue, crm_status, created_at, updated_at)
  SELECT gen_random_uuid(), p.id, 1, false, 'pending',
         p.opened - random() * interval '40 days', now()
  FROM bench_person p WHERE p.converts;
INSERT INTO opportunity (id, account_id, primary_contact_id, name, amount, currency, stage,
                         is_closed, is_closed_won, opened_at, closed_at, source,
                         created_at, updated_at)
  SELECT gen_random_uuid(), a.id, p.id, 'Deal', round((500 * exp(random() * 3))::numeric, 2),
         'USD', 'Closed Won', true, true, p.opened,
         p.opened + random() * interval '30 days', 'api', now(), now()
  FROM bench_person p JOIN bench_account a ON a.n = p.account_n WHERE p.converts;
ANALYZE;
"""


def fill(url: str, args: argparse.Namespace) -> dict[str, int]:
    """Write the synthetic journeys into the hub's database; the row counts."""
    params = {
        "seed": (args.seed % 1000) / 1000,
        "campaigns": args.campaigns,
        "accounts": max(1, args.journeys // 5),
        "journeys": args.journeys,
        "conversion": args.conversion,
        "extra_touches": args.touches_mean - 0.5,  # floor of an exponential: mean - 0.5
        "channels": list(CHANNELS),
        "n_channels": len(CHANNELS),
        "kinds": list(KINDS),
        "n_kinds": len(KINDS),
    }
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for statement in FILL.split(";\n"):
            if statement.strip():
                conn.execute(statement, params)
        counts = {}
        for table in ("contact", "touchpoint", "opportunity", "campaign"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            counts[table] = int(row[0]) if row else 0
    return counts


def clear_reports(url: str) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("DELETE FROM attribution_report")


def timed_get(client: httpx.Client, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = client.get(ATTRIBUTION, params=params)
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise common.HubError(f"{answer.status_code}: {answer.text[:500]}")
    body: dict[str, Any] = answer.json()
    return elapsed, body


def measure(hub: common.SalesHub, url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    headers = {"X-API-Key": hub.api_key}
    with httpx.Client(base_url=hub.base_url, headers=headers, timeout=600) as client:
        for model in args.models:
            firsts, repeats, totals = [], [], {}
            for _ in range(args.runs):
                clear_reports(url)
                first, body = timed_get(client, {"model": model})
                assert body["cached"] is False
                firsts.append(first)
                totals = body["totals"]
                again = [timed_get(client, {"model": model}) for _ in range(args.repeats)]
                assert all(b["cached"] for _, b in again)
                repeats.append(statistics.median(t for t, _ in again))
            rows.append(
                {
                    "model": model,
                    "first_s": statistics.median(firsts),
                    "first_runs_s": firsts,
                    "repeat_ms": statistics.median(repeats) * 1000,
                    "repeat_runs_ms": [r * 1000 for r in repeats],
                    "totals": totals,
                }
            )
    return rows


def show(rows: list[dict[str, Any]], counts: dict[str, int]) -> None:
    table = Table(title=f"Attribution API on PostgreSQL ({counts})")
    for column in ("model", "first request (s)", "repeated (ms)", "journeys", "touches", "ok"):
        table.add_column(column)
    for row in rows:
        ok = row["first_s"] < FIRST_TARGET_S and row["repeat_ms"] < REPEAT_TARGET_MS
        totals = row["totals"]
        journeys = totals["converting_journeys"] + totals["non_converting_journeys"]
        table.add_row(
            row["model"],
            f"{row['first_s']:.2f}",
            f"{row['repeat_ms']:.1f}",
            f"{journeys:,}",
            f"{totals['touches']:,}",
            "[green]yes[/]" if ok else "[red]no[/]",
        )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journeys", type=int, default=1_000_000)
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--touches-mean", type=float, default=4.0)
    parser.add_argument("--conversion", type=float, default=0.15)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["linear", "markov"])
    parser.add_argument("--postgres", default=common.DEFAULT_POSTGRES_URL)
    parser.add_argument("--redis-url", default=common.DEFAULT_REDIS_URL)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    began = datetime.now(UTC)
    url = args.postgres
    with common.sales_hub("postgres", postgres_url=url, redis_url=args.redis_url) as hub:
        started = time.perf_counter()
        with console.status("writing the journeys into PostgreSQL"):
            counts = fill(url, args)
        console.print(f"filled in {time.perf_counter() - started:.0f} s: {counts}")
        rows = measure(hub, url, args)
    show(rows, counts)
    report = {
        "benchmark": "attribution_api",
        "targets": {"first_s": FIRST_TARGET_S, "repeat_ms": REPEAT_TARGET_MS},
        "counts": counts,
        "results": rows,
        "environment": common.environment(began, ["postgres"], url),
    }
    common.write_json(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
