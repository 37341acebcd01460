"""Last touch: the journey's latest touch (before the deal, within the window) earns it all."""

from __future__ import annotations

from revhub.attribution.credit.base import Credit, Params, from_touch_shares
from revhub.attribution.journeys import Journeys


def credit(journeys: Journeys, params: Params) -> Credit:
    return from_touch_shares(journeys, (journeys.position == journeys.length - 1).astype(float))
