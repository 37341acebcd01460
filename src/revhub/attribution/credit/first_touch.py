"""First touch: the journey's earliest touch earns the whole conversion and its value."""

from __future__ import annotations

from revhub.attribution.credit.base import Credit, Params, from_touch_shares
from revhub.attribution.journeys import Journeys


def credit(journeys: Journeys, params: Params) -> Credit:
    return from_touch_shares(journeys, (journeys.position == 0).astype(float))
