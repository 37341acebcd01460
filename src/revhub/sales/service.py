"""Lead capture: seed 002's six-step pipeline, one lead at a time or up to 1,000 at once.

1. validate and clean (``quality.clean_lead``; 422 naming every bad field);
2. detect duplicates and merge (same e-mail → same profile; an anonymous visitor who fills
   in a form becomes that person with their history; a fuzzy company + name match is
   flagged for review, never merged);
3. score and qualify (``qualification.rescore``; lead → MQL when seed 004's criteria hold);
4. hand the record to the CRM (``lead.processed`` on ``lead-capture``, for ``crm-sync``);
5. assign a rep (``assignment.assign``; ``lead.assigned``);
6. trigger follow-up (``lead.follow_up_requested``, for the e-mail or sequence tool) — a
   nurture sequence only with e-mail marketing consent on record (DESIGN §6) and at most
   three sequences a week per person (seed 002 frequency capping); otherwise a rep task.

Everything happens in the caller's transaction: a lead that fails any step leaves nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.contacts.models import Account, Contact
from revhub.contacts.pii import Pii
from revhub.contacts.stages import Stage
from revhub.core.db import utcnow
from revhub.core.errors import Conflict, InvalidInput
from revhub.core.events import outbox
from revhub.core.schemas import item_errors
from revhub.sales import assignment, merging, qualification, quality, touchpoints
from revhub.sales import schemas as s
from revhub.sales.models import DuplicateReview, Lead, LeadCapture, SalesRep, Territory

TOPIC = "lead-capture"
FUZZY_CANDIDATES = 200
WEEKLY_MARKETING_CAP = 3
"""DESIGN §6 / seed 002 ``frequency_capping: max_3_per_week_per_contact``."""
merging.install()


@dataclass(frozen=True)
class _Named:
    first_name: str
    last_name: str | None
    company: str


def capture_lead(
    session: Session,
    pii: Pii,
    *,
    lead_in: s.LeadCreate,
    prefix: str = "body",
    now: datetime | None = None,
    model: qualification.ActiveModel | None = None,
) -> s.LeadResult:
    """Run the six steps for one lead and return what each step did."""
    at = lead_in.captured_at or now or utcnow()
    clean = quality.clean_lead(_raw(lead_in), prefix=prefix)
    campaign = touchpoints.campaign_by_key(session, lead_in.campaign, field=f"{prefix}.campaign")
    validation = s.Validation(
        quality_score=clean.quality_score,
        problems=list(clean.problems),
        transformations=list(clean.transformations),
    )
    contact, dedup, _account = _deduplicate(session, pii, clean, lead_in, at)
    _record_consent(session, contact, lead_in, at)
    touchpoints.record(
        session,
        contact=contact,
        campaign=campaign,
        channel=campaign.channel if campaign else "web",
        kind=lead_in.capture_type.value,
        occurred_at=at,
    )
    if contact.stage in (Stage.ANONYMOUS, Stage.DISQUALIFIED):
        reason = f"captured by {lead_in.capture_type.value}"
        contacts.set_stage(
            session, contact=contact, to_stage=Stage.LEAD, reason=reason, source="capture", at=at
        )
    new = dedup.outcome == "created"
    rescored = qualification.rescore(
        session,
        people=[contact],
        trigger=lead_in.capture_type.value,
        now=at,
        unscored=new,
        model=model,
    )[contact.id]
    scoring = _scoring_step(contact, rescored)
    lead = _lead_for(session, contact, new=new, at=at)
    steps: dict[str, Any] = {
        "validation": validation.model_dump(mode="json"),
        "deduplication": dedup.model_dump(mode="json"),
        "scoring": scoring.model_dump(mode="json"),
    }
    tenant = contacts.tenant_of(session, contact)
    event = outbox.publish(
        session,
        topic=TOPIC,
        event_type="lead.processed",
        tenant_id=tenant,
        payload={"lead_id": str(lead.id), "contact_id": str(contact.id), "steps": steps},
        occurred_at=at,
    )
    crm = s.CrmHandoff(lead_id=lead.id, status="queued_for_crm_sync", event_id=event.event_id)
    assigned = _assignment_step(session, lead, contact, tenant, at)
    follow_up = _follow_up_step(session, lead, contact, lead_in, tenant, at, new=new)
    steps |= {
        "crm": crm.model_dump(mode="json"),
        "assignment": assigned.model_dump(mode="json"),
        "follow_up": follow_up.model_dump(mode="json"),
    }
    session.add(
        LeadCapture(
            lead_id=lead.id,
            capture_type=lead_in.capture_type.value,
            campaign_id=campaign.id if campaign else None,
            captured_at=at,
            steps=steps,
        )
    )
    return s.LeadResult(
        lead_id=lead.id, contact_id=contact.id, steps=s.LeadSteps.model_validate(steps)
    )


def capture_leads(
    session: Session, pii: Pii, *, items: list[dict[str, Any]], now: datetime | None = None
) -> s.BulkResult:
    """Each item alone: a bad one is reported at its index and leaves nothing (every check
    that can refuse a lead runs before its first write), the good ones land together with
    the caller's transaction. The scoring model is read once for the batch."""
    model = qualification.active_model(session)
    results: list[s.BulkItem] = []
    for index, item in enumerate(items):
        prefix = f"body.leads[{index}]"
        try:
            lead_in = s.LeadCreate.model_validate(item)
            result = capture_lead(
                session, pii, lead_in=lead_in, prefix=prefix, now=now, model=model
            )
            results.append(s.BulkItem(index=index, status=201, result=result))
        except ValidationError as exc:
            results.append(s.BulkItem(index=index, status=422, errors=item_errors(exc, prefix)))
        except InvalidInput as exc:
            errors = [{"field": e.field, "message": e.message, "type": e.type} for e in exc.errors]
            results.append(s.BulkItem(index=index, status=422, errors=errors))
    accepted = sum(r.status < 300 for r in results)
    return s.BulkResult(accepted=accepted, rejected=len(results) - accepted, results=results)


