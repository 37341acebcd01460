"""Time decay: a touch weighs 2^(-age / half-life), age in days measured back from the deal's
close date (from its creation date for open pipeline; from the last touch for a journey
without a deal); a journey's weights are scaled to sum to 1. Default half-life: 7 days.

Within a journey only the touches' ages relative to each other matter (the anchor cancels
when the weights are scaled), so the anchor names what a weight means, not the shares. The
exponents are shifted by each journey's largest before exponentiating, so touches years old
do not all underflow to zero.
"""

from __future__ import annotations

import numpy as np

from revhub.attribution.credit.base import Credit, Params, from_touch_shares, normalised
from revhub.attribution.journeys import Journeys


def credit(journeys: Journeys, params: Params) -> Credit:
    if params.half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    last = journeys.at[journeys.starts + journeys.lengths - 1]
    anchor = np.where(
        np.isfinite(journeys.closed_at),
        journeys.closed_at,
        np.where(np.isfinite(journeys.opened_at), journeys.opened_at, last),
    )
    exponent = -(anchor[journeys.journey] - journeys.at) / params.half_life_days
    top = np.maximum.reduceat(exponent, journeys.starts) if exponent.size else exponent
    raw = np.exp2(exponent - top[journeys.journey])
    return from_touch_shares(journeys, normalised(journeys, raw))
