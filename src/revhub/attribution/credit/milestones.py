"""Milestone models: W-shaped and full-path.

W-shaped: the first touch, the lead-creation touch and the opportunity-creation touch earn
30 % each; the other touches share the remaining 10 % equally. Full-path adds the closing
touch: the four milestones earn 22.5 % each, the rest share 10 %.

A milestone touch is the journey's last touch at or before that milestone's date (the
person became a lead; the deal was opened; the deal was won). One touch playing several
roles earns each role's weight. Where a journey has no touch outside the milestones, or a
milestone has no touch (the lead came in before the look-back window, the deal is still
open), the weights present are scaled to sum to 1 — so a one-touch journey gives that touch
everything.
"""

from __future__ import annotations

import numpy as np

from revhub.attribution.credit.base import Credit, Params, from_touch_shares, normalised
from revhub.attribution.journeys import Floats, Journeys

REST = 0.10


def _credit(journeys: Journeys, dates: list[Floats], weight: float) -> Credit:
    roles = (journeys.position == 0).astype(float)
    for when in dates:
        roles += journeys.last_touch_by(when)
    plain = roles == 0
    plain_count = np.bincount(journeys.journey, weights=plain, minlength=journeys.count)
    rest = np.where(plain, REST / np.maximum(plain_count[journeys.journey], 1), 0.0)
    return from_touch_shares(journeys, normalised(journeys, roles * weight + rest))


def w_shaped(journeys: Journeys, params: Params) -> Credit:
    return _credit(journeys, [journeys.lead_at, journeys.opened_at], 0.30)


def full_path(journeys: Journeys, params: Params) -> Credit:
    return _credit(journeys, [journeys.lead_at, journeys.opened_at, journeys.closed_at], 0.225)