def _raw(lead_in: s.LeadCreate) -> quality.RawLead:
    return quality.RawLead(
        email=lead_in.email,
        first_name=lead_in.first_name,
        last_name=lead_in.last_name,
        company=lead_in.company,
        phone=lead_in.phone,
        job_title=lead_in.job_title,
        country=lead_in.country,
        website=lead_in.website,
        source=lead_in.lead_source,
    )


def _profile(clean: quality.CleanLead) -> contacts.Profile:
    return contacts.Profile(
        email=clean.email,
        first_name=clean.first_name,
        last_name=clean.last_name,
        phone=clean.phone,
        company=clean.company,
        company_key=quality.normalise_company(clean.company)[:200] or None,
        job_title=clean.job_title,
        country=clean.country,
        lead_source=clean.source,
        quality_score=clean.quality_score,
    )


def _deduplicate(
    session: Session, pii: Pii, clean: quality.CleanLead, lead_in: s.LeadCreate, at: datetime
) -> tuple[Contact, s.Deduplication, Account | None]:
    """The profile this lead belongs to, what happened to find it, and its account (returned
    so the caller holds it: the session's identity map is weak, and fit, tenant and
    territory all read it)."""
    account = _account(session, clean, lead_in)
    by_email = contacts.get_by_email(session, pii, email=clean.email)
    by_visitor = (
        contacts.get_by_identity(session, kind="anonymous", key=lead_in.anonymous_id.strip())
        if lead_in.anonymous_id
        else None
    )
    contact, outcome, merged = _resolve(session, pii, clean, account, by_email, by_visitor, at)
    if outcome != "created":
        contacts.update_profile(session, pii, contact=contact, profile=_profile(clean))
    if lead_in.anonymous_id:
        contact = contacts.link_identity(
            session, pii, contact=contact, kind="anonymous", value=lead_in.anonymous_id
        )
    if contact.account_id is None and account is not None:
        contact.account_id = account.id
    elif contact.account_id is not None and (account is None or account.id != contact.account_id):
        account = session.get(Account, contact.account_id)
    flagged = _flag_fuzzy_duplicates(session, pii, contact, clean) if outcome == "created" else []
    found = s.Deduplication(
        outcome=outcome,
        contact_id=contact.id,
        merged_contact_ids=merged,
        possible_duplicates=flagged,
    )
    return contact, found, account


