"""Attribution's consumer and batch job.

* ``analytics-pipeline`` consumer: when touches arrive (``touchpoints.recorded``), a deal is
  created or changes (``opportunity.*``) or two people merge (``contact.merged``), the credit
  of every affected deal is computed again under the write-back settings and stored
  (``DealAttribution``); each deal whose credit changed is published as
  ``attribution.updated`` on ``revenue-attribution``, which the ``crm-sync`` consumer turns
  into seed 002 ``syncAttributionToCRM``.
* ``attribution_modeling`` job (seed 002 schedule: Wednesdays 04:00 UTC): every deal's
  credit again, for deals whose touches came in through paths that publish no event.

Write-back settings: account scope (a CRM opportunity is the account's), the default 90-day
look-back, the linear model — every campaign in the journey is named with its share, and
the one with the largest share is the opportunity's primary campaign.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from revhub.attribution import service, sources
from revhub.attribution.credit import Params, attribute
from revhub.attribution.models import DealAttribution
from revhub.attribution.sources import NO_CAMPAIGN, Period
from revhub.contacts import service as contacts
from revhub.contacts.models import Account, Contact
from revhub.core.events import outbox
from revhub.core.events.consumers import Consumer, Received
from revhub.core.events.envelope import TOPICS, Event, correlated
from revhub.core.jobs.defaults import WEDNESDAY_0400
from revhub.core.jobs.registry import Job, JobContext, JobRegistry
from revhub.sales.models import Opportunity

ANALYTICS = "analytics-pipeline"
TOPIC = "revenue-attribution"
WRITE_BACK_MODEL = "linear"
MODELLING_JOB = "attribution_modeling"
BATCH = 500
EVER = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))
TRIGGERS = frozenset(
    {
        "touchpoints.recorded",
        "opportunity.created",
        "opportunity.updated",
        "opportunity.closed_won",
        "contact.merged",
    }
)


def affected_deals(session: Session, events: Sequence[Event]) -> dict[uuid.UUID, Event]:
    """The deals whose credit ``events`` can change — the deal itself, or every deal of the
    accounts (and primary contacts) of the people an event touched — each with the last
    event that named it, whose correlation its update carries. Two look-ups for the whole
    batch, whatever its size."""
    touched = [(event, _people(event)) for event in events]
    people = set().union(*(p for _e, p in touched))
    account_of: dict[uuid.UUID, uuid.UUID] = {
        contact_id: account_id
        for contact_id, account_id in session.execute(
            select(Contact.id, Contact.account_id).where(
                Contact.id.in_(people), Contact.account_id.is_not(None)
            )
        )
        if account_id is not None
    }
    accounts = set(account_of.values())
    deals_of: dict[uuid.UUID, list[uuid.UUID]] = {}
    for deal_id, account_id, contact_id in session.execute(
        select(Opportunity.id, Opportunity.account_id, Opportunity.primary_contact_id).where(
            or_(Opportunity.account_id.in_(accounts), Opportunity.primary_contact_id.in_(people))
        )
    ):
        for key in (account_id, contact_id):
            if key is not None:
                deals_of.setdefault(key, []).append(deal_id)
    named: dict[uuid.UUID, Event] = {}
    for event, its_people in touched:
        if event.event_type.startswith("opportunity."):
            named[uuid.UUID(str(event.payload["opportunity_id"]))] = event
        its_accounts = {account_of[p] for p in its_people if p in account_of}
        for key in its_people | its_accounts:
            named.update(dict.fromkeys(deals_of.get(key, ()), event))
    return named


def _people(event: Event) -> set[uuid.UUID]:
    if event.event_type.startswith("opportunity."):
        return set()
    if event.event_type == "contact.merged":
        return {uuid.UUID(str(event.payload["contact_id"]))}
    return {uuid.UUID(str(t["contact_id"])) for t in event.payload.get("touchpoints", [])}


def credit_deals(
    session: Session,
    deal_ids: Sequence[uuid.UUID],
    causes: Mapping[uuid.UUID, Event] | None = None,
) -> list[DealAttribution]:
    """Compute and store the write-back credit of ``deal_ids`` (won and open deals; a lost
    deal, or one without a touch in its window, loses its row); publish each one that
    changed, under the correlation of its cause in ``causes``. Returns the changed rows."""
    changed: list[DealAttribution] = []
    credited: set[uuid.UUID] = set()
    for outcome in ("won", "pipeline"):
        period = Period(start=EVER[0], end=EVER[1], outcome=outcome, scope="account")
        history = sources.read_history(session, period, deal_ids=deal_ids)
        credited.update(history.deals.ids)
        if not history.deals.ids:
            continue
        credit = attribute(WRITE_BACK_MODEL, history.journeys, Params())
        assert credit.touch_shares is not None
        for index, deal_id in enumerate(history.deals.ids):
            credits = _deal_credits(history, credit.touch_shares, index)
            row = _store(session, deal_id, credits)
            if row is not None:
                changed.append(row)
    stale = set(deal_ids) - credited
    if stale:
        session.execute(delete(DealAttribution).where(DealAttribution.opportunity_id.in_(stale)))
    for row in changed:
        cause = (causes or {}).get(row.opportunity_id)
        with correlated(cause.metadata.correlation_id) if cause else nullcontext():
            _publish(session, row)
    return changed


def _deal_credits(history: sources.History, shares: Any, index: int) -> list[dict[str, Any]]:
    journeys = history.journeys
    mine = journeys.journey == index
    per_group = journeys.per_group(np.where(mine, shares, 0.0))
    amount = history.deals.amounts[index]
    groups = np.flatnonzero(per_group > 0)
    revenue = service.allocate(amount, per_group[groups])
    return [
        {
            "campaign_id": None
            if journeys.groups[g] == NO_CAMPAIGN
            else str(uuid.UUID(hex=journeys.groups[g])),
            "share": round(float(per_group[g]), 6),
            "revenue": str(part),
        }
        for g, part in zip(groups, revenue, strict=True)
    ]


def _store(
    session: Session, deal_id: uuid.UUID, credits: list[dict[str, Any]]
) -> DealAttribution | None:
    named = [c for c in credits if c["campaign_id"] is not None]
    primary = max(named, key=lambda c: c["share"])["campaign_id"] if named else None
    row = session.get(DealAttribution, deal_id)
    if row is not None and row.credits == credits and row.model == WRITE_BACK_MODEL:
        return None
    if row is None:
        row = DealAttribution(opportunity_id=deal_id)
        session.add(row)
    row.model, row.credits = WRITE_BACK_MODEL, credits
    row.primary_campaign_id = uuid.UUID(primary) if primary else None
    row.computed_at = datetime.now(UTC)
    session.flush()
    return row


def _publish(session: Session, row: DealAttribution) -> None:
    deal = session.get(Opportunity, row.opportunity_id)
    assert deal is not None
    outbox.publish(
        session,
        topic=TOPIC,
        event_type="attribution.updated",
        tenant_id=_tenant(session, deal),
        payload={
            "opportunity_id": str(row.opportunity_id),
            "model": row.model,
            "primary_campaign_id": str(row.primary_campaign_id)
            if row.primary_campaign_id
            else None,
            "credits": row.credits,
            "amount": str(Decimal(deal.amount)),
            "currency": deal.currency,
        },
    )


def _tenant(session: Session, deal: Opportunity) -> str:
    account = session.get(Account, deal.account_id)
    return account.domain if account else contacts.NO_ACCOUNT


def analytics_consumer() -> Consumer:
    """Each deal's credit is computed once per batch of events, after all of them: the
    touches they announce are already stored, so the last computation is the one that
    counts, and a deal named by many events is published once."""

    def handle_many(session: Session, received: list[Received]) -> None:
        deals = affected_deals(session, [r.event for r in received])
        if deals:
            credit_deals(session, list(deals), deals)

    def handle(session: Session, event: Event, topic: str) -> None:
        handle_many(session, [Received(event, topic)])

    return Consumer(
        ANALYTICS,
        frozenset(TOPICS),
        handle=handle,
        handle_many=handle_many,
        event_types=TRIGGERS,
        description="Analytics data processing: deal attribution kept current",
    )


def model_every_deal(session: Session, context: JobContext) -> int:
    """Every won or open deal's credit again, in batches."""
    ids = list(session.scalars(select(Opportunity.id).order_by(Opportunity.id)))
    context.total(len(ids))
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        credit_deals(session, chunk)
        context.advance(len(chunk))
    return len(ids)


def register_jobs(registry: JobRegistry) -> None:
    registry.register(
        Job(
            MODELLING_JOB,
            WEDNESDAY_0400,
            handle=model_every_deal,
            description="Re-run the attribution models for every deal.",
            domain="attribution",
        )
    )
