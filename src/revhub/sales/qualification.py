"""Keeping scores current and qualifying MQLs: the database side of ``scoring.py``.

A score is recomputed when something that feeds it changes (a capture, touchpoints, the
model) and by the daily decay job. A recomputation that changes the score stores a
``ScoreChange`` with its reasons; crossing into MQL moves the lead's stage (lead → MQL only:
scoring never demotes and never skips the sales team's SQL decision) and publishes
``lead.mql_reached``, which the alert consumer turns into a sales notification.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.contacts.models import Account, Contact
from revhub.contacts.stages import Stage
from revhub.core import reference
from revhub.core.db import add_row_later, set_row_later, unparsed, uuid_as_read
from revhub.core.errors import NotFound
from revhub.core.events import outbox
from revhub.sales import quality
from revhub.sales.models import LeadScore, ScoreChange, ScoringModel, Touchpoint
from revhub.sales.scoring import Activity, FitFacts, Score, ScoringModelDocument, default_model
from revhub.sales.scoring import score as compute

TOPIC = "lead-capture"


Scorable = Contact | contacts.PersonFacts
"""Whom a score is computed for: a loaded profile, or the facts a batch read of one."""


@dataclass(frozen=True)
class ActiveModel:
    version: int
    document: ScoringModelDocument


def active_model(session: Session) -> ActiveModel:
    """The newest stored model, or the shipped default (version 0) when none is stored; kept
    by this process until a new version is stored (``revhub.core.reference``): every capture
    batch asks for it, and reading and validating its document was a fiftieth of a single
    lead's CPU."""
    return reference.kept(session, SCORING_MODEL, _load_active_model)


SCORING_MODEL = "scoring_model"
reference.watch(SCORING_MODEL, ScoringModel)


def _load_active_model(session: Session) -> ActiveModel:
    newest = session.scalars(select(ScoringModel).order_by(ScoringModel.version.desc())).first()
    if newest is None:
        return ActiveModel(0, default_model())
    return ActiveModel(newest.version, ScoringModelDocument.model_validate(newest.document))


def replace_model(
    session: Session, *, document: ScoringModelDocument, created_by: str
) -> ActiveModel:
    """Store ``document`` as the next version; scores follow as they are recomputed."""
    current = session.scalar(select(func.max(ScoringModel.version))) or 0
    row = ScoringModel(
        version=current + 1, document=document.model_dump(mode="json"), created_by=created_by
    )
    session.add(row)
    session.flush()
    return ActiveModel(row.version, document)


def fit_facts(session: Session, contact: Contact) -> FitFacts:
    account = session.get(Account, contact.account_id) if contact.account_id else None
    return facts_of(contact, account)


class Company(NamedTuple):
    """What fit reads of a person's account, read as plain values for a batch's people."""

    country: str | None
    industry: str | None
    employee_count: int | None


def companies(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Company]:
    """The accounts ``ids`` as :class:`Company` values, in one query (no ORM object each:
    a touchpoint batch rescores people at hundreds of companies)."""
    if not ids:
        return {}
    table = Account.__table__.c
    rows = session.connection().execute(
        select(table.id, table.country, table.industry, table.employee_count).where(
            table.id.in_(set(ids))
        )
    )
    return {row[0]: Company(*row[1:]) for row in rows}


def facts_of(contact: Scorable, account: Account | Company | None) -> FitFacts:
    """What fit is judged on: the person, and the company they work for."""
    return FitFacts(
        country=contact.country or (account.country if account else None),
        industry=account.industry if account else None,
        employee_count=account.employee_count if account else None,
        job_title=contact.job_title,
        business_email=contact.email_domain is not None
        and not quality.is_free_mailbox(contact.email_domain),
    )


def activities(
    session: Session, contact_ids: Sequence[uuid.UUID], since: datetime
) -> dict[uuid.UUID, list[Activity]]:
    """Touchpoints since ``since`` of many contacts, in one query."""
    content_id = Touchpoint.meta["content_id"].as_string()
    table = Touchpoint.__table__.c
    connection = session.connection()
    rows = connection.execute(  # Core: plain rows, no ORM result per touchpoint
        select(unparsed(table.contact_id), table.kind, table.occurred_at, content_id).where(
            table.contact_id.in_(contact_ids), table.occurred_at >= since
        )
    )
    found: dict[uuid.UUID, list[Activity]] = {c: [] for c in contact_ids}
    as_read = uuid_as_read(connection.dialect)
    by_key = {as_read(c): found[c] for c in contact_ids}
    for contact_id, kind, at, content in rows:
        by_key[contact_id].append(Activity(kind, at, content or None))
    return found


SCORE_COLUMNS = (
    "fit",
    "engagement",
    "total",
    "email_engagement",
    "content_pieces",
    "web_sessions",
    "icp_fit",
)
"""What a score is; a recomputation that changes any of them is kept as a ``ScoreChange``."""


