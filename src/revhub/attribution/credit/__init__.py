"""The attribution models: each module states its rule and returns a ``Credit``.

Every model shares each converting journey's one conversion and its value among the groups
touched in it, so credit summed over groups equals the conversions and revenue of the
journeys (the consistency the API and the property tests rely on). Rule-based models also
return the per-touch shares, which split a campaign's credit by touchpoint type.
"""

from __future__ import annotations

from collections.abc import Callable

from revhub.attribution.credit import (
    first_touch,
    last_touch,
    linear,
    markov,
    milestones,
    position_based,
    shapley,
    time_decay,
)
from revhub.attribution.credit.base import Credit, Params, from_touch_shares
from revhub.attribution.journeys import Journeys

__all__ = ["MODELS", "RULE_BASED", "Credit", "Params", "attribute", "from_touch_shares"]

Model = Callable[[Journeys, Params], Credit]

MODELS: dict[str, Model] = {
    "first_touch": first_touch.credit,
    "last_touch": last_touch.credit,
    "linear": linear.credit,
    "position_based": position_based.credit,
    "time_decay": time_decay.credit,
    "w_shaped": milestones.w_shaped,
    "full_path": milestones.full_path,
    "markov": markov.credit,
    "shapley": shapley.credit,
}
RULE_BASED = (
    "first_touch",
    "last_touch",
    "linear",
    "position_based",
    "time_decay",
    "w_shaped",
    "full_path",
)


def attribute(name: str, journeys: Journeys, params: Params | None = None) -> Credit:
    """Run model ``name`` on ``journeys``."""
    return MODELS[name](journeys, params or Params())
