"""The lifecycle (seed 004 "Prospect journey"): anonymous → lead → MQL → SQL → opportunity →
customer → advocate, plus the two exits, disqualified and churned.

Rules a revenue team expects: a person moves forward (skipping is fine: sales may accept a
lead straight to SQL); anyone can be disqualified, and a disqualified person can be recycled
to lead; a customer can churn and be won back. Automatic rules (scoring) only ever move
forward, so a score that decays never demotes an MQL the sales team is working.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    ANONYMOUS = "anonymous"
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    ADVOCATE = "advocate"
    DISQUALIFIED = "disqualified"
    CHURNED = "churned"


FUNNEL: tuple[Stage, ...] = (
    Stage.ANONYMOUS,
    Stage.LEAD,
    Stage.MQL,
    Stage.SQL,
    Stage.OPPORTUNITY,
    Stage.CUSTOMER,
    Stage.ADVOCATE,
)
RANK = {stage: i for i, stage in enumerate(FUNNEL)}
EXTRA_MOVES = {
    (Stage.DISQUALIFIED, Stage.LEAD),
    (Stage.CHURNED, Stage.CUSTOMER),
    (Stage.ADVOCATE, Stage.CHURNED),
    (Stage.CUSTOMER, Stage.CHURNED),
}


def can_move(from_stage: Stage, to_stage: Stage) -> bool:
    if from_stage == to_stage:
        return False
    if to_stage == Stage.DISQUALIFIED:
        return from_stage not in (Stage.CUSTOMER, Stage.ADVOCATE, Stage.CHURNED)
    if (from_stage, to_stage) in EXTRA_MOVES:
        return True
    if from_stage in RANK and to_stage in RANK:
        return RANK[to_stage] > RANK[from_stage]
    return False


def is_ahead(stage: Stage, of: Stage) -> bool:
    """``stage`` is further down the funnel than ``of`` (exits count as neither)."""
    return stage in RANK and of in RANK and RANK[stage] > RANK[of]


def furthest(a: Stage, b: Stage) -> Stage:
    """The stage a merged profile keeps: the further of the two in the funnel."""
    if a in RANK and b in RANK:
        return a if RANK[a] >= RANK[b] else b
    return a if a not in RANK else b
