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

Leads are worked in batches (a single lead is a batch of one): ``intake.Intake`` reads
what the batch needs in a few queries, each lead is then worked in memory, and the rows of
all of them are written in one flush (a 1,000-lead request costs about as many statements
as a ten-lead one). Everything happens in the caller's transaction; a lead that fails a
check is refused before anything of it is written. When a twin request (a double-clicked
form) stores the same person in the moment between the look-ups and the write, the batch
runs again once inside its savepoint and finds them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.contacts.models import Account, Contact
from revhub.contacts.pii import Pii
from revhub.contacts.stages import Stage
from revhub.core.db import add_later, add_row_later, batched_writes, new_id, utcnow
from revhub.core.errors import Conflict, FieldError, InvalidInput
from revhub.core.events import outbox
from revhub.core.events.envelope import correlated
from revhub.core.schemas import item_errors
from revhub.sales import assignment, merging, qualification, quality, touchpoints
from revhub.sales import schemas as s
from revhub.sales.intake import COLLEAGUES_COMPARED, Checked, Intake
from revhub.sales.models import DuplicateReview, Lead, LeadCapture
from revhub.sales.scoring import Activity

T = TypeVar("T")

TOPIC = "lead-capture"
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
    """Run the six steps for one lead and return what each step did (422 for a bad lead)."""
    outcome = capture_batch(session, pii, [(prefix, lead_in)], now=now, model=model)[0]
    if isinstance(outcome, InvalidInput):
        raise outcome
    return outcome


def capture_leads(
    session: Session, pii: Pii, *, items: list[dict[str, Any]], now: datetime | None = None
) -> s.BulkResult:
    """Each item alone: a bad one is reported at its index and leaves nothing, the good ones
    land together with the caller's transaction."""
    refused: dict[int, s.BulkItem] = {}
    wanted: list[tuple[int, str, s.LeadCreate]] = []
    for index, item in enumerate(items):
        prefix = f"body.leads[{index}]"
        try:
            wanted.append((index, prefix, s.LeadCreate.model_validate(item)))
        except ValidationError as exc:
            refused[index] = s.BulkItem(index=index, status=422, errors=item_errors(exc, prefix))
    outcomes = capture_batch(session, pii, [(p, lead_in) for _, p, lead_in in wanted], now=now)
    for (index, _, _), outcome in zip(wanted, outcomes, strict=True):
        if isinstance(outcome, InvalidInput):
            errors = [
                {"field": e.field, "message": e.message, "type": e.type} for e in outcome.errors
            ]
            refused[index] = s.BulkItem(index=index, status=422, errors=errors)
        else:
            refused[index] = s.BulkItem(index=index, status=201, result=outcome)
    results = [refused[i] for i in range(len(items))]
    accepted = sum(r.status < 300 for r in results)
    return s.BulkResult(accepted=accepted, rejected=len(results) - accepted, results=results)


def capture_batch(
    session: Session,
    pii: Pii,
    wanted: Sequence[tuple[str, s.LeadCreate]],
    *,
    now: datetime | None = None,
    model: qualification.ActiveModel | None = None,
    correlations: Sequence[str | None] | None = None,
    owns_transaction: bool = False,
) -> list[s.LeadResult | InvalidInput]:
    """The six steps for each ``(field prefix, lead)``, in order; a refused lead's place
    holds its 422. ``correlations``: the correlation id each lead's events carry (leads of
    several requests captured together), instead of the caller's.

    A twin request may store the same person between this batch's look-ups and its writes
    (a unique key refuses them): on PostgreSQL the batch runs in a savepoint, and again
    once. SQLite has one writer at a time, whose transaction holds the database from its
    first look-up: no twin can come between, so there is nothing to run again, and the
    savepoint's two statements are left out of every batch (a single lead is a batch of
    some twenty). A caller whose transaction holds nothing but this batch
    (``owns_transaction``: the capture process) runs its transaction again itself, and
    gets the ``IntegrityError`` as it is; its new companies' accounts are inserted in that
    transaction too (``apart=False`` of :func:`contacts.get_or_create_accounts`)."""
    model = model or qualification.active_model(session)
    run = partial(
        _capture,
        session,
        pii,
        wanted,
        now=now,
        model=model,
        correlations=correlations,
        accounts_apart=not owns_transaction,
    )
    if owns_transaction:
        return run()
    if session.get_bind().dialect.name == "sqlite":
        return despite_twins(run, tries=1)

    def in_savepoint() -> list[s.LeadResult | InvalidInput]:
        with session.begin_nested():
            return run()

    return despite_twins(in_savepoint)


