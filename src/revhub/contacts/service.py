"""Contact use cases: find a person by any identity, keep one profile, move them through the
lifecycle, record consent. Plain functions on a session; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import Engine, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from revhub.contacts.models import Account, Consent, Contact, Identity, StageChange
from revhub.contacts.pii import Pii
from revhub.contacts.stages import RANK, Stage, can_move, furthest
from revhub.core.db import (
    add_later,
    add_row_later,
    get_or_404,
    join_as_stored,
    new_id,
    set_later,
    utcnow,
    write_held,
)
from revhub.core.errors import Conflict
from revhub.core.events import outbox
from revhub.core.pagination import newest_first

TOPIC = "lead-capture"
NO_ACCOUNT = "unassigned"
SEALED_KINDS = frozenset({"email"})
ACCOUNT_LOCK_WAIT = "2s"
"""How long a new account's own transaction waits for a row lock (see ``_store_accounts_apart``)."""

MergeHook = Callable[[Session, "Contact", "Contact"], None]
MERGE_HOOKS: list[MergeHook] = []
"""Domains above contacts that keep rows per person register here, so a merge moves their
rows in the same transaction (``hook(session, survivor, absorbed)``)."""


@dataclass(frozen=True)
class Profile:
    """What a capture knows about a person; ``None`` means "not given", never "erase"."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    company: str | None = None
    company_key: str | None = None
    job_title: str | None = None
    country: str | None = None
    lead_source: str | None = None
    quality_score: int | None = None


@dataclass(frozen=True)
class Person:
    """A contact opened for reading: the plaintext of its sealed fields."""

    email: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None


def get(session: Session, *, contact_id: uuid.UUID) -> Contact:
    """The contact, following merges to the surviving profile."""
    contact = get_or_404(session, Contact, contact_id, label="contact")
    while contact.merged_into_id is not None:
        contact = get_or_404(session, Contact, contact.merged_into_id, label="contact")
    return contact


def get_by_identity(session: Session, *, kind: str, key: str) -> Contact | None:
    found = session.scalar(select(Identity).where(Identity.kind == kind, Identity.key == key))
    return None if found is None else get(session, contact_id=found.contact_id)


def get_by_email(session: Session, pii: Pii, *, email: str) -> Contact | None:
    return get_by_identity(session, kind="email", key=pii.email_index(email))


def list(
    session: Session,
    *,
    after: uuid.UUID | None,
    limit: int,
    stage: Stage | None = None,
    account_id: uuid.UUID | None = None,
) -> Sequence[Contact]:
    query = newest_first(session, Contact, after=after).where(Contact.merged_into_id.is_(None))
    if stage is not None:
        query = query.where(Contact.stage == stage)
    if account_id is not None:
        query = query.where(Contact.account_id == account_id)
    return session.scalars(query.limit(limit)).all()


def read_person(pii: Pii, contact: Contact) -> Person:
    return Person(
        email=pii.open(contact.email_sealed),
        first_name=pii.open(contact.first_name_sealed),
        last_name=pii.open(contact.last_name_sealed),
        phone=pii.open(contact.phone_sealed),
    )


def tenant_of(session: Session, contact: Contact) -> str:
    """The event partition key: the account's domain (seed 002 ``tenant_id``)."""
    if contact.account_id is None:
        return NO_ACCOUNT
    account = session.get(Account, contact.account_id)
    return account.domain if account is not None else NO_ACCOUNT


def get_or_create_account(
    session: Session,
    *,
    domain: str,
    name: str,
    industry: str | None = None,
    employee_count: int | None = None,
    country: str | None = None,
) -> Account:
    """The account of ``domain``; known firmographics fill gaps, never overwrite."""
    account = get_or_create_accounts(session, names={domain: name})[domain]
    fill_account(
        session, account, industry=industry, employee_count=employee_count, country=country
    )
    return account


