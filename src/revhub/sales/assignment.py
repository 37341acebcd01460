"""Who works a lead (seed 000 ``assignment_rules: territory_based``).

A territory matches a lead when each of its non-empty criteria holds: the lead's country is
listed, the country's region is listed, the company's industry is listed, the company size
is inside [min_employees, max_employees]. Among matching territories the lowest
``priority`` number goes first; the first one with an active rep wins. Inside it, reps take
turns weighted by capacity (smooth weighted round-robin: the rep with the fewest leads per
unit of capacity is next), so a capacity-2 rep gets twice the leads of a capacity-1 rep.
No match, or nobody active: the lead waits in the fallback queue.

A deactivated (or moved) rep's open leads — anyone not yet a customer, disqualified or
churned — are assigned again by the same rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.contacts.models import Contact
from revhub.contacts.stages import Stage
from revhub.core import reference
from revhub.core.db import add_row_later, get_or_404, utcnow, with_held_rows
from revhub.core.errors import Conflict, FieldError, InvalidInput
from revhub.core.events import outbox
from revhub.sales import qualification
from revhub.sales import schemas as s
from revhub.sales.models import Assignment, Lead, SalesRep, Territory
from revhub.sales.scoring import FitFacts

REGIONS: dict[str, tuple[str, ...]] = {
    "NA": ("US", "CA"),
    "LATAM": ("MX", "BR", "AR", "CL", "CO", "PE", "UY"),
    "EMEA": (
        "GB", "IE", "DE", "AT", "CH", "FR", "NL", "BE", "LU", "ES", "PT", "IT", "SE", "DK",
        "NO", "FI", "IS", "PL", "CZ", "SK", "HU", "RO", "BG", "GR", "EE", "LV", "LT", "SI",
        "HR", "IL", "AE", "SA", "ZA", "NG", "KE", "EG", "TR", "UA",
    ),
    "APAC": ("AU", "NZ", "JP", "KR", "CN", "HK", "TW", "SG", "MY", "TH", "VN", "PH", "ID", "IN"),
}  # fmt: skip
REGION_OF = {country: region for region, members in REGIONS.items() for country in members}


@dataclass(frozen=True)
class LeadFacts:
    country: str | None
    industry: str | None
    employee_count: int | None

    @classmethod
    def of(cls, fit: FitFacts) -> LeadFacts:
        """What territories match on, of what scoring judged fit on."""
        return cls(fit.country, fit.industry, fit.employee_count)


def region_of(country: str | None) -> str | None:
    return None if country is None else REGION_OF.get(country)


@dataclass(frozen=True)
class Criteria:
    """A territory's criteria, read once per batch rather than once per lead."""

    countries: frozenset[str]
    regions: frozenset[str]
    industries: frozenset[str]
    min_employees: int | None
    max_employees: int | None

    @classmethod
    def of(cls, territory: Territory) -> Criteria:
        return cls(
            countries=frozenset(territory.countries),
            regions=frozenset(territory.regions),
            industries=frozenset(i.casefold() for i in territory.industries),
            min_employees=territory.min_employees,
            max_employees=territory.max_employees,
        )

    def hold(self, facts: LeadFacts) -> bool:
        if self.countries and facts.country not in self.countries:
            return False
        if self.regions and region_of(facts.country) not in self.regions:
            return False
        if self.industries and (facts.industry or "").casefold() not in self.industries:
            return False
        size = facts.employee_count
        if self.min_employees is not None and (size is None or size < self.min_employees):
            return False
        return self.max_employees is None or (size is not None and size <= self.max_employees)


@dataclass(frozen=True)
class TeamTerritory:
    """A territory as assignment reads it (kept per process, see :func:`team`)."""

    id: uuid.UUID
    name: str
    criteria: Criteria


@dataclass(frozen=True)
class TeamRep:
    """A rep as assignment reads it; how many leads they hold is read per batch."""

    id: uuid.UUID
    name: str
    territory_id: uuid.UUID | None
    capacity: int
    active: bool


