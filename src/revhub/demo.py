"""``revhub demo``: a realistic synthetic company in the embedded database.

Twelve months of marketing for a B2B software vendor: ~40 campaigns across channels, a few
thousand people (some first seen as anonymous visitors), their e-mail, content and web
engagement, sales accepting MQLs, and deals whose outcome depends on the engagement that
preceded them. Everything goes through the same service functions the API uses, a day at a
time, so scores, stage histories, assignments and events are what the hub would have built
itself. The generator is seeded: the same seed gives the same company.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.contacts.models import Contact
from revhub.contacts.pii import Pii
from revhub.contacts.stages import Stage
from revhub.core.db import Database
from revhub.sales import assignment, opportunities, service, touchpoints
from revhub.sales import schemas as s
from revhub.sales.models import Campaign

KEY_PREFIX = "demo-"
CHANNELS = (
    ("email", 1.1),
    ("webinar", 1.5),
    ("content", 1.2),
    ("paid_search", 0.9),
    ("paid_social", 0.7),
    ("organic_search", 1.0),
    ("event", 1.4),
    ("referral", 1.6),
    ("display", 0.5),
    ("partner", 1.3),
)
COUNTRIES = ("US", "US", "US", "CA", "GB", "DE", "FR", "NL", "SE", "AU", "JP", "BR", "IN", "ES")
INDUSTRIES = ("software", "saas", "fintech", "ecommerce", "media", "manufacturing", "retail")
TITLES = ("VP Marketing", "Head of Growth", "Marketing Manager", "CTO", "Director of Sales",
          "Engineer", "Analyst", "Founder", "Student", "Operations Lead")  # fmt: skip
FIRST = ("Ada", "Grace", "Alan", "Lin", "Mia", "Noah", "Omar", "Priya", "Sven", "Yuki", "Zoe",
         "Luis", "Amara", "Jonas", "Ines", "Kofi", "Lena", "Raj", "Sara", "Tomas")  # fmt: skip
LAST = ("Lovelace", "Hopper", "Turing", "Chen", "Garcia", "Okafor", "Patel", "Berg", "Tanaka",
        "Silva", "Novak", "Haddad", "Kim", "Moreau", "Schmidt", "Rossi", "Nguyen")  # fmt: skip
WORDS = ("north", "blue", "quant", "bright", "peak", "river", "nova", "atlas", "pixel",
         "cedar", "orbit", "lumen", "vertex", "harbor", "signal", "maple", "stack")  # fmt: skip


@dataclass
class Company:
    name: str
    domain: str
    industry: str
    employees: int
    country: str


@dataclass
class Person:
    email: str
    company: Company
    campaign: Campaign
    appetite: float
    visitor: str | None = None
    contact_id: uuid.UUID | None = None
    arrived: datetime | None = None
    touches: int = 0


@dataclass
class DemoReport:
    campaigns: int = 0
    leads: int = 0
    touchpoints: int = 0
    mqls: int = 0
    opportunities: int = 0
    won: int = 0
    days: int = 0
    per_day: list[int] = field(default_factory=list)


def already_loaded(session: Session) -> bool:
    found = session.scalar(select(Campaign.id).where(Campaign.key.like(f"{KEY_PREFIX}%")).limit(1))
    return found is not None


class DemoCompany:
    """The generator: call :meth:`run` with a database and a progress callback."""

    def __init__(
        self, pii: Pii, *, seed: int = 7, people: int = 3000, today: datetime | None = None
    ) -> None:
        self.pii = pii
        self.rng = random.Random(seed)  # noqa: S311 (synthetic data, not secrets)
        self.people_wanted = people
        self.today = (today or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
        self.start = self.today - timedelta(days=365)
        self.report = DemoReport()
        self.companies = [self._company(i) for i in range(max(people // 5, 20))]
        self.people: list[Person] = []

    def run(self, db: Database, progress: Callable[[int], None]) -> DemoReport:
        with db.transaction() as session:
            campaigns = self._campaigns(session)
            self._team(session)
        arrivals = self._arrivals(campaigns)
        for day in range(365):
            at = self.start + timedelta(days=day)
            with db.transaction() as session:
                self._day(session, at, arrivals.get(day, []))
            self.report.days += 1
            progress(1)
        return self.report

    def _company(self, i: int) -> Company:
        rng = self.rng
        suffix = rng.choice(("Labs", "Systems", "Inc", "GmbH", "Ltd", "Group"))
        name = f"{rng.choice(WORDS).title()}{rng.choice(WORDS)} {suffix}"
        domain = f"{name.split()[0].lower()}{i}.example"
        size = int(rng.lognormvariate(5.0, 1.4)) + 2
        return Company(name, domain, rng.choice(INDUSTRIES), size, rng.choice(COUNTRIES))

    def _campaigns(self, session: Session) -> list[Campaign]:
        found = []
        for i in range(40):
            channel, _quality = CHANNELS[i % len(CHANNELS)]
            starts = self.start + timedelta(days=int(i * 8.5))
            campaign_in = s.CampaignCreate(
                key=f"{KEY_PREFIX}{channel}-{i:02d}",
                name=f"{channel.replace('_', ' ').title()} #{i + 1}",
                channel=s.Channel(channel),
                starts_on=starts,
                ends_on=starts + timedelta(days=60),
                cost_centre=f"MKT-{100 + i % 4}",
            )
            found.append(touchpoints.create_campaign(session, campaign_in=campaign_in))
        self.report.campaigns = len(found)
        return found

    def _team(self, session: Session) -> None:
        specs: tuple[tuple[str, int, list[str], list[str], int | None, list[str]], ...] = (
            ("Enterprise", 1, [], [], 1000, ["Erin Enterprise", "Eli Enterprise"]),
            ("North America", 10, [], ["NA"], None, ["Nora North", "Nate North", "Noel North"]),
            ("EMEA", 20, [], ["EMEA"], None, ["Emma Europe", "Emil Europe"]),
            ("APAC", 30, [], ["APAC"], None, ["Aiko Asia"]),
        )
        for name, priority, countries, regions, min_size, reps in specs:
            territory = assignment.create_territory(
                session,
                territory_in=s.TerritoryCreate(
                    name=name,
                    priority=priority,
                    countries=countries,
                    regions=regions,
                    min_employees=min_size,
                ),
            )
            for i, rep in enumerate(reps):
                rep_in = s.RepCreate(
                    name=rep,
                    email=f"{rep.split()[0].lower()}@revhub-demo.example",
                    territory_id=territory.id,
                    capacity=2 if i == 0 else 1,
                )
                assignment.create_rep(session, rep_in=rep_in)

    def _arrivals(self, campaigns: list[Campaign]) -> dict[int, list[Person]]:
        arrivals: dict[int, list[Person]] = {}
        quality = dict(CHANNELS)
        for i in range(self.people_wanted):
            campaign = self.rng.choice(campaigns)
            assert campaign.starts_on is not None
            offset = (campaign.starts_on - self.start).days + self.rng.randint(0, 59)
            day = min(max(offset, 0), 364)
            company = self.rng.choice(self.companies)
            first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
            mailbox = company.domain if self.rng.random() > 0.12 else "gmail.com"
            person = Person(
                email=f"{first}.{last}.{i}@{mailbox}".lower(),
                company=company,
                campaign=campaign,
                appetite=self.rng.random() * quality[campaign.channel],
                visitor=f"anon-{i}" if self.rng.random() < 0.15 else None,
            )
            self.people.append(person)
            arrivals.setdefault(day, []).append(person)
        return arrivals

    def _day(self, session: Session, at: datetime, arriving: list[Person]) -> None:
        for person in arriving:
            if person.visitor:
                self._touch(session, person, "web_session", at - timedelta(days=3), anonymous=True)
            self._capture(session, person, at + timedelta(hours=self.rng.randint(8, 18)))
        items = self._engagement(at)
        if items:
            result = touchpoints.add_touchpoints(
                session, self.pii, items=items, now=at + timedelta(hours=23)
            )
            self.report.touchpoints += result.accepted
        self._sales_motion(session, at)

    def _capture(self, session: Session, person: Person, at: datetime) -> None:
        first, last = person.email.split("@")[0].split(".")[:2]
        lead_in = s.LeadCreate(
            capture_type=self.rng.choice(list(s.CaptureType)),
            email=person.email,
            first_name=first.title(),
            last_name=last.title(),
            company=person.company.name,
            job_title=self.rng.choice(TITLES),
            country=person.company.country,
            industry=person.company.industry,
            employee_count=person.company.employees,
            lead_source=person.campaign.channel,
            campaign=person.campaign.key,
            anonymous_id=person.visitor,
            consent=s.ConsentIn(email_marketing=self.rng.random() < 0.7, tracking=True),
            captured_at=at,
        )
        result = service.capture_lead(session, self.pii, lead_in=lead_in)
        person.contact_id, person.arrived = result.contact_id, at
        self.report.leads += 1

    def _engagement(self, at: datetime) -> list[dict[str, Any]]:
        """People engage most in the six weeks after they arrive, then taper off."""
        items = []
        for person in self.people:
            if person.contact_id is None or person.arrived is None:
                continue
            fresh = (at - person.arrived).days < 42
            if self.rng.random() > person.appetite * (0.45 if fresh else 0.03):
                continue
            kind = self.rng.choices(
                (
                    "email_open",
                    "email_click",
                    "web_session",
                    "content_download",
                    "webinar_attendance",
                ),
                weights=(30, 22, 28, 14, 6),
            )[0]
            person.touches += 1
            items.append(self._item(person, kind, at + timedelta(hours=self.rng.randint(0, 22))))
        return items

    def _item(self, person: Person, kind: str, at: datetime) -> dict[str, Any]:
        channel = {
            "email_open": "email",
            "email_click": "email",
            "web_session": "web",
            "content_download": "content",
            "webinar_attendance": "webinar",
        }[kind]
        item = {
            "contact_id": str(person.contact_id),
            "channel": channel,
            "kind": kind,
            "occurred_at": at.isoformat(),
            "campaign": person.campaign.key if self.rng.random() < 0.6 else None,
        }
        if kind == "content_download":
            item["content_id"] = f"asset-{self.rng.randint(1, 30)}"
        return {k: v for k, v in item.items() if v is not None}

    def _touch(
        self, session: Session, person: Person, kind: str, at: datetime, *, anonymous: bool
    ) -> None:
        tp_in = s.TouchpointCreate(
            anonymous_id=person.visitor,
            channel=s.Channel.WEB,
            kind=s.TouchpointKind(kind),
            occurred_at=at,
            campaign=person.campaign.key,
        )
        touchpoints.add_touchpoint(session, self.pii, tp_in=tp_in, now=at)
        self.report.touchpoints += 1

    def _sales_motion(self, session: Session, at: datetime) -> None:
        """MQLs are accepted (or not) after a few days; SQLs open deals; deals close by
        engagement: more touches and a better campaign, better odds."""
        due = session.scalars(
            select(Contact).where(
                Contact.stage.in_([Stage.MQL, Stage.SQL]),
                Contact.merged_into_id.is_(None),
                Contact.stage_changed_at <= at - timedelta(days=4),
            )
        ).all()
        by_id = {p.contact_id: p for p in self.people}
        for contact in due:
            person = by_id.get(contact.id)
            if person is None:
                continue
            if contact.stage == Stage.MQL:
                self._accept(session, contact, person, at)
            else:
                self._open_deal(session, contact, person, at)

    def _accept(self, session: Session, contact: Contact, person: Person, at: datetime) -> None:
        accepted = self.rng.random() < 0.35 + 0.4 * person.appetite
        target = Stage.SQL if accepted else Stage.DISQUALIFIED
        reason = "accepted by sales" if accepted else "not a buyer right now"
        contacts.set_stage(
            session, contact=contact, to_stage=target, reason=reason, source="demo", at=at
        )
        self.report.mqls += 1

    def _open_deal(self, session: Session, contact: Contact, person: Person, at: datetime) -> None:
        if contact.account_id is None or self.rng.random() < 0.3:
            contacts.set_stage(
                session,
                contact=contact,
                to_stage=Stage.DISQUALIFIED,
                reason="no project",
                source="demo",
                at=at,
            )
            return
        size = person.company.employees
        amount = Decimal(self.rng.randint(8, 40) * 1000 + min(size, 5000) * 20)
        closes = at + timedelta(days=self.rng.randint(20, 90))
        closed = closes < self.today
        won = closed and self.rng.random() < min(
            0.85, 0.2 + 0.04 * person.touches + 0.2 * person.appetite
        )
        opportunity_in = s.OpportunityCreate(
            account_id=contact.account_id,
            primary_contact_id=contact.id,
            name=f"{person.company.name} - platform",
            amount=amount,
            currency="EUR" if person.company.country in ("DE", "FR", "NL", "ES") else "USD",
            stage="closed_won" if won else ("closed_lost" if closed else "proposal"),
            is_closed=closed,
            is_closed_won=won,
            opened_at=at,
            closed_at=closes if closed else None,
        )
        opportunities.create(session, opportunity_in=opportunity_in)
        self.report.opportunities += 1
        self.report.won += won