def despite_twins(attempt: Callable[[], T], *, tries: int = 2) -> T:
    """``attempt()``, run again (up to ``tries`` in all) while a unique key refuses it: a
    twin request stored the same person between its look-ups and its writes, and the next
    run finds that person. Likewise when PostgreSQL ends it as one side of a deadlock
    (SQLSTATE 40P01: two captures each waiting on a company row the other had written),
    which the other side has then passed. ``attempt`` must undo its own writes when refused
    (a savepoint, or a transaction of its own). Refused every time: a 409, send it again."""
    for left in range(tries, 0, -1):
        try:
            return attempt()
        except (IntegrityError, OperationalError) as exc:
            if isinstance(exc, OperationalError) and _sqlstate(exc) != DEADLOCK:
                raise
            if left == 1:
                raise Conflict(
                    "Another request stored the same people or companies at the same moment; send "
                    "it again."
                ) from None
    raise AssertionError("unreachable")


DEADLOCK = "40P01"
"""PostgreSQL's ``deadlock_detected``: the victim's transaction (or savepoint) was undone."""


def _sqlstate(exc: OperationalError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _capture(
    session: Session,
    pii: Pii,
    wanted: Sequence[tuple[str, s.LeadCreate]],
    *,
    now: datetime | None,
    model: qualification.ActiveModel,
    correlations: Sequence[str | None] | None,
    accounts_apart: bool,
) -> list[s.LeadResult | InvalidInput]:
    keys = {lead_in.campaign for _, lead_in in wanted if lead_in.campaign}
    campaigns = touchpoints.campaigns_by_key(session, keys)
    checked = [_check(pii, prefix, lead_in, campaigns, now) for prefix, lead_in in wanted]
    good = [c for c in checked if isinstance(c, Checked)]
    if not good:
        return [c for c in checked if isinstance(c, InvalidInput)]
    contacts.claim_identities(session, _identities(good))
    intake = Intake.load(session, pii, good, model, accounts_apart=accounts_apart)
    results: list[s.LeadResult | InvalidInput] = []
    with batched_writes(session), outbox.held_until_done(session), session.no_autoflush:
        for i, c in enumerate(checked):
            if isinstance(c, InvalidInput):
                results.append(c)
                continue
            with correlated(correlations[i]) if correlations else nullcontext():
                results.append(_process(session, pii, intake, c, model))
        intake.team.settle(session)
    session.flush()
    return results


def _identities(leads: Sequence[Checked]) -> list[tuple[str, str]]:
    """What a batch looks its people up by: their e-mails and anonymous ids."""
    return [("email", c.email_key) for c in leads] + [
        ("anonymous", c.visitor) for c in leads if c.visitor
    ]


def _check(
    pii: Pii,
    prefix: str,
    lead_in: s.LeadCreate,
    campaigns: dict[str, touchpoints.CampaignRef],
    now: datetime | None,
) -> Checked | InvalidInput:
    """Every check that can refuse a lead, before anything of it is written."""
    try:
        clean = quality.clean_lead(_raw(lead_in), prefix=prefix)
    except InvalidInput as exc:
        return exc
    campaign = campaigns.get(lead_in.campaign) if lead_in.campaign else None
    if lead_in.campaign and campaign is None:
        message = f"no campaign with key {lead_in.campaign!r}; create it first"
        return InvalidInput([FieldError(f"{prefix}.campaign", message)])
    visitor = lead_in.anonymous_id.strip() if lead_in.anonymous_id else None
    return Checked(
        prefix=prefix,
        lead_in=lead_in,
        clean=clean,
        campaign=campaign,
        at=lead_in.captured_at or now or utcnow(),
        email_key=pii.email_index(clean.email),
        visitor=visitor or None,
        company_key=quality.company_key(clean.company),
    )


def _process(
    session: Session, pii: Pii, intake: Intake, c: Checked, model: qualification.ActiveModel
) -> s.LeadResult:
    at, lead_in = c.at, c.lead_in
    validation = s.Validation(
        quality_score=c.clean.quality_score,
        problems=list(c.clean.problems),
        transformations=list(c.clean.transformations),
    )
    contact, dedup = _deduplicate(session, pii, intake, c)
    intake.person(session, contact)
    _record_consent(session, intake, contact, lead_in, at)
    touchpoints.record(
        session,
        contact=contact,
        campaign=c.campaign,
        channel=c.campaign.channel if c.campaign else "web",
        kind=lead_in.capture_type.value,
        occurred_at=at,
    )
    intake.add_activities(contact.id, [Activity(lead_in.capture_type.value, at, None)])
    if contact.stage in (Stage.ANONYMOUS, Stage.DISQUALIFIED):
        reason = f"captured by {lead_in.capture_type.value}"
        contacts.set_stage(
            session, contact=contact, to_stage=Stage.LEAD, reason=reason, source="capture", at=at
        )
    fit = qualification.fit_facts(session, contact)
    rescored = qualification.store_score(
        session,
        contact,
        intake.scores.get(contact.id),
        fit,
        intake.activities[contact.id],
        trigger=lead_in.capture_type.value,
        now=at,
        model=model,
    )
    intake.scores[contact.id] = rescored.stored
    lead = _lead_for(session, intake, contact, at=at)
    scoring = _scoring_step(contact, rescored)
    steps: dict[str, Any] = {
        "validation": validation.model_dump(mode="json"),
        "deduplication": dedup.model_dump(mode="json"),
        "scoring": scoring.model_dump(mode="json"),
    }
    account = intake.account_of(session, contact)
    tenant = account.domain if account is not None else contacts.NO_ACCOUNT
    event = outbox.publish(
        session,
        topic=TOPIC,
        event_type="lead.processed",
        tenant_id=tenant,
        payload={"lead_id": str(lead.id), "contact_id": str(contact.id), "steps": steps},
        occurred_at=at,
    )
    crm = s.CrmHandoff(lead_id=lead.id, status="queued_for_crm_sync", event_id=event.event_id)
    assigned = _assignment_step(session, intake, lead, assignment.LeadFacts.of(fit), tenant, at)
    follow_up = _follow_up_step(session, intake, lead, contact, lead_in, tenant, at)
    steps |= {
        "crm": crm.model_dump(mode="json"),
        "assignment": assigned.model_dump(mode="json"),
        "follow_up": follow_up.model_dump(mode="json"),
    }
    add_row_later(
        session,
        LeadCapture,
        {
            "lead_id": lead.id,
            "capture_type": lead_in.capture_type.value,
            "campaign_id": c.campaign.id if c.campaign else None,
            "captured_at": at,
            "steps": steps,
        },
    )
    answer = s.LeadSteps(
        validation=validation,
        deduplication=dedup,
        scoring=scoring,
        crm=crm,
        assignment=assigned,
        follow_up=follow_up,
    )
    return s.LeadResult(lead_id=lead.id, contact_id=contact.id, steps=answer)


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
        company_key=quality.company_key(clean.company),
        job_title=clean.job_title,
        country=clean.country,
        lead_source=clean.source,
        quality_score=clean.quality_score,
    )