@dataclass(frozen=True)
class Team:
    """Territories in priority order and every rep: what the rules above decide by."""

    territories: tuple[TeamTerritory, ...]
    reps: tuple[TeamRep, ...]


def team(session: Session) -> Team:
    """The team, as this process keeps it until a territory or a rep changes
    (``revhub.core.reference``): every capture batch asks for it."""
    return reference.kept(session, TEAM, _load_team)


TEAM = "team"
reference.watch(TEAM, Territory, SalesRep)


def _load_team(session: Session) -> Team:
    territories = tuple(
        TeamTerritory(t.id, t.name, Criteria.of(t)) for t in session.scalars(_TERRITORIES)
    )
    reps = tuple(
        TeamRep(r.id, r.name, r.territory_id, r.capacity, r.active) for r in session.scalars(_REPS)
    )
    return Team(territories, reps)


_TERRITORIES = select(Territory).order_by(Territory.priority, Territory.name)
_REPS = select(SalesRep).order_by(SalesRep.created_at, SalesRep.id)
_COUNTS = select(SalesRep.id, SalesRep.assigned_count)
"""Built once: every capture batch reads the team."""


@dataclass
class Roster:
    """The team and each rep's lead count, read once for a batch of assignments.

    Nothing is locked while the batch runs: the leads a batch gives each rep are counted
    here and added to the stored counts at the end in one atomic ``assigned_count + n``
    (:meth:`settle`), so concurrent captures on PostgreSQL never lose a count and do not
    queue behind each other for the whole of their work. Batches running at the same moment
    pick from the same starting counts, so the round-robin may lean toward one rep by up to
    the leads those batches hold; the counts themselves stay exact, and the next batch
    evens it out."""

    team: Team
    counts: dict[uuid.UUID, int]
    taken: dict[uuid.UUID, int] = field(default_factory=dict)
    reps: dict[uuid.UUID, TeamRep] = field(init=False)

    def __post_init__(self) -> None:
        self.reps = {r.id: r for r in self.team.reps}

    def matching(self, facts: LeadFacts) -> list[TeamTerritory]:
        return [t for t in self.team.territories if t.criteria.hold(facts)]

    def territory(self, territory_id: uuid.UUID | None) -> TeamTerritory | None:
        return next((t for t in self.team.territories if t.id == territory_id), None)

    def next_rep(self, territory: TeamTerritory, *, exclude: uuid.UUID | None) -> TeamRep | None:
        """The active rep with the fewest leads per unit of capacity (ties: oldest rep)."""
        reps = [
            r
            for r in self.team.reps
            if r.territory_id == territory.id and r.active and r.capacity > 0 and r.id != exclude
        ]
        if not reps:
            return None
        return min(reps, key=lambda r: (self.count_of(r) + 1) / r.capacity)

    def count_of(self, rep: TeamRep) -> int:
        return self.counts.get(rep.id, 0) + self.taken.get(rep.id, 0)

    def take(self, rep: TeamRep) -> None:
        self.taken[rep.id] = self.taken.get(rep.id, 0) + 1

    def settle(self, session: Session) -> None:
        """Add this batch's assignments to the stored counts, one statement for every rep
        (in the order of their ids, as every batch locks them): with the batch's held rows
        inside ``batched_writes`` (on PostgreSQL in their pipeline), else at once."""
        if not self.taken:
            return
        more = [{"rep_id": rep_id, "more": n} for rep_id, n in sorted(self.taken.items())]
        write = partial(session.connection().execute, _ADD_ASSIGNED, more)
        if not with_held_rows(session, write):
            write()
        for rep_id, count in self.taken.items():
            self.counts[rep_id] = self.counts.get(rep_id, 0) + count
        self.taken.clear()


_ADD_ASSIGNED = (
    update(SalesRep)
    .where(SalesRep.id == bindparam("rep_id"))
    .values(assigned_count=SalesRep.assigned_count + bindparam("more"))
)
"""Built once: every capture batch settles its counts."""