@dataclass(frozen=True)
class StoredScore:
    """A person's score as stored, read as plain values: a rescore compares against it and
    writes the difference by key, with no ORM object per person."""

    fit: int
    engagement: int
    total: int
    email_engagement: int
    content_pieces: int
    web_sessions: int
    icp_fit: bool


def stored_scores(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredScore]:
    """The stored scores of ``ids`` (a person never scored is left out), in one query."""
    if not ids:
        return {}
    table = LeadScore.__table__.c
    columns = [table[name] for name in SCORE_COLUMNS]
    rows = session.connection().execute(
        select(table.contact_id, *columns).where(table.contact_id.in_(ids))
    )
    return {row[0]: StoredScore(*row[1:]) for row in rows}


@dataclass(frozen=True)
class Rescore:
    score: Score
    became_mql: bool
    changed: bool
    stored: StoredScore


def rescore(
    session: Session,
    *,
    people: Iterable[Scorable],
    trigger: str,
    now: datetime,
    model: ActiveModel | None = None,
    unscored: bool = False,
) -> dict[uuid.UUID, Rescore]:
    """Recompute the scores of ``people`` at ``now`` (``unscored``: they are new and have no
    score row yet, so none is looked up)."""
    model = model or active_model(session)
    pairs = list(people)
    since = now - timedelta(days=model.document.behaviour.lookback_days)
    acts = activities(session, [c.id for c in pairs], since)
    ids = [c.id for c in pairs]
    scores = {} if unscored else stored_scores(session, ids)
    account_ids = [c.account_id for c in pairs if c.account_id is not None]
    accounts = companies(session, account_ids)
    return {
        contact.id: store_score(
            session,
            contact,
            scores.get(contact.id),
            facts_of(contact, accounts.get(contact.account_id) if contact.account_id else None),
            acts[contact.id],
            trigger=trigger,
            now=now,
            model=model,
        )
        for contact in pairs
    }


def store_score(
    session: Session,
    contact: Scorable,
    current: StoredScore | None,
    facts: FitFacts,
    acts: list[Activity],
    *,
    trigger: str,
    now: datetime,
    model: ActiveModel,
) -> Rescore:
    """Score ``contact`` from facts and activities the caller has read (``current``: its
    stored score, None for a person never scored), keep the change with its reasons, and
    qualify them as an MQL when they cross the line."""
    result = compute(model.document, facts, acts, now)
    numbers = {name: getattr(result, name) for name in SCORE_COLUMNS}
    after = StoredScore(**numbers)
    changed = after != current
    if changed:
        add_row_later(
            session,
            ScoreChange,
            {
                "contact_id": contact.id,
                "changed_at": now,
                "fit": result.fit,
                "engagement": result.engagement,
                "total": result.total,
                "delta": result.total - (current.total if current else 0),
                "trigger": trigger,
                "reasons": result.reasons,
            },
        )
    values = numbers | {"model_version": model.version, "computed_at": now}
    if current is None:
        add_row_later(session, LeadScore, {"contact_id": contact.id} | values)
    else:
        set_row_later(session, LeadScore, {"contact_id": contact.id}, values)
    became_mql = result.is_mql and contact.stage == Stage.LEAD
    if became_mql:
        profile = contact if isinstance(contact, Contact) else session.get(Contact, contact.id)
        assert profile is not None, "a scored person has a profile"
        _qualify(session, profile, result, now)
    return Rescore(result, became_mql, changed, after)


def _qualify(session: Session, contact: Contact, result: Score, now: datetime) -> None:
    reason = (
        f"MQL criteria met: email engagement {result.email_engagement}, "
        f"{result.content_pieces} content pieces, {result.web_sessions} sessions, ICP fit"
    )
    contacts.set_stage(
        session, contact=contact, to_stage=Stage.MQL, reason=reason, source="scoring", at=now
    )
    outbox.publish(
        session,
        topic=TOPIC,
        event_type="lead.mql_reached",
        tenant_id=contacts.tenant_of(session, contact),
        payload={
            "contact_id": str(contact.id),
            "score": result.total,
            "fit": result.fit,
            "email_engagement": result.email_engagement,
            "content_pieces": result.content_pieces,
            "web_sessions": result.web_sessions,
        },
        occurred_at=now,
    )


def get_score(
    session: Session, *, contact_id: uuid.UUID
) -> tuple[LeadScore, Sequence[ScoreChange]]:
    """A person's score and its latest changes; 404 for an unknown or never-scored person."""
    contact_id = contacts.get(session, contact_id=contact_id).id
    current = session.get(LeadScore, contact_id)
    if current is None:
        raise NotFound("score of contact", contact_id)
    history = session.scalars(
        select(ScoreChange)
        .where(ScoreChange.contact_id == contact_id)
        .order_by(ScoreChange.changed_at.desc(), ScoreChange.id)
        .limit(100)
    ).all()
    return current, history
