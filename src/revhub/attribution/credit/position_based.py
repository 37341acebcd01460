"""Position-based (U-shaped): one touch earns 100 %; two touches 50/50; three or more give the
first 40 %, the last 40 % and share the middle 20 % equally among the touches between them.

The weights (first, middle, last) are configurable; with two touches the first and last
split in proportion to their weights (50/50 for the default 40/40).
"""

from __future__ import annotations

import numpy as np

from revhub.attribution.credit.base import Credit, Params, from_touch_shares
from revhub.attribution.journeys import Journeys


def credit(journeys: Journeys, params: Params) -> Credit:
    first, middle, last = params.position_weights
    n = journeys.length
    is_first = journeys.position == 0
    is_last = journeys.position == n - 1
    ends = np.where(is_first, first, last) / (first + last)
    shares = np.where(
        n == 1,
        1.0,
        np.where(
            n == 2,
            ends,
            np.where(is_first, first, np.where(is_last, last, middle / np.maximum(n - 2, 1))),
        ),
    )
    return from_touch_shares(journeys, shares)
