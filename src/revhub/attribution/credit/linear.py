"""Linear: each of a journey's n touches earns 1/n, so a group touched k times earns k/n."""

from __future__ import annotations

from revhub.attribution.credit.base import Credit, Params, from_touch_shares
from revhub.attribution.journeys import Journeys


def credit(journeys: Journeys, params: Params) -> Credit:
    return from_touch_shares(journeys, 1.0 / journeys.length)