def _deduplicate(
    session: Session, pii: Pii, intake: Intake, c: Checked
) -> tuple[Contact, s.Deduplication]:
    """The profile this lead belongs to and what happened to find it."""
    account = _account(session, intake, c)
    by_email = intake.by_email.get(c.email_key)
    by_visitor = intake.by_visitor.get(c.visitor) if c.visitor else None
    contact, outcome, merged = _resolve(session, pii, intake, c, account, by_email, by_visitor)
    if outcome != "created":
        profile = replace(_profile(c.clean), email=None)
        contacts.update_profile(session, pii, contact=contact, profile=profile)
        contacts.seal_email(pii, contact, c.clean.email)
    if outcome == "identified":
        contacts.add_identity(session, pii, contact=contact, kind="email", value=c.clean.email)
        intake.by_email[c.email_key] = contact
    if c.visitor and by_visitor is None:
        contacts.add_identity(session, pii, contact=contact, kind="anonymous", value=c.visitor)
        intake.by_visitor[c.visitor] = contact
    if contact.account_id is None and account is not None:
        contact.account_id = account.id
    flagged = (
        _flag_fuzzy_duplicates(session, pii, intake, contact, c) if outcome == "created" else []
    )
    found = s.Deduplication(
        outcome=outcome,
        contact_id=contact.id,
        merged_contact_ids=merged,
        possible_duplicates=flagged,
    )
    return contact, found


def _resolve(
    session: Session,
    pii: Pii,
    intake: Intake,
    c: Checked,
    account: Account | None,
    by_email: Contact | None,
    by_visitor: Contact | None,
) -> tuple[Contact, str, list[uuid.UUID]]:
    """The profile and how it was found: created, updated (same e-mail), identified (an
    anonymous visitor) or merged (the e-mail and the visitor were two profiles)."""
    if by_email is None and by_visitor is None:
        contact = contacts.create(
            session,
            pii,
            profile=_profile(c.clean),
            stage=Stage.LEAD,
            account_id=account.id if account else None,
            source="capture",
            at=c.at,
        )
        intake.created(contact, c.email_key)
        return contact, "created", []
    if by_email is not None and by_visitor is not None and by_email.id != by_visitor.id:
        older, newer = sorted((by_email, by_visitor), key=lambda p: (p.created_at, str(p.id)))
        reason = "anonymous visitor identified by a form"
        survivor = contacts.merge(session, survivor=older, absorbed=newer, reason=reason)
        intake.merged(survivor, newer)
        return survivor, "merged", [newer.id]
    if by_email is not None:
        return by_email, "updated", []
    assert by_visitor is not None
    return by_visitor, "identified", []


