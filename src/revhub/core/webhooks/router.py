"""Admin endpoints: webhook subscriptions and the state of each delivery."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, status

from revhub.core.auth.principal import Principal
from revhub.core.auth.scopes import ADMIN
from revhub.core.crypto import SecretBox
from revhub.core.http import DbSession, hub_of, require
from revhub.core.pagination import MAX_LIMIT, cursor_field, next_after
from revhub.core.responses import PROTECTED, problems
from revhub.core.schemas import Page
from revhub.core.webhooks import schemas
from revhub.core.webhooks import service as webhooks
from revhub.core.webhooks.jobs import secret_box

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=PROTECTED)
Admin = Annotated[Principal, require(ADMIN)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def _box(request: Request) -> SecretBox:
    return secret_box(hub_of(request).settings)


@router.post(
    "/subscriptions",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.SubscriptionCreated,
)
def create_subscription(
    body: schemas.SubscriptionCreate, session: DbSession, request: Request, principal: Admin
) -> schemas.SubscriptionCreated:
    """Subscribe a URL to topics (and optionally event types); the secret is shown once."""
    subscription, secret = webhooks.create_subscription(
        session, sub_in=body, created_by=principal.name, box=_box(request)
    )
    request.state.resource_id = str(subscription.id)
    data = schemas.Subscription.model_validate(subscription).model_dump()
    return schemas.SubscriptionCreated.model_validate({**data, "secret": secret})


@router.get(
    "/subscriptions", response_model=Page[schemas.Subscription], dependencies=[require(ADMIN)]
)
def list_subscriptions(
    session: DbSession, limit: Limit = 100, cursor: str | None = None
) -> Page[schemas.Subscription]:
    """Subscriptions, newest first."""
    after = cursor_field(cursor, "after", uuid.UUID)
    found = webhooks.list_subscriptions(session, after=after, limit=limit)
    return Page(
        items=[schemas.Subscription.model_validate(s) for s in found],
        next_cursor=next_after(found, limit),
    )


@router.get(
    "/subscriptions/{subscription_id}",
    response_model=schemas.Subscription,
    responses=problems(404),
    dependencies=[require(ADMIN)],
)
def get_subscription(subscription_id: uuid.UUID, session: DbSession) -> schemas.Subscription:
    """One subscription."""
    found = webhooks.get_subscription(session, subscription_id=subscription_id)
    return schemas.Subscription.model_validate(found)


@router.delete(
    "/subscriptions/{subscription_id}",
    response_model=schemas.Subscription,
    responses=problems(404),
    dependencies=[require(ADMIN)],
)
def deactivate_subscription(subscription_id: uuid.UUID, session: DbSession) -> schemas.Subscription:
    """Stop sending to this subscription; its deliveries stay listed."""
    found = webhooks.deactivate_subscription(session, subscription_id=subscription_id)
    return schemas.Subscription.model_validate(found)


@router.get(
    "/subscriptions/{subscription_id}/deliveries",
    response_model=Page[schemas.Delivery],
    responses=problems(404),
    dependencies=[require(ADMIN)],
)
def list_deliveries(
    subscription_id: uuid.UUID,
    session: DbSession,
    limit: Limit = 100,
    cursor: str | None = None,
    status: Literal["pending", "succeeded", "dead"] | None = None,
) -> Page[schemas.Delivery]:
    """Deliveries of a subscription, newest first: status, attempts, last response code."""
    after = cursor_field(cursor, "after", uuid.UUID)
    found = webhooks.list_deliveries(
        session, subscription_id=subscription_id, status=status, after=after, limit=limit
    )
    return Page(
        items=[schemas.Delivery.model_validate(d) for d in found],
        next_cursor=next_after(found, limit),
    )


@router.get(
    "/deliveries/{delivery_id}",
    response_model=schemas.Delivery,
    responses=problems(404),
    dependencies=[require(ADMIN)],
)
def get_delivery(delivery_id: uuid.UUID, session: DbSession) -> schemas.Delivery:
    """One delivery."""
    return schemas.Delivery.model_validate(webhooks.get_delivery(session, delivery_id=delivery_id))
