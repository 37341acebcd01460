"""Contacts and accounts over HTTP: read profiles, move stages, record consent and identities."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from sqlalchemy.orm import Session

from revhub.contacts import schemas
from revhub.contacts import service as contacts
from revhub.contacts.models import Contact
from revhub.contacts.pii import Pii, pii_for
from revhub.contacts.stages import Stage
from revhub.core.auth.scopes import read, write
from revhub.core.http import DbSession, hub_of, require
from revhub.core.pagination import MAX_LIMIT, cursor_field, next_after
from revhub.core.responses import PROTECTED, problems
from revhub.core.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["contacts"], responses=PROTECTED)
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
READ = require(read("sales"))
WRITE = require(write("sales"))


def pii_of(request: Request) -> Pii:
    return pii_for(hub_of(request).settings)


def summary(pii: Pii, contact: Contact) -> schemas.ContactSummary:
    person = contacts.read_person(pii, contact)
    return schemas.ContactSummary.model_validate(
        {
            **_columns(contact),
            "email": person.email,
            "first_name": person.first_name,
            "last_name": person.last_name,
        }
    )


def _columns(contact: Contact) -> dict[str, object]:
    names = schemas.ContactSummary.model_fields
    return {n: getattr(contact, n) for n in names if hasattr(contact, n)}


def full_profile(session: Session, pii: Pii, contact: Contact) -> schemas.Contact:
    head = summary(pii, contact).model_dump()
    return schemas.Contact.model_validate(
        {
            **head,
            "phone": pii.open(contact.phone_sealed),
            "identities": [
                {"kind": i.kind, "value": None if i.sealed_value else i.key}
                for i in contacts.identities(session, contact_id=contact.id)
            ],
            "consent": [*contacts.consents(session, contact_id=contact.id).values()],
            "stage_history": [*contacts.stage_history(session, contact_id=contact.id)],
        }
    )


@router.get("/contacts", response_model=Page[schemas.ContactSummary], dependencies=[READ])
def list_contacts(
    session: DbSession,
    request: Request,
    limit: Limit = 100,
    cursor: str | None = None,
    stage: Stage | None = None,
    account_id: uuid.UUID | None = None,
    email: Annotated[str | None, Query(max_length=254)] = None,
) -> Page[schemas.ContactSummary]:
    """Profiles, newest first; ``email`` finds one person exactly (through the blind index)."""
    pii = pii_of(request)
    if email is not None:
        found = contacts.get_by_email(session, pii, email=email)
        return Page(items=[summary(pii, found)] if found else [])
    after = cursor_field(cursor, "after", uuid.UUID)
    rows = contacts.list(session, after=after, limit=limit, stage=stage, account_id=account_id)
    return Page(items=[summary(pii, c) for c in rows], next_cursor=next_after(rows, limit))


@router.get(
    "/contacts/{contact_id}",
    response_model=schemas.Contact,
    responses=problems(404),
    dependencies=[READ],
)
def get_contact(contact_id: uuid.UUID, session: DbSession, request: Request) -> schemas.Contact:
    """One profile with its identities, consent in force and dated stage history; the id of
    a merged-away profile answers with the surviving one."""
    return full_profile(session, pii_of(request), contacts.get(session, contact_id=contact_id))


@router.post(
    "/contacts/{contact_id}/stage",
    response_model=schemas.Contact,
    responses=problems(404, 409),
    dependencies=[WRITE],
)
def change_stage(
    contact_id: uuid.UUID, body: schemas.StageUpdate, session: DbSession, request: Request
) -> schemas.Contact:
    """Move a person through the lifecycle (sales accepting an MQL as SQL, disqualifying…)."""
    contact = contacts.get(session, contact_id=contact_id)
    contacts.set_stage(
        session, contact=contact, to_stage=body.stage, reason=body.reason, source="api"
    )
    return full_profile(session, pii_of(request), contact)


@router.post(
    "/contacts/{contact_id}/consent",
    response_model=schemas.Contact,
    status_code=status.HTTP_201_CREATED,
    responses=problems(404),
    dependencies=[WRITE],
)
def record_consent(
    contact_id: uuid.UUID, body: schemas.ConsentCreate, session: DbSession, request: Request
) -> schemas.Contact:
    """Record a consent decision (grant or withdrawal) for one purpose."""
    contact = contacts.get(session, contact_id=contact_id)
    contacts.record_consent(
        session, contact=contact, purpose=body.purpose, granted=body.granted, source=body.source
    )
    return full_profile(session, pii_of(request), contact)


@router.post(
    "/contacts/{contact_id}/identities",
    response_model=schemas.Contact,
    responses=problems(404),
    dependencies=[WRITE],
)
def add_identity(
    contact_id: uuid.UUID, body: schemas.IdentityCreate, session: DbSession, request: Request
) -> schemas.Contact:
    """Attach an identity; when it already names another profile the two merge."""
    pii = pii_of(request)
    contact = contacts.get(session, contact_id=contact_id)
    survivor = contacts.link_identity(
        session, pii, contact=contact, kind=body.kind, value=body.value
    )
    return full_profile(session, pii, survivor)


@router.get("/accounts", response_model=Page[schemas.Account], dependencies=[READ])
def list_accounts(
    session: DbSession, limit: Limit = 100, cursor: str | None = None
) -> Page[schemas.Account]:
    """Accounts (companies, keyed by domain), newest first."""
    after = cursor_field(cursor, "after", uuid.UUID)
    rows = contacts.list_accounts(session, after=after, limit=limit)
    return Page(
        items=[schemas.Account.model_validate(a) for a in rows], next_cursor=next_after(rows, limit)
    )


@router.get(
    "/accounts/{account_id}",
    response_model=schemas.Account,
    responses=problems(404),
    dependencies=[READ],
)
def get_account(account_id: uuid.UUID, session: DbSession) -> schemas.Account:
    return schemas.Account.model_validate(contacts.get_account(session, account_id=account_id))
