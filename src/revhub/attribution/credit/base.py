"""What a model returns, the parameters models take, and the step rule-based models share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from revhub.attribution.journeys import Floats, Journeys


@dataclass(frozen=True)
class Params:
    """Model parameters with the issue's defaults: U-shaped 40/20/40, a 7-day half-life,
    order-1 Markov, exact Shapley up to 15 groups and 2,000 sampled orderings beyond."""

    position_weights: tuple[float, float, float] = (0.4, 0.2, 0.4)
    half_life_days: float = 7.0
    markov_order: int = 1
    shapley_exact_limit: int = 15
    shapley_samples: int = 2000
    seed: int = 0


@dataclass(frozen=True, eq=False)
class Credit:
    """Conversions and revenue credited to each group (arrays indexed like
    ``Journeys.groups``), the per-touch shares of rule-based models (None for data-driven
    ones) and what a data-driven model wants to show of its working."""

    conversions: Floats
    revenue: Floats
    touch_shares: Floats | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def normalised(journeys: Journeys, raw: Floats) -> Floats:
    """Per-touch weights scaled so each journey's touches sum to 1."""
    totals = np.bincount(journeys.journey, weights=raw, minlength=journeys.count)
    return raw / totals[journeys.journey]


def from_touch_shares(journeys: Journeys, shares: Floats) -> Credit:
    """Credit from per-touch shares of their journey (each journey's shares sum to 1): a
    touch earns its share of its journey's conversion and of its value."""
    converted = journeys.converted[journeys.journey]
    return Credit(
        conversions=journeys.per_group(shares * converted),
        revenue=journeys.per_group(shares * journeys.value[journeys.journey]),
        touch_shares=shares,
    )