def roster(session: Session) -> Roster:
    counts = dict(session.connection().execute(_COUNTS).all())
    return Roster(team(session), counts)


@dataclass
class Assigned:
    """An assignment's reason, with the rep and territory it chose (None: the fallback
    queue)."""

    reason: str
    rep: TeamRep | None
    territory: TeamTerritory | None


def assign(
    session: Session,
    *,
    lead: Lead,
    facts: LeadFacts,
    exclude: uuid.UUID | None = None,
    team: Roster | None = None,
    because: str = "",
) -> Assigned:
    """Give ``lead`` an owner by the rules above (or queue it), and record why (after
    ``because``, what led to it). ``team`` is the roster a batch read once, settled by the
    batch; without it the roster is read and settled for this lead alone."""
    if team is None:
        team = roster(session)
        made = assign(session, lead=lead, facts=facts, exclude=exclude, team=team, because=because)
        team.settle(session)
        return made
    for territory in team.matching(facts):
        rep = team.next_rep(territory, exclude=exclude)
        if rep is not None:
            team.take(rep)
            reason = f"territory {territory.name!r}, weighted round-robin (capacity {rep.capacity})"
            return _record(session, lead, rep, territory, because + reason)
    reason = "no territory with an active rep matches; waiting in the fallback queue"
    return _record(session, lead, None, None, because + reason)


def _record(
    session: Session,
    lead: Lead,
    rep: TeamRep | None,
    territory: TeamTerritory | None,
    reason: str,
) -> Assigned:
    """Set the lead's owner and keep the assignment as a plain row (written with the
    batch's other rows)."""
    lead.owner_rep_id = rep.id if rep else None
    lead.territory_id = territory.id if territory else None
    lead.in_queue = rep is None
    made = Assigned(reason[:500], rep, territory)
    add_row_later(
        session,
        Assignment,
        {
            "lead_id": lead.id,
            "rep_id": lead.owner_rep_id,
            "territory_id": lead.territory_id,
            "reason": made.reason,
            "assigned_at": utcnow(),
        },
    )
    return made


OPEN_STAGES = (Stage.ANONYMOUS, Stage.LEAD, Stage.MQL, Stage.SQL, Stage.OPPORTUNITY)


def open_leads(session: Session, *, rep_id: uuid.UUID) -> Sequence[Lead]:
    """A rep's leads still being worked (customers and closed-out people keep their owner)."""
    query = (
        select(Lead)
        .join(Contact, Contact.id == Lead.contact_id)
        .where(Lead.owner_rep_id == rep_id, Contact.stage.in_(OPEN_STAGES))
        .order_by(Lead.id)
    )
    return session.scalars(query).all()


def get_rep(session: Session, *, rep_id: uuid.UUID) -> SalesRep:
    return get_or_404(session, SalesRep, rep_id, label="sales rep")


def get_territory(session: Session, *, territory_id: uuid.UUID) -> Territory:
    return get_or_404(session, Territory, territory_id, label="territory")


def ensure_unique_name(session: Session, territory: Territory, name: str) -> None:
    clash = session.scalar(
        select(Territory).where(Territory.name == name, Territory.id != territory.id)
    )
    if clash is not None:
        raise Conflict(f"A territory named {name!r} already exists; pick another name.")


def lead_facts(session: Session, contact: Contact) -> LeadFacts:
    return LeadFacts.of(qualification.fit_facts(session, contact))


def announce(
    session: Session, lead: Lead, made: Assigned, tenant: str, at: datetime
) -> s.AssignmentOut:
    """Describe an assignment and publish it as ``lead.assigned`` (for CRM owner sync)."""
    rep, territory = made.rep, made.territory
    out = s.AssignmentOut(
        rep_id=rep.id if rep else None,
        rep_name=rep.name if rep else None,
        territory=territory.name if territory else None,
        queued=rep is None,
        reason=made.reason,
    )
    payload = {"lead_id": str(lead.id), "contact_id": str(lead.contact_id)}
    outbox.publish(
        session,
        topic="lead-capture",
        event_type="lead.assigned",
        tenant_id=tenant,
        payload=payload | out.model_dump(mode="json"),
        occurred_at=at,
    )
    return out