def get_or_create_accounts(
    session: Session, *, names: dict[str, str], apart: bool = True
) -> dict[str, Account]:
    """The accounts of many domains (``{domain: name}``): the stored ones read in one
    statement, the missing ones inserted at once.

    Two colleagues signing up at once both find no account: the insert skips a domain that
    another transaction stored meanwhile (``ON CONFLICT DO NOTHING``), and both read the
    winner's row instead of failing.

    ``apart`` (PostgreSQL): the new accounts are committed in a transaction of their own
    (see :func:`_store_accounts_apart`) and read back. Otherwise, and always on SQLite,
    they are inserted in the caller's transaction and come back from the insert itself
    (``RETURNING``): one statement. A caller whose transaction is short and holds nothing
    else (the capture process's batch of single leads) passes ``apart=False``: its own
    account transaction was 6 of the 19 round trips of a one-lead batch naming a new
    company, and a pending insert of its holds the domain only until its batch commits."""
    if not names:
        return {}
    found = {a.domain: a for a in session.scalars(_ACCOUNTS, {"domains": [*names]})}
    missing = [d for d in names if d not in found]
    if not missing:
        return found
    now = utcnow()
    rows = [
        {"id": new_id(), "domain": d, "name": names[d][:200], "created_at": now} for d in missing
    ]
    bind = session.get_bind()
    if apart and bind.dialect.name == "postgresql" and isinstance(bind, Engine):
        _store_accounts_apart(session, bind, rows)
    else:
        found |= _inserted_accounts(session, rows)
    if lost := [d for d in missing if d not in found]:
        found |= {a.domain: a for a in session.scalars(_ACCOUNTS, {"domains": lost})}
    return found


_ACCOUNTS = select(Account).where(Account.domain.in_(bindparam("domains", expanding=True)))
"""Built once: every capture batch reads its companies' accounts."""


def _inserted_accounts(session: Session, rows: Sequence[dict[str, Any]]) -> dict[str, Account]:
    """Insert new accounts in the caller's transaction, a domain already stored skipped;
    the rows inserted come back from the insert (``RETURNING``) and join the session as
    stored objects. As Core: the ORM's own insert-with-RETURNING cost a one-lead batch on
    SQLite some 1.8 M more instructions than the insert and a second read it replaced
    (``bench/capture_instructions.py``)."""
    statement = _INSERT_ACCOUNTS_RETURNING[session.get_bind().dialect.name]
    accounts = [Account(**row._asdict()) for row in session.connection().execute(statement, rows)]
    join_as_stored(session, accounts)
    return {account.domain: account for account in accounts}


