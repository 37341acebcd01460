"""Attribution API under the sales base path (seed 000 ``GET …/sales/attribution/{id}``)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from revhub.attribution import schemas as s
from revhub.attribution import service
from revhub.attribution.credit import Params
from revhub.attribution.sources import Period
from revhub.core.auth.scopes import read
from revhub.core.db import utcnow
from revhub.core.errors import FieldError, InvalidInput
from revhub.core.http import DbSession, require
from revhub.core.responses import PROTECTED, csv_response, problems, wants_csv, with_csv
from revhub.core.schemas import Timestamp

router = APIRouter(
    prefix="/api/v1/integrations/sales/attribution", tags=["attribution"], responses=PROTECTED
)
READ = require(read("sales"))

CSV_COLUMNS = ["key", "name", "model", "attributed_conversions", "attributed_revenue"]
BREAKDOWN_COLUMNS = ["touchpoint_type", "attributed_conversions", "attributed_revenue"]
REPORT_COLUMNS = [
    "key",
    "name",
    "attributed_conversions",
    "attributed_revenue",
    "attributed_customers",
    "average_deal_size",
    "confidence_score",
]


def ask(
    start: Annotated[
        Timestamp | None,
        Query(alias="from", description="Inclusive; default `to` - 365 days"),
    ] = None,
    end: Annotated[
        Timestamp | None, Query(alias="to", description="Exclusive; default next UTC midnight")
    ] = None,
    outcome: Annotated[
        s.Outcome, Query(description="`won`: closed-won revenue; `pipeline`: open deals")
    ] = s.Outcome.WON,
    scope: Annotated[
        s.Scope, Query(description="`account`: every contact of the buying account counts")
    ] = s.Scope.CONTACT,
    lookback_days: Annotated[
        int, Query(ge=0, le=3650, description="Days before a deal opened; 0 switches it off")
    ] = 90,
    currency: Annotated[
        str | None,
        Query(pattern="^[A-Z]{3}$", description="Default: the currency of most deals"),
    ] = None,
    half_life_days: Annotated[float, Query(gt=0, le=3650, description="time_decay")] = 7.0,
    markov_order: Annotated[int, Query(ge=1, le=3, description="markov")] = 1,
    position_weights: Annotated[
        str,
        Query(
            pattern=r"^\d+(\.\d+)?,\d+(\.\d+)?,\d+(\.\d+)?$",
            description="position_based: first,middle,last percentages adding up to 100",
        ),
    ] = "40,20,40",
) -> tuple[Period, Params]:
    """The period and model parameters every attribution route takes."""
    first, middle, last = (float(x) for x in position_weights.split(","))
    if abs(first + middle + last - 100) > 1e-9 or first + last == 0:
        message = "the three weights must add up to 100, with first + last above 0"
        raise InvalidInput([FieldError("query.position_weights", message)])
    start, end = service.default_period(start, end, now=utcnow())
    period = Period(
        start=start,
        end=end,
        outcome=outcome.value,
        scope=scope.value,
        lookback_days=lookback_days or None,
        currency=currency,
    )
    params = Params(
        position_weights=(first / 100, middle / 100, last / 100),
        half_life_days=half_life_days,
        markov_order=markov_order,
    )
    return period, params


Asked = Annotated[tuple[Period, Params], Depends(ask)]
Model = Annotated[s.Model, Query(description="The attribution model; the README states each rule")]
GroupBy = Annotated[s.GroupBy, Query(description="What the credit is reported by")]


@router.get(
    "",
    response_model=s.Report,
    responses={
        **with_csv("Credit per group; `Accept: text/csv`: one row per group"),
        **problems(422),
    },
    dependencies=[READ],
)
def get_attribution(
    session: DbSession,
    request: Request,
    asked: Asked,
    model: Model = s.Model.LINEAR,
    group_by: GroupBy = s.GroupBy.CAMPAIGN,
) -> s.Report | Response:
    """Every campaign's (channel's, touchpoint type's) credit under one model for a period,
    with the totals it adds up to and the model's working."""
    period, params = asked
    question = service.Ask(replace(period, group_by=group_by.value), model.value, params)
    body = service.report(session, question)
    if wants_csv(request):
        return csv_response(body["items"], REPORT_COLUMNS, f"attribution-{model.value}.csv")
    return s.Report.model_validate(body)


@router.get(
    "/compare",
    response_model=s.Compare,
    responses={**with_csv("One row per group and model"), **problems(422)},
    dependencies=[READ],
)
def compare_models(
    session: DbSession, request: Request, asked: Asked, group_by: GroupBy = s.GroupBy.CAMPAIGN
) -> s.Compare | Response:
    """Every model's credit per group, side by side."""
    period, params = asked
    body = service.compare(
        session, service.Ask(replace(period, group_by=group_by.value), params=params)
    )
    if wants_csv(request):
        rows = [
            {"key": i["key"], "name": i["name"], "model": name, **figures}
            for i in body["items"]
            for name, figures in i["models"].items()
        ]
        return csv_response(rows, CSV_COLUMNS, "attribution-compare.csv")
    return s.Compare.model_validate(body)


@router.get(
    "/{campaign_id}",
    response_model=s.RevenueAttribution,
    responses={**with_csv("One row per touchpoint type"), **problems(404, 422)},
    dependencies=[READ],
)
def get_campaign_attribution(
    campaign_id: uuid.UUID,
    session: DbSession,
    request: Request,
    asked: Asked,
    model: Model = s.Model.LINEAR,
) -> s.RevenueAttribution | Response:
    """Seed 002 ``RevenueAttribution`` of one campaign: its attributed revenue, split by
    touchpoint type, the model, a confidence score; plus attributed conversions and
    customers and the average deal size."""
    period, params = asked
    body = service.campaign_attribution(
        session, service.Ask(period, model.value, params), campaign_id=campaign_id
    )
    if wants_csv(request):
        return csv_response(
            body["attribution_breakdown"], BREAKDOWN_COLUMNS, f"attribution-{campaign_id}.csv"
        )
    return s.RevenueAttribution.model_validate(body)