def _account(session: Session, intake: Intake, c: Checked) -> Account | None:
    """The company's account (read or created up front), its gaps filled from this lead."""
    if c.clean.company_domain is None:
        return None
    account = intake.accounts[c.clean.company_domain]
    lead_in = c.lead_in
    contacts.fill_account(
        session,
        account,
        industry=lead_in.industry.strip().lower()[:100] if lead_in.industry else None,
        employee_count=lead_in.employee_count,
        country=c.clean.country,
    )
    return account


def _flag_fuzzy_duplicates(
    session: Session, pii: Pii, intake: Intake, contact: Contact, c: Checked
) -> list[s.PossibleDuplicate]:
    """Same normalised company, similar name: a person to review (seed 002
    ``duplicate_detection: email+company_combination``; a different e-mail at the same
    company may still be the same person, or a colleague — a human decides). The new
    profile then joins the colleagues later leads of the batch are compared with."""
    if not c.company_key:
        return []
    colleagues = intake.colleagues_of(session, c.company_key)
    flagged = []
    for other in colleagues[:COLLEAGUES_COMPARED]:
        first_name, last_name = intake.name_of(pii, other)
        if other.merged_into_id is not None or first_name is None or other.company is None:
            continue
        similarity = quality.likely_duplicate(c.clean, _Named(first_name, last_name, other.company))
        if similarity is not None:
            review = {"contact_id": contact.id, "candidate_id": other.id, "similarity": similarity}
            add_row_later(session, DuplicateReview, review)
            flagged.append(s.PossibleDuplicate(contact_id=other.id, similarity=similarity))
    colleagues.append(contact)
    return flagged


def _record_consent(
    session: Session, intake: Intake, contact: Contact, lead_in: s.LeadCreate, at: datetime
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
            intake.consents[contact.id][purpose] = granted


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


def _lead_for(session: Session, intake: Intake, contact: Contact, *, at: datetime) -> Lead:
    """The person's lead record, created at their first capture."""
    lead = intake.leads.get(contact.id)
    if lead is None:
        lead = Lead(id=new_id(), contact_id=contact.id, created_at=at, capture_count=0)
        add_later(session, lead)
        intake.leads[contact.id] = lead
        intake.sequences[lead.id] = []
    lead.capture_count += 1
    lead.crm_status = "pending"
    return lead


def _assignment_step(
    session: Session,
    intake: Intake,
    lead: Lead,
    facts: assignment.LeadFacts,
    tenant: str,
    at: datetime,
) -> s.AssignmentOut:
    team = intake.team
    owner = team.reps.get(lead.owner_rep_id) if lead.owner_rep_id else None
    if owner is not None and owner.active:
        territory = team.territory(lead.territory_id)
        return s.AssignmentOut(
            rep_id=owner.id,
            rep_name=owner.name,
            territory=territory.name if territory else None,
            queued=False,
            reason="already owned by an active rep; kept",
        )
    made = assignment.assign(session, lead=lead, facts=facts, team=team)
    return assignment.announce(session, lead, made, tenant, at)


def _follow_up_step(
    session: Session,
    intake: Intake,
    lead: Lead,
    contact: Contact,
    lead_in: s.LeadCreate,
    tenant: str,
    at: datetime,
) -> s.FollowUp:
    """A nurture (or, for an MQL, sales-outreach) sequence needs e-mail marketing consent
    on record and fewer than three sequences in the seven days before; otherwise the rep
    gets a task and no marketing e-mail goes out."""
    sequence: str | None = None
    if intake.consents[contact.id].get("email_marketing") is not True:
        reason = "no e-mail marketing consent on record: rep task only, no marketing e-mail"
    elif intake.sequences_before(lead, at) >= WEEKLY_MARKETING_CAP:
        reason = (
            f"frequency cap: {WEEKLY_MARKETING_CAP} marketing sequences in 7 days already "
            "(seed 002 frequency_capping): rep task only"
        )
    else:
        kind = "sales-outreach" if contact.stage == Stage.MQL else "nurture"
        sequence = f"{kind}:{lead_in.capture_type.value}"
        reason = "e-mail marketing consent on record"
        intake.sequences.setdefault(lead.id, []).append(at)
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