def _resolve(
    session: Session,
    pii: Pii,
    clean: quality.CleanLead,
    account: Account | None,
    by_email: Contact | None,
    by_visitor: Contact | None,
    at: datetime,
) -> tuple[Contact, str, list[uuid.UUID]]:
    """The profile and how it was found: created, updated (same e-mail), identified (an
    anonymous visitor) or merged (the e-mail and the visitor were two profiles)."""
    if by_email is None and by_visitor is None:
        created = _create_unless_twin(session, pii, clean, account, at)
        if created is not None:
            return created, "created", []
        by_email = contacts.get_by_email(session, pii, email=clean.email)
        if by_email is None:
            raise Conflict("Another request stored this person at the same moment; retry.")
    if by_email is not None and by_visitor is not None and by_email.id != by_visitor.id:
        older, newer = sorted((by_email, by_visitor), key=lambda c: (c.created_at, str(c.id)))
        reason = "anonymous visitor identified by a form"
        return (
            contacts.merge(session, survivor=older, absorbed=newer, reason=reason),
            "merged",
            [newer.id],
        )
    if by_email is not None:
        return by_email, "updated", []
    assert by_visitor is not None
    return by_visitor, "identified", []


def _create_unless_twin(
    session: Session, pii: Pii, clean: quality.CleanLead, account: Account | None, at: datetime
) -> Contact | None:
    """A new profile, or None when a twin request (a double-clicked form) created the same
    e-mail first: the e-mail identity's unique key decides, inside a savepoint, and the
    loser then updates the winner's profile instead of failing."""
    try:
        with session.begin_nested():
            contact = contacts.create(
                session,
                pii,
                profile=_profile(clean),
                stage=Stage.LEAD,
                account_id=account.id if account else None,
                source="capture",
                at=at,
            )
            session.flush()
    except IntegrityError:
        return None
    return contact


def _account(session: Session, clean: quality.CleanLead, lead_in: s.LeadCreate) -> Account | None:
    if clean.company_domain is None:
        return None
    return contacts.get_or_create_account(
        session,
        domain=clean.company_domain,
        name=clean.company,
        industry=lead_in.industry.strip().lower()[:100] if lead_in.industry else None,
        employee_count=lead_in.employee_count,
        country=clean.country,
    )


def _flag_fuzzy_duplicates(
    session: Session, pii: Pii, contact: Contact, clean: quality.CleanLead
) -> list[s.PossibleDuplicate]:
    """Same normalised company, similar name: a person to review (seed 002
    ``duplicate_detection: email+company_combination``; a different e-mail at the same
    company may still be the same person, or a colleague — a human decides)."""
    if not contact.company_key:
        return []
    candidates = session.scalars(
        select(Contact)
        .where(
            Contact.company_key == contact.company_key,
            Contact.id != contact.id,
            Contact.merged_into_id.is_(None),
        )
        .limit(FUZZY_CANDIDATES)
    )
    flagged = []
    for other in candidates:
        person = contacts.read_person(pii, other)
        if person.first_name is None or other.company is None:
            continue
        candidate = _Named(person.first_name, person.last_name, other.company)
        similarity = quality.likely_duplicate(clean, candidate)
        if similarity is not None:
            session.add(
                DuplicateReview(contact_id=contact.id, candidate_id=other.id, similarity=similarity)
            )
            flagged.append(s.PossibleDuplicate(contact_id=other.id, similarity=similarity))
    return flagged


