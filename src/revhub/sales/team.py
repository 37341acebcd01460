"""Reading what the team acts on: notifications and duplicate reviews (and deciding those)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.core.db import get_or_404
from revhub.core.errors import Conflict
from revhub.core.pagination import newest_first
from revhub.sales.models import DuplicateReview, SalesNotification


def list_notifications(
    session: Session, *, after: uuid.UUID | None, limit: int, rep_id: uuid.UUID | None
) -> Sequence[SalesNotification]:
    query = newest_first(session, SalesNotification, after=after)
    if rep_id is not None:
        query = query.where(SalesNotification.rep_id == rep_id)
    return session.scalars(query.limit(limit)).all()


def list_duplicates(
    session: Session, *, after: uuid.UUID | None, limit: int, status: str
) -> Sequence[DuplicateReview]:
    query = newest_first(session, DuplicateReview, after=after)
    return session.scalars(query.where(DuplicateReview.status == status).limit(limit)).all()


def decide_duplicate(session: Session, *, review_id: uuid.UUID, decision: str) -> DuplicateReview:
    """``merge``: the two become one profile (the older survives); ``dismiss``: not the same."""
    review = get_or_404(session, DuplicateReview, review_id, label="duplicate review")
    if review.status != "open":
        raise Conflict(f"This review is already {review.status}.")
    if decision == "merge":
        a = contacts.get(session, contact_id=review.contact_id)
        b = contacts.get(session, contact_id=review.candidate_id)
        if a.id != b.id:
            older, newer = sorted((a, b), key=lambda c: (c.created_at, str(c.id)))
            contacts.merge(session, survivor=older, absorbed=newer, reason="duplicate review")
    review.status = "merged" if decision == "merge" else "dismissed"
    session.flush()
    return review