def _store_accounts_apart(session: Session, bind: Engine, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new accounts on PostgreSQL, a domain already stored skipped, committed at
    once in a transaction of their own: a pending insert holds its domain until its
    transaction ends, so two bulk imports naming the same new company queued behind each
    other for the whole of the first one's work (two API processes captured no faster than
    one). An account is only a domain and a name, shared by whoever names it; if the
    capture then fails, the account stays, with nobody in it yet. (A session bound to a
    connection the caller holds writes in the caller's transaction, as SQLite does.)

    The insert may wait for another capture updating the same account (a stored domain is
    skipped, but a row being changed is waited for); it waits at most ``ACCOUNT_LOCK_WAIT``,
    then falls back to the caller's transaction, so a wait can never become a cycle that
    PostgreSQL cannot see (this transaction waiting on the caller's). It falls back the
    same way when the pool has no second connection to give; requests inside a transaction
    at once (``core.http.DB_CONCURRENCY``, 16) stay below the pool (10 + 10 overflow), so
    one is normally free within moments."""
    statement = _INSERT_ACCOUNTS["postgresql"]
    try:
        with bind.begin() as own:
            own.execute(_OWN_ACCOUNT_TRANSACTION, {"wait": ACCOUNT_LOCK_WAIT})
            own.execute(statement, rows)
    except (OperationalError, PoolTimeout):
        session.connection().execute(statement, rows)


_OWN_ACCOUNT_TRANSACTION = text(
    "SELECT set_config('lock_timeout', :wait, true), set_config('synchronous_commit', 'off', true)"
)
"""The accounts' own transaction waits at most ``:wait`` for a lock, and its commit does not
wait for the disk: the capture's own commit (or that of anyone who saw the account and
wrote a row naming it) flushes the log past it, since the log is written in order. A crash
before then loses only an account nobody was stored in. One statement: every batch naming
a new company runs it."""

_INSERT_ACCOUNTS = {
    "postgresql": postgresql_insert(Account).on_conflict_do_nothing(),
    "sqlite": sqlite_insert(Account).on_conflict_do_nothing(),
}
"""``INSERT INTO account … ON CONFLICT DO NOTHING`` by dialect, built once; run with a list
of rows, one execution for all."""
_INSERT_ACCOUNTS_RETURNING = {
    dialect: statement.returning(*Account.__table__.c)
    for dialect, statement in _INSERT_ACCOUNTS.items()
}
"""The same, each inserted row's columns returned (one multi-row statement)."""


def fill_account(
    session: Session,
    account: Account,
    *,
    industry: str | None,
    employee_count: int | None,
    country: str | None,
) -> None:
    """Firmographics are first-come: a value fills a gap and never overwrites one."""
    offered = {"industry": industry, "employee_count": employee_count, "country": country}
    gaps = {k: v for k, v in offered.items() if v and not getattr(account, k)}
    if gaps:
        set_later(session, account, gaps)


def create(
    session: Session,
    pii: Pii,
    *,
    profile: Profile,
    stage: Stage,
    account_id: uuid.UUID | None,
    source: str,
    at: datetime | None = None,
) -> Contact:
    """A new profile. The caller has checked that its e-mail names nobody yet (a capture
    looks it up first), so the e-mail identity is added without another look-up."""
    at = at or utcnow()
    contact = Contact(
        id=new_id(),
        stage=stage,
        stage_changed_at=at,
        account_id=account_id,
        created_at=utcnow(),
    )
    add_later(session, contact)
    update_profile(session, pii, contact=contact, profile=replace(profile, email=None))
    if profile.email is not None:
        seal_email(pii, contact, profile.email)
        add_row_later(session, Identity, _identity(pii, contact, "email", profile.email))
    add_row_later(
        session,
        StageChange,
        {
            "contact_id": contact.id,
            "from_stage": None,
            "to_stage": stage,
            "changed_at": at,
            "reason": "profile created",
            "source": source,
        },
    )
    return contact


def update_profile(session: Session, pii: Pii, *, contact: Contact, profile: Profile) -> None:
    """Apply what ``profile`` gives; a new e-mail becomes one more identity of the contact."""
    if profile.email is not None:
        seal_email(pii, contact, profile.email)
        link_identity(session, pii, contact=contact, kind="email", value=profile.email)
    if profile.phone is not None:
        contact.phone_sealed = pii.seal(profile.phone)
        contact.phone_index = pii.index("phone", profile.phone)
    if profile.first_name is not None:
        contact.first_name_sealed = pii.seal(profile.first_name)
    if profile.last_name is not None:
        contact.last_name_sealed = pii.seal(profile.last_name)
    for name in ("company", "company_key", "job_title", "country", "lead_source"):
        if (value := getattr(profile, name)) is not None:
            setattr(contact, name, value)
    if profile.quality_score is not None:
        contact.quality_score = profile.quality_score


def claim_identities(session: Session, identities: Iterable[tuple[str, str]]) -> None:
    """On PostgreSQL, claim each identity (kind, key) a capture is about to look up and
    perhaps create, until its transaction ends: a second capture naming the same person
    waits for the first to commit and finds the profile it stored, instead of both creating
    one and the later being refused with 409 (two bulk imports side by side that shared a
    few people: 2,000 of 6,000 leads). Captures naming different people do not wait for
    each other. Claims are taken in one sorted order, so two captures never each hold what
    the other wants; a savepoint rolled back gives its claims up. SQLite has one writer at
    a time: nothing to claim."""
    keys = sorted({_claim_key(kind, key) for kind, key in identities})
    if keys and session.get_bind().dialect.name == "postgresql":
        session.execute(_CLAIM, {"keys": keys})


_CLAIM = text(
    "INSERT INTO identity_claim (lock_key, claimed_at) "
    "SELECT k, now() FROM unnest(CAST(:keys AS bigint[])) AS k ORDER BY k "
    "ON CONFLICT (lock_key) DO UPDATE SET claimed_at = excluded.claimed_at"
)
"""Upsert: a new claim row, or the stored one updated, either way locked until the
transaction ends (a row lock lives in the row, not in PostgreSQL's shared lock table)."""


def _claim_key(kind: str, key: str) -> int:
    """A signed 64-bit key for an identity's claim (two identities sharing one only wait)."""
    digest = hashlib.blake2b(f"{kind}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def identity_key(pii: Pii, kind: str, value: str) -> str:
    return pii.email_index(value) if kind == "email" else value.strip()


def add_identity(session: Session, pii: Pii, *, contact: Contact, kind: str, value: str) -> None:
    """Attach an identity the caller has already looked up and found free (a batch that
    prefetched its identities); ``link_identity`` is the form that looks and merges."""
    add_row_later(session, Identity, _identity(pii, contact, kind, value))


def seal_email(pii: Pii, contact: Contact, email: str) -> None:
    contact.email_sealed = pii.seal(email)
    contact.email_domain = email.rsplit("@", 1)[-1].lower()


def _identity(pii: Pii, contact: Contact, kind: str, value: str) -> dict[str, Any]:
    """An identity as a plain row (what a batch adds by the thousand)."""
    sealed = pii.seal(value.strip()) if kind in SEALED_KINDS else None
    return {
        "id": new_id(),
        "contact_id": contact.id,
        "kind": kind,
        "key": identity_key(pii, kind, value),
        "sealed_value": sealed,
        "created_at": utcnow(),
    }


def link_identity(
    session: Session, pii: Pii, *, contact: Contact, kind: str, value: str
) -> Contact:
    """Attach an identity; if it already names someone else, the two are one person: merge
    them (the older profile survives) and return the survivor."""
    key = identity_key(pii, kind, value)
    found = session.scalar(select(Identity).where(Identity.kind == kind, Identity.key == key))
    if found is None:
        session.add(Identity(**_identity(pii, contact, kind, value)))
        return contact
    owner = get(session, contact_id=found.contact_id)
    if owner.id == contact.id:
        return contact
    survivor, absorbed = sorted((owner, contact), key=lambda c: (c.created_at, str(c.id)))
    merge(session, survivor=survivor, absorbed=absorbed, reason=f"shared {kind} identity")
    return survivor


def identity_owners(
    session: Session, kind: str, keys: set[str]
) -> dict[tuple[str, str], uuid.UUID]:
    """``{(kind, key): contact id}`` for the keys of ``kind`` that name someone, in one query
    (the owner may since have been merged: ``live_contacts`` follows that)."""
    if not keys:
        return {}
    rows = session.connection().execute(_OWNERS, {"kind": kind, "keys": sorted(keys)})
    return {(kind, key): contact_id for key, contact_id in rows}


_IDENTITY = Identity.__table__.c
_OWNERS = select(_IDENTITY.key, _IDENTITY.contact_id).where(
    _IDENTITY.kind == bindparam("kind"), _IDENTITY.key.in_(bindparam("keys", expanding=True))
)
"""Built once, run as Core: every capture batch asks it once or twice."""


def live_contacts(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, Contact]:
    """Contacts by the ids asked for, each mapped to its surviving profile after merges (one
    query per hop of a merge chain)."""
    return _follow_merges(ids, lambda pending: session.scalars(_CONTACTS, {"ids": pending}))


_CONTACTS = select(Contact).where(Contact.id.in_(bindparam("ids", expanding=True)))


class PersonFacts(NamedTuple):
    """What scoring and events need of a person, read without loading the profile: for a
    batch that touches a thousand people and changes none of them."""

    id: uuid.UUID
    merged_into_id: uuid.UUID | None
    account_id: uuid.UUID | None
    stage: str
    country: str | None
    job_title: str | None
    email_domain: str | None


def live_people(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, PersonFacts]:
    """:func:`live_contacts` as :class:`PersonFacts` rows."""
    connection = session.connection()
    return _follow_merges(
        ids,
        lambda pending: (
            PersonFacts(*row) for row in connection.execute(_PEOPLE, {"ids": pending})
        ),
    )


_PEOPLE = select(*[Contact.__table__.c[name] for name in PersonFacts._fields]).where(
    Contact.__table__.c.id.in_(bindparam("ids", expanding=True))
)
"""Built once, run as Core: a touchpoint batch reads a thousand people's facts."""


class _Merged(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def merged_into_id(self) -> uuid.UUID | None: ...


M = TypeVar("M", bound=_Merged)


def _follow_merges(
    ids: set[uuid.UUID], fetch: Callable[[Sequence[uuid.UUID]], Iterable[M]]
) -> dict[uuid.UUID, M]:
    found: dict[uuid.UUID, M] = {}
    pending = set(ids)
    asked: dict[uuid.UUID, uuid.UUID] = {i: i for i in ids}
    for _hop in range(5):
        if not pending:
            break
        rows = {c.id: c for c in fetch([*pending])}
        pending = set()
        for origin, current in [*asked.items()]:
            row = rows.get(current) or found.get(current)
            if row is None:
                continue
            if row.merged_into_id is None:
                found[origin] = row
                del asked[origin]
            else:
                asked[origin] = row.merged_into_id
                pending.add(row.merged_into_id)
        found |= {c.id: c for c in rows.values() if c.merged_into_id is None}
    return found


def merge(session: Session, *, survivor: Contact, absorbed: Contact, reason: str) -> Contact:
    """Make two profiles one: identities, consent and stage history move to ``survivor``,
    which keeps the further stage and fills its gaps from ``absorbed``. The absorbed row
    stays, pointing at the survivor, so its id keeps resolving."""
    if survivor.id == absorbed.id:
        raise Conflict("A contact cannot be merged into itself.")
    write_held(session)
    for model in (Identity, StageChange, Consent):
        session.execute(
            update(model)
            .where(model.contact_id == absorbed.id)
            .values(contact_id=survivor.id)
            .execution_options(synchronize_session=False)
        )
    for name in (
        "email_sealed",
        "email_domain",
        "phone_sealed",
        "phone_index",
        "first_name_sealed",
        "last_name_sealed",
        "company",
        "company_key",
        "job_title",
        "country",
        "lead_source",
        "quality_score",
        "account_id",
    ):
        if getattr(survivor, name) is None:
            setattr(survivor, name, getattr(absorbed, name))
    stage = furthest(Stage(survivor.stage), Stage(absorbed.stage))
    if stage != survivor.stage:
        survivor.stage, survivor.stage_changed_at = stage, absorbed.stage_changed_at
    absorbed.merged_into_id = survivor.id
    session.flush()
    for hook in MERGE_HOOKS:
        hook(session, survivor, absorbed)
    outbox.publish(
        session,
        topic=TOPIC,
        event_type="contact.merged",
        tenant_id=tenant_of(session, survivor),
        payload={
            "contact_id": str(survivor.id),
            "merged_contact_id": str(absorbed.id),
            "reason": reason,
        },
    )
    return survivor


def set_stage(
    session: Session,
    *,
    contact: Contact,
    to_stage: Stage,
    reason: str,
    source: str,
    at: datetime | None = None,
) -> None:
    """Move ``contact`` to ``to_stage`` if the lifecycle allows it (409 otherwise), keeping
    the dated history, and publish ``contact.stage_changed``."""
    from_stage = Stage(contact.stage)
    if not can_move(from_stage, to_stage):
        raise Conflict(
            f"A contact at stage {from_stage.value!r} cannot move to {to_stage.value!r}; "
            "stages move forward, anyone can be disqualified, a disqualified person can be "
            "recycled to 'lead', and a customer can churn and be won back."
        )
    at = at or utcnow()
    change = {
        "contact_id": contact.id,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "changed_at": at,
        "reason": reason[:500],
        "source": source,
    }
    add_row_later(session, StageChange, change)
    contact.stage, contact.stage_changed_at = to_stage, at
    outbox.publish(
        session,
        topic=TOPIC,
        event_type="contact.stage_changed",
        tenant_id=tenant_of(session, contact),
        payload={
            "contact_id": str(contact.id),
            "from_stage": from_stage.value,
            "to_stage": to_stage.value,
            "reason": change["reason"],
            "source": source,
        },
        occurred_at=at,
    )


def stage_history(session: Session, *, contact_id: uuid.UUID) -> Sequence[StageChange]:
    """Oldest first; moves stamped with the same instant (a deal opened and won in one
    request) are ordered along the funnel, exits last."""
    query = select(StageChange).where(StageChange.contact_id == contact_id)
    changes = session.scalars(query).all()
    return sorted(changes, key=lambda c: (c.changed_at, RANK.get(Stage(c.to_stage), len(RANK))))


def identities(session: Session, *, contact_id: uuid.UUID) -> Sequence[Identity]:
    query = select(Identity).where(Identity.contact_id == contact_id)
    return session.scalars(query.order_by(Identity.created_at, Identity.id)).all()


def record_consent(
    session: Session,
    *,
    contact: Contact,
    purpose: str,
    granted: bool,
    source: str,
    at: datetime | None = None,
) -> None:
    """Keep a consent decision; the latest one per purpose is in force."""
    consent = {
        "contact_id": contact.id,
        "purpose": purpose,
        "granted": granted,
        "source": source,
        "recorded_at": at or utcnow(),
    }
    add_row_later(session, Consent, consent)


def consents(session: Session, *, contact_id: uuid.UUID) -> dict[str, Consent]:
    """The consent in force per purpose: the latest decision recorded."""
    query = (
        select(Consent)
        .where(Consent.contact_id == contact_id)
        .order_by(Consent.recorded_at, Consent.id)
    )
    return {c.purpose: c for c in session.scalars(query)}


def has_consent(session: Session, *, contact_id: uuid.UUID, purpose: str) -> bool:
    """Marketing actions need a recorded grant; no record means no consent (opt-in)."""
    found = consents(session, contact_id=contact_id).get(purpose)
    return found is not None and found.granted


def get_account(session: Session, *, account_id: uuid.UUID) -> Account:
    return get_or_404(session, Account, account_id, label="account")


def list_accounts(session: Session, *, after: uuid.UUID | None, limit: int) -> Sequence[Account]:
    return session.scalars(newest_first(session, Account, after=after).limit(limit)).all()