def create_territory(session: Session, *, territory_in: s.TerritoryCreate) -> Territory:
    territory = Territory(**territory_in.model_dump())
    ensure_unique_name(session, territory, territory.name)
    session.add(territory)
    session.flush()
    return territory


def update_territory(
    session: Session, *, territory_id: uuid.UUID, territory_in: s.TerritoryUpdate
) -> Territory:
    territory = get_territory(session, territory_id=territory_id)
    changes = territory_in.model_dump(exclude_unset=True)
    for name in ("name", "priority", "countries", "regions", "industries"):
        if name in changes and changes[name] is None:
            raise InvalidInput([FieldError(f"body.{name}", "cannot be null")])
    if "name" in changes:
        ensure_unique_name(session, territory, changes["name"])
    for name, value in changes.items():
        setattr(territory, name, value)
    low, high = territory.min_employees, territory.max_employees
    if low is not None and high is not None and high < low:
        raise InvalidInput([FieldError("body.max_employees", "is below min_employees")])
    session.flush()
    return territory


def list_territories(session: Session) -> Sequence[Territory]:
    return session.scalars(select(Territory).order_by(Territory.priority, Territory.name)).all()


def create_rep(session: Session, *, rep_in: s.RepCreate) -> SalesRep:
    if rep_in.territory_id is not None:
        _territory_field(session, rep_in.territory_id)
    email = rep_in.email.strip().lower()
    if session.scalar(select(SalesRep).where(SalesRep.email == email)) is not None:
        raise Conflict(f"A rep with e-mail {email!r} exists.")
    rep = SalesRep(**(rep_in.model_dump() | {"email": email}))
    session.add(rep)
    session.flush()
    return rep


def list_reps(session: Session) -> Sequence[SalesRep]:
    return session.scalars(select(SalesRep).order_by(SalesRep.name, SalesRep.id)).all()


def update_rep(
    session: Session, *, rep_id: uuid.UUID, rep_in: s.RepUpdate, now: datetime
) -> tuple[SalesRep, int]:
    """Change a rep; deactivating one (or moving them to another territory) gives their
    leads to someone else by the usual rules. Returns the rep and the leads reassigned."""
    rep = get_rep(session, rep_id=rep_id)
    changes = rep_in.model_dump(exclude_unset=True)
    if "territory_id" in changes and changes["territory_id"] is not None:
        _territory_field(session, changes["territory_id"])
    for name in ("capacity", "active"):
        if name in changes and changes[name] is None:
            raise InvalidInput([FieldError(f"body.{name}", "cannot be null")])
    moved = "territory_id" in changes and changes["territory_id"] != rep.territory_id
    for name, value in changes.items():
        setattr(rep, name, value)
    session.flush()
    if rep.active and not moved:
        return rep, 0
    return rep, reassign_leads(session, rep=rep, now=now)


def reassign_leads(session: Session, *, rep: SalesRep, now: datetime) -> int:
    leads = open_leads(session, rep_id=rep.id)
    team = roster(session)
    for lead in leads:
        contact = contacts.get(session, contact_id=lead.contact_id)
        facts = lead_facts(session, contact)
        why = f"{rep.name} left the territory or was deactivated; "
        made = assign(session, lead=lead, facts=facts, exclude=rep.id, team=team, because=why)
        announce(session, lead, made, contacts.tenant_of(session, contact), now)
    team.settle(session)
    return len(leads)


def _territory_field(session: Session, territory_id: uuid.UUID) -> None:
    if session.get(Territory, territory_id) is None:
        raise InvalidInput([FieldError("body.territory_id", "no territory with this id")])
