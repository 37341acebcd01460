"""What a batch of lead captures needs to know, read in a few queries before its first lead.

Working one lead at a time costs some twenty statements a lead (look up the e-mail, the
visitor id, the account, the lead, the score, consent, last week's sequences, recent
touchpoints, the colleagues to compare, the territories and reps…). An :class:`Intake` reads
each of those once for the whole batch, keyed by e-mail index, visitor id, company or
person, and the pipeline then works every lead in memory, keeping the maps current as it
goes (a person created by lead 3 is found by lead 7 of the same batch). A merge moves rows
in the database, so the two people involved are read again when next needed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.contacts.models import Account, Consent, Contact
from revhub.contacts.pii import Pii
from revhub.core.db import utcnow, write_held
from revhub.sales import assignment, qualification, quality, touchpoints
from revhub.sales import schemas as s
from revhub.sales.models import Lead, LeadCapture
from revhub.sales.scoring import Activity

COLLEAGUES_COMPARED = 200
"""How many people of the same company a new lead is compared with for fuzzy duplicates."""
FREQUENCY_WINDOW = timedelta(days=7)
"""Seed 002 ``frequency_capping: max_3_per_week_per_contact``: sequences are counted over
the seven days before each capture."""


@dataclass(frozen=True)
class Checked:
    """A lead that passed every check that can refuse it (nothing is written before)."""

    prefix: str
    lead_in: s.LeadCreate
    clean: quality.CleanLead
    campaign: touchpoints.CampaignRef | None
    at: datetime
    email_key: str
    visitor: str | None
    company_key: str | None


@dataclass
class Intake:
    since: datetime
    sequences_since: datetime
    team: assignment.Roster
    accounts: dict[str, Account] = field(default_factory=dict)
    accounts_by_id: dict[uuid.UUID, Account] = field(default_factory=dict)
    by_email: dict[str, Contact] = field(default_factory=dict)
    by_visitor: dict[str, Contact] = field(default_factory=dict)
    leads: dict[uuid.UUID, Lead] = field(default_factory=dict)
    scores: dict[uuid.UUID, qualification.StoredScore] = field(default_factory=dict)
    consents: dict[uuid.UUID, dict[str, bool]] = field(default_factory=dict)
    sequences: dict[uuid.UUID, list[datetime]] = field(default_factory=dict)
    activities: dict[uuid.UUID, list[Activity]] = field(default_factory=dict)
    colleagues: dict[str, list[Contact]] = field(default_factory=dict)
    names: dict[uuid.UUID, tuple[str | None, str | None]] = field(default_factory=dict)
    loaded: set[uuid.UUID] = field(default_factory=set)

    @classmethod
    def load(
        cls,
        session: Session,
        pii: Pii,
        leads: Sequence[Checked],
        model: qualification.ActiveModel,
        *,
        accounts_apart: bool = True,
    ) -> Intake:
        """Everything the batch's leads need, read before the first. ``accounts_apart``:
        see :func:`contacts.get_or_create_accounts`."""
        earliest = min((c.at for c in leads), default=utcnow())
        lookback = timedelta(days=model.document.behaviour.lookback_days)
        intake = cls(
            since=earliest - lookback,
            sequences_since=earliest - FREQUENCY_WINDOW,
            team=assignment.roster(session),
        )
        if not leads:
            return intake
        intake._load_accounts(session, leads, apart=accounts_apart)
        intake._load_people(session, leads)
        unknown = {
            c.company_key for c in leads if c.company_key and c.email_key not in intake.by_email
        }
        intake._load_colleagues(session, unknown)
        return intake

    def _load_accounts(self, session: Session, leads: Sequence[Checked], *, apart: bool) -> None:
        names: dict[str, str] = {}
        for c in leads:
            if c.clean.company_domain is not None:
                names.setdefault(c.clean.company_domain, c.clean.company)
        self.accounts = contacts.get_or_create_accounts(session, names=names, apart=apart)
        self.accounts_by_id = {a.id: a for a in self.accounts.values()}

    def _load_people(self, session: Session, leads: Sequence[Checked]) -> None:
        emails = {c.email_key for c in leads}
        visitors = {c.visitor for c in leads if c.visitor}
        owners = contacts.identity_owners(session, "email", emails) | contacts.identity_owners(
            session, "anonymous", visitors
        )
        people = contacts.live_contacts(session, set(owners.values()))
        for (kind, key), owner in owners.items():
            if owner in people:
                found = self.by_email if kind == "email" else self.by_visitor
                found[key] = people[owner]
        self.read_people(session, list({c.id: c for c in people.values()}.values()))

    def _load_colleagues(self, session: Session, company_keys: set[str]) -> None:
        """At most ``COLLEAGUES_COMPARED`` people per company: a large customer's thousands
        of contacts are not all read for every new lead."""
        if not company_keys:
            return
        for key in company_keys:
            self.colleagues.setdefault(key, [])
        for contact in session.scalars(_COLLEAGUES, {"keys": [*company_keys]}):
            assert contact.company_key is not None
            self.colleagues[contact.company_key].append(contact)

    def read_people(self, session: Session, people: Sequence[Contact]) -> None:
        """Each person's lead, score, consent, sequences of the week and recent touchpoints,
        one query per kind for all of them."""
        ids = [c.id for c in people if c.id not in self.loaded]
        if not ids:
            return
        wanted = set(ids)
        self.loaded |= wanted
        account_ids = {c.account_id for c in people if c.account_id} - set(self.accounts_by_id)
        if account_ids:
            held = session.scalars(select(Account).where(Account.id.in_(account_ids)))
            self.accounts_by_id |= {a.id: a for a in held}
        self.leads |= {lead.contact_id: lead for lead in session.scalars(_LEADS, {"ids": ids})}
        self.scores |= qualification.stored_scores(session, ids)
        self._read_consents(session, ids)
        self._read_sequences(session, [lead.id for c, lead in self.leads.items() if c in wanted])
        self.activities |= qualification.activities(session, ids, self.since)

    def _read_consents(self, session: Session, ids: list[uuid.UUID]) -> None:
        for contact_id in ids:
            self.consents[contact_id] = {}
        for contact_id, purpose, granted in session.connection().execute(_CONSENTS, {"ids": ids}):
            self.consents[contact_id][purpose] = granted

    def _read_sequences(self, session: Session, lead_ids: list[uuid.UUID]) -> None:
        for lead_id in lead_ids:
            self.sequences[lead_id] = []
        if not lead_ids:
            return
        wanted = {"ids": lead_ids, "since": self.sequences_since}
        for lead_id, at in session.connection().execute(_SEQUENCES, wanted):
            self.sequences[lead_id].append(at)

    def person(self, session: Session, contact: Contact) -> None:
        """Make sure ``contact``'s state is read: a person a merge just changed is read
        again, after writing what the merge left pending (its rescore may have created
        the survivor's first score)."""
        if contact.id not in self.loaded:
            write_held(session)
            self.read_people(session, [contact])

    def created(self, contact: Contact, email_key: str) -> None:
        """A person this batch created: nothing of theirs is stored yet."""
        self.by_email[email_key] = contact
        self.loaded.add(contact.id)
        self.consents[contact.id] = {}
        self.activities[contact.id] = []

    def merged(self, survivor: Contact, absorbed: Contact) -> None:
        """The merge moved the absorbed person's rows to the survivor: forget both, and let
        every key that named the absorbed one name the survivor."""
        for found in (self.by_email, self.by_visitor):
            for key, person in found.items():
                if person.id == absorbed.id:
                    found[key] = survivor
        for person_id in (survivor.id, absorbed.id):
            self.loaded.discard(person_id)
            lead = self.leads.pop(person_id, None)
            if lead is not None:
                self.sequences.pop(lead.id, None)
            self.scores.pop(person_id, None)
            self.consents.pop(person_id, None)
            self.activities.pop(person_id, None)

    def account_of(self, session: Session, contact: Contact) -> Account | None:
        if contact.account_id is None:
            return None
        account = self.accounts_by_id.get(contact.account_id)
        if account is None:
            account = session.get(Account, contact.account_id)
            if account is not None:
                self.accounts_by_id[account.id] = account
        return account

    def colleagues_of(self, session: Session, company_key: str) -> list[Contact]:
        if company_key not in self.colleagues:
            self._load_colleagues(session, {company_key})
        return self.colleagues[company_key]

    def name_of(self, pii: Pii, contact: Contact) -> tuple[str | None, str | None]:
        if contact.id not in self.names:
            person = contacts.read_person(pii, contact)
            self.names[contact.id] = (person.first_name, person.last_name)
        return self.names[contact.id]

    def sequences_before(self, lead: Lead, at: datetime) -> int:
        """Marketing sequences started for ``lead`` in the seven days up to ``at``."""
        return sum(at - FREQUENCY_WINDOW < t <= at for t in self.sequences.get(lead.id, ()))

    def add_activities(self, contact_id: uuid.UUID, acts: Iterable[Activity]) -> None:
        self.activities.setdefault(contact_id, []).extend(acts)


_RANKED = (
    select(
        Contact.id,
        func.row_number()
        .over(partition_by=Contact.company_key, order_by=Contact.created_at)
        .label("rank"),
    )
    .where(
        Contact.company_key.in_(bindparam("keys", expanding=True)),
        Contact.merged_into_id.is_(None),
    )
    .subquery()
)
_COLLEAGUES = (
    select(Contact)
    .join(_RANKED, _RANKED.c.id == Contact.id)
    .where(_RANKED.c.rank <= COLLEAGUES_COMPARED)
)
_LEADS = select(Lead).where(Lead.contact_id.in_(bindparam("ids", expanding=True)))
_CONSENTS = (
    select(Consent.contact_id, Consent.purpose, Consent.granted)
    .where(Consent.contact_id.in_(bindparam("ids", expanding=True)))
    .order_by(Consent.recorded_at, Consent.id)
)
_SEQUENCES = select(LeadCapture.lead_id, LeadCapture.captured_at).where(
    LeadCapture.lead_id.in_(bindparam("ids", expanding=True)),
    LeadCapture.captured_at > bindparam("since"),
    LeadCapture.steps["follow_up"]["sequence"].as_string().is_not(None),
)
"""Built once (every capture batch runs them); the column reads run as Core."""