def _record_consent(
    session: Session, contact: Contact, lead_in: s.LeadCreate, at: datetime
) -> None:
    if lead_in.consent is None:
        return
    source = f"lead capture ({lead_in.capture_type.value})"
    for purpose in ("email_marketing", "tracking"):
        granted = getattr(lead_in.consent, purpose)
        if granted is not None:
            contacts.record_consent(
                session, contact=contact, purpose=purpose, granted=granted, source=source, at=at
            )


def _scoring_step(contact: Contact, rescored: qualification.Rescore) -> s.Scoring:
    result = rescored.score
    return s.Scoring(
        fit=result.fit,
        engagement=result.engagement,
        email_engagement=result.email_engagement,
        content_pieces=result.content_pieces,
        web_sessions=result.web_sessions,
        icp_fit=result.icp_fit,
        total=result.total,
        stage=Stage(contact.stage),
        became_mql=rescored.became_mql,
        reasons=result.reasons,
    )


def _lead_for(session: Session, contact: Contact, *, new: bool, at: datetime) -> Lead:
    """The person's lead record (a new person has none yet: no look-up)."""
    lead = None if new else session.scalar(select(Lead).where(Lead.contact_id == contact.id))
    if lead is None:
        lead = Lead(id=uuid.uuid4(), contact_id=contact.id, created_at=at, capture_count=0)
        session.add(lead)
    lead.capture_count += 1
    lead.crm_status = "pending"
    return lead


def _assignment_step(
    session: Session, lead: Lead, contact: Contact, tenant: str, at: datetime
) -> s.AssignmentOut:
    owner = session.get(SalesRep, lead.owner_rep_id) if lead.owner_rep_id else None
    if owner is not None and owner.active:
        territory = session.get(Territory, lead.territory_id) if lead.territory_id else None
        return s.AssignmentOut(
            rep_id=owner.id,
            rep_name=owner.name,
            territory=territory.name if territory else None,
            queued=False,
            reason="already owned by an active rep; kept",
        )
    made = assignment.assign(session, lead=lead, facts=assignment.lead_facts(session, contact))
    return assignment.announce(session, lead, made, tenant, at)


def _sequences_this_week(session: Session, lead: Lead, at: datetime) -> int:
    sequence = LeadCapture.steps["follow_up"]["sequence"].as_string()
    query = select(func.count()).where(
        LeadCapture.lead_id == lead.id,
        LeadCapture.captured_at > at - timedelta(days=7),
        LeadCapture.captured_at <= at,
        sequence.is_not(None),
    )
    return session.scalar(query) or 0


def _follow_up_step(
    session: Session,
    lead: Lead,
    contact: Contact,
    lead_in: s.LeadCreate,
    tenant: str,
    at: datetime,
    *,
    new: bool,
) -> s.FollowUp:
    """A new person's only consent is the one in this capture and no sequence has run yet,
    so their checks need no queries."""
    sequence: str | None = None
    if new:
        consented = lead_in.consent is not None and lead_in.consent.email_marketing is True
    else:
        consented = contacts.has_consent(session, contact_id=contact.id, purpose="email_marketing")
    if not consented:
        reason = "no e-mail marketing consent on record: rep task only, no marketing e-mail"
    elif not new and _sequences_this_week(session, lead, at) >= WEEKLY_MARKETING_CAP:
        reason = (
            f"frequency cap: {WEEKLY_MARKETING_CAP} marketing sequences in 7 days already "
            "(seed 002 frequency_capping): rep task only"
        )
    else:
        kind = "sales-outreach" if contact.stage == Stage.MQL else "nurture"
        sequence = f"{kind}:{lead_in.capture_type.value}"
        reason = "e-mail marketing consent on record"
    outbox.publish(
        session,
        topic=TOPIC,
        event_type="lead.follow_up_requested",
        tenant_id=tenant,
        payload={
            "lead_id": str(lead.id),
            "contact_id": str(contact.id),
            "rep_id": str(lead.owner_rep_id) if lead.owner_rep_id else None,
            "sequence": sequence,
            "stage": contact.stage,
        },
        occurred_at=at,
    )
    return s.FollowUp(triggered=True, sequence=sequence, reason=reason)
