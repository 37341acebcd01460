"""The attribution models against hand-worked journeys, their documented rules and an
independent naive reference (``tests/attribution/reference.py``).

Hand-computed answers are fractions with the arithmetic beside them. Groups are named after
channels (ads, email, event, search, webinar); times are days.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revhub.attribution.credit import MODELS, RULE_BASED, Credit, Params, attribute
from revhub.attribution.journeys import Journeys
from tests.attribution import reference
from tests.attribution.reference import Journey, Touch

F = Fraction
NAMES = ("ads", "email", "event", "search", "social", "webinar")
PROPERTY = settings(max_examples=60, deadline=None)


# --- factories --------------------------------------------------------------------------------


def deal(
    *touches: Touch,
    value: float = 100.0,
    lead: float | None = None,
    opened: float | None = None,
    closed: float | None = None,
) -> Journey:
    """A converting journey (a won deal) worth ``value``."""
    return Journey(list(touches), True, value, lead, opened, closed)


def no_deal(*touches: Touch, lead: float | None = None, opened: float | None = None) -> Journey:
    """A journey that did not convert (no deal, or one still open)."""
    return Journey(list(touches), False, 0.0, lead, opened, None)


def groups_of(journeys: Sequence[Journey]) -> tuple[str, ...]:
    return tuple(sorted({group for j in journeys for group, _ in j.touches}))


def to_engine(journeys: Sequence[Journey], groups: Sequence[str] | None = None) -> Journeys:
    """The engine's journeys, the touches handed over last-first so that ``build`` has to
    sort them."""
    names = tuple(groups) if groups is not None else groups_of(journeys)
    index = {name: i for i, name in enumerate(names)}
    flat = [(j, index[g], at) for j, journey in enumerate(journeys) for g, at in journey.touches]
    flat.reverse()

    def dates(of: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        raw = [getattr(journey, of) for journey in journeys]
        return np.array([np.nan if x is None else x for x in raw], dtype=np.float64)

    return Journeys.build(
        journey=np.array([j for j, _, _ in flat], dtype=np.int64),
        group=np.array([g for _, g, _ in flat], dtype=np.int64),
        at=np.array([at for _, _, at in flat], dtype=np.float64),
        converted=np.array([j.converted for j in journeys], dtype=np.bool_),
        value=np.array([j.value for j in journeys], dtype=np.float64),
        groups=names,
        lead_at=dates("lead_at"),
        opened_at=dates("opened_at"),
        closed_at=dates("closed_at"),
    )


def run(
    name: str,
    journeys: Sequence[Journey],
    params: Params | None = None,
    groups: Sequence[str] | None = None,
) -> tuple[Journeys, Credit]:
    engine = to_engine(journeys, groups)
    return engine, attribute(name, engine, params)


def conversions(
    name: str, journeys: Sequence[Journey], params: Params | None = None
) -> dict[str, float]:
    engine, credit = run(name, journeys, params)
    return dict(zip(engine.groups, credit.conversions.tolist(), strict=True))


def revenue(
    name: str, journeys: Sequence[Journey], params: Params | None = None
) -> dict[str, float]:
    engine, credit = run(name, journeys, params)
    return dict(zip(engine.groups, credit.revenue.tolist(), strict=True))


def touch_shares(
    name: str, journeys: Sequence[Journey], params: Params | None = None
) -> list[list[float]]:
    """Each journey's per-touch shares, touches by time."""
    engine, credit = run(name, journeys, params)
    return split_by_journey(engine, credit)


def split_by_journey(engine: Journeys, credit: Credit) -> list[list[float]]:
    assert credit.touch_shares is not None
    shares = credit.touch_shares.tolist()
    return [
        shares[start : start + length]
        for start, length in zip(engine.starts.tolist(), engine.lengths.tolist(), strict=True)
    ]


def exactly(expected: Mapping[str, Fraction | int]) -> Any:
    """A hand-computed answer, compared to 1e-12."""
    return pytest.approx({k: float(v) for k, v in expected.items()}, rel=1e-12, abs=1e-12)


def exact_list(expected: Sequence[Sequence[Fraction | int]]) -> list[Any]:
    return [pytest.approx([float(x) for x in row], rel=1e-12, abs=1e-12) for row in expected]


def close(expected: Mapping[str, float] | Sequence[float]) -> Any:
    """Engine against reference: equal to 1e-9."""
    return pytest.approx(expected, rel=1e-9, abs=1e-9)


# --- first and last touch ---------------------------------------------------------------------

TOUCH_WORLD = [
    deal(("ads", 0), ("email", 1), ("event", 2), value=100),
    deal(("ads", 3), ("email", 0), value=50),  # listed out of order: email came first
    no_deal(("event", 0), ("search", 5)),
]


def test_first_touch_gives_the_earliest_touch_by_time_everything() -> None:
    # deal 1 starts with ads (100), deal 2 with email at day 0 (50); the no-deal earns nothing
    assert conversions("first_touch", TOUCH_WORLD) == exactly(
        {"ads": 1, "email": 1, "event": 0, "search": 0}
    )
    assert revenue("first_touch", TOUCH_WORLD) == exactly(
        {"ads": 100, "email": 50, "event": 0, "search": 0}
    )


def test_last_touch_gives_the_latest_touch_by_time_everything() -> None:
    # deal 1 ends with event (100), deal 2 with ads at day 3 (50)
    assert conversions("last_touch", TOUCH_WORLD) == exactly(
        {"ads": 1, "email": 0, "event": 1, "search": 0}
    )
    assert revenue("last_touch", TOUCH_WORLD) == exactly(
        {"ads": 50, "email": 0, "event": 100, "search": 0}
    )
    assert touch_shares("last_touch", TOUCH_WORLD) == exact_list([[0, 0, 1], [0, 1], [0, 1]])


# --- linear -----------------------------------------------------------------------------------


def test_linear_gives_a_group_touched_k_of_n_times_k_over_n() -> None:
    world = [
        deal(("ads", 0), ("email", 1), ("ads", 2), ("ads", 3), value=120),  # ads 3/4, email 1/4
        deal(("email", 0), ("event", 1), value=60),  # 1/2 each
        no_deal(("ads", 0), ("event", 1)),
    ]
    assert conversions("linear", world) == exactly(
        {
            "ads": F(3, 4),
            "email": F(1, 4) + F(1, 2),  # = 3/4
            "event": F(1, 2),
        }
    )
    assert revenue("linear", world) == exactly(
        {
            "ads": F(3, 4) * 120,  # = 90
            "email": F(1, 4) * 120 + F(1, 2) * 60,  # = 30 + 30 = 60
            "event": F(1, 2) * 60,  # = 30
        }
    )
    assert touch_shares("linear", world) == exact_list(
        [[F(1, 4)] * 4, [F(1, 2)] * 2, [F(1, 2)] * 2]
    )


# --- position-based ---------------------------------------------------------------------------


def test_position_based_splits_two_touches_50_50_and_five_touches_40_20_40() -> None:
    world = [
        deal(("ads", 0), ("email", 1), value=80),  # 1/2 each
        # ads 40 %, search 40 %, the three touches between share 20 %: 1/15 each
        deal(("ads", 0), ("email", 1), ("event", 2), ("email", 3), ("search", 4), value=100),
    ]
    assert touch_shares("position_based", world) == exact_list(
        [
            [F(1, 2), F(1, 2)],
            [F(2, 5), F(1, 15), F(1, 15), F(1, 15), F(2, 5)],  # 20/100 / 3 = 1/15
        ]
    )
    assert conversions("position_based", world) == exactly(
        {
            "ads": F(1, 2) + F(2, 5),  # = 9/10
            "email": F(1, 2) + 2 * F(1, 15),  # = 19/30
            "event": F(1, 15),
            "search": F(2, 5),
        }
    )
    assert revenue("position_based", world) == exactly(
        {
            "ads": 80 * F(1, 2) + 100 * F(2, 5),  # = 40 + 40 = 80
            "email": 80 * F(1, 2) + 100 * F(2, 15),  # = 40 + 40/3 = 160/3
            "event": 100 * F(1, 15),  # = 20/3
            "search": 100 * F(2, 5),  # = 40
        }
    )


def test_position_based_two_touches_split_by_the_end_weights() -> None:
    params = Params(position_weights=(0.6, 0.2, 0.2))
    world = [deal(("ads", 0), ("email", 1)), deal(("ads", 0), ("event", 1), ("email", 2))]
    # two touches: 0.6 / (0.6 + 0.2) = 3/4 and 0.2 / 0.8 = 1/4; three: 0.6, 0.2, 0.2 as given
    assert touch_shares("position_based", world, params) == exact_list(
        [[F(3, 4), F(1, 4)], [F(3, 5), F(1, 5), F(1, 5)]]
    )


def test_position_based_single_touch_earns_everything() -> None:
    assert touch_shares("position_based", [deal(("ads", 0))]) == exact_list([[1]])


# --- time decay -------------------------------------------------------------------------------


def test_time_decay_ages_touches_from_the_close_date() -> None:
    # closed day 14 (the open date, day 10, is ignored): ages 14 and 7 with a 7-day half-life
    # weigh 2^-2 = 1/4 and 2^-1 = 1/2, so the shares are (1/4)/(3/4) = 1/3 and 2/3
    world = [deal(("ads", 0), ("email", 7), value=90, opened=10, closed=14)]
    assert touch_shares("time_decay", world) == exact_list([[F(1, 3), F(2, 3)]])
    assert revenue("time_decay", world) == exactly({"ads": 30, "email": 60})  # 90/3, 90*2/3


def test_time_decay_ages_open_pipeline_from_the_open_date() -> None:
    # opened day 21, not closed: ages 21 and 7 weigh 2^-3 = 1/8 and 2^-1 = 1/2,
    # shares (1/8)/(5/8) = 1/5 and (1/2)/(5/8) = 4/5
    world = [no_deal(("event", 0), ("ads", 14), opened=21)]
    assert touch_shares("time_decay", world) == exact_list([[F(1, 5), F(4, 5)]])
    assert conversions("time_decay", world) == exactly({"ads": 0, "event": 0})


def test_time_decay_ages_a_journey_without_a_deal_from_its_last_touch() -> None:
    # last touch day 14: ages 14, 7, 0 weigh 1/4, 1/2, 1 (sum 7/4): shares 1/7, 2/7, 4/7
    world = [no_deal(("email", 0), ("event", 7), ("search", 14))]
    assert touch_shares("time_decay", world) == exact_list([[F(1, 7), F(2, 7), F(4, 7)]])


def test_time_decay_half_life_parameter() -> None:
    # half-life 14: ages 14 and 0 weigh 1/2 and 1: shares 1/3, 2/3
    world = [deal(("ads", 0), ("email", 14), closed=14)]
    assert touch_shares("time_decay", world, Params(half_life_days=14)) == exact_list(
        [[F(1, 3), F(2, 3)]]
    )


def test_time_decay_many_journeys() -> None:
    world = [
        deal(("ads", 0), ("email", 7), value=90, closed=14),  # 1/3, 2/3 (as above)
        deal(("email", 0), ("ads", 7), ("event", 14), value=70, closed=14),  # 1/7, 2/7, 4/7
        no_deal(("event", 0), ("ads", 14), opened=21),  # no credit
    ]
    assert conversions("time_decay", world) == exactly(
        {
            "ads": F(1, 3) + F(2, 7),  # = 7/21 + 6/21 = 13/21
            "email": F(2, 3) + F(1, 7),  # = 14/21 + 3/21 = 17/21
            "event": F(4, 7),
        }
    )
    assert revenue("time_decay", world) == exactly(
        {
            "ads": 90 * F(1, 3) + 70 * F(2, 7),  # = 30 + 20 = 50
            "email": 90 * F(2, 3) + 70 * F(1, 7),  # = 60 + 10 = 70
            "event": 70 * F(4, 7),  # = 40
        }
    )


def test_time_decay_survives_touches_too_old_to_weigh_anything_in_floating_point() -> None:
    # ages 20007 and 20000 days: 2^-2858 underflows to 0, but the ratio is still 2^-1 : 1,
    # so the shares are 1/3 and 2/3
    world = [deal(("ads", 0), ("email", 7), closed=20_007)]
    assert touch_shares("time_decay", world) == exact_list([[F(1, 3), F(2, 3)]])


# --- W-shaped and full path -------------------------------------------------------------------

FOUR_TOUCHES = (("ads", 0.0), ("email", 5.0), ("event", 10.0), ("search", 15.0))


def test_w_shaped_gives_each_milestone_30_and_the_rest_10() -> None:
    # first = ads, lead (day 6) = email, opportunity (day 15, inclusive) = search;
    # event and webinar share 10 %
    world = [deal(*FOUR_TOUCHES, ("webinar", 20), lead=6, opened=15)]
    assert touch_shares("w_shaped", world) == exact_list(
        [[F(3, 10), F(3, 10), F(1, 20), F(3, 10), F(1, 20)]]
    )


def test_w_shaped_one_touch_with_two_roles_earns_both() -> None:
    # lead day 2 -> ads (also first): 30 + 30 = 60 %; opened day 12 -> event: 30 %;
    # email and search share 10 %: 5 % each (sums to 100 %, nothing to rescale)
    world = [deal(*FOUR_TOUCHES, lead=2, opened=12)]
    assert touch_shares("w_shaped", world) == exact_list([[F(3, 5), F(1, 20), F(3, 10), F(1, 20)]])


def test_w_shaped_rescales_when_the_lead_came_before_any_touch() -> None:
    # lead day -5: no touch at or before it; first = ads 0.3, opened (day 10) = event 0.3,
    # email and search 0.05 each; total 0.7, so 3/7, 1/14, 3/7, 1/14
    for lead in (-5.0, None):
        world = [deal(*FOUR_TOUCHES, lead=lead, opened=10)]
        assert touch_shares("w_shaped", world) == exact_list(
            [[F(3, 7), F(1, 14), F(3, 7), F(1, 14)]]
        )


def test_w_shaped_without_plain_touches_rescales_the_milestones() -> None:
    # ads is first and lead (0.6), email opened (0.3); no plain touch: 2/3, 1/3
    world = [deal(("ads", 0), ("email", 5), lead=0, opened=5)]
    assert touch_shares("w_shaped", world) == exact_list([[F(2, 3), F(1, 3)]])


def test_w_shaped_many_journeys() -> None:
    world = [
        deal(*FOUR_TOUCHES, value=100, lead=2, opened=12),  # 3/5, 1/20, 3/10, 1/20
        deal(*FOUR_TOUCHES, value=70, opened=10),  # 3/7, 1/14, 3/7, 1/14
        no_deal(*FOUR_TOUCHES, lead=2),
    ]
    assert conversions("w_shaped", world) == exactly(
        {
            "ads": F(3, 5) + F(3, 7),  # = 21/35 + 15/35 = 36/35
            "email": F(1, 20) + F(1, 14),  # = 7/140 + 10/140 = 17/140
            "event": F(3, 10) + F(3, 7),  # = 21/70 + 30/70 = 51/70
            "search": F(1, 20) + F(1, 14),  # = 17/140
        }
    )
    assert revenue("w_shaped", world) == exactly(
        {
            "ads": 100 * F(3, 5) + 70 * F(3, 7),  # = 60 + 30 = 90
            "email": 100 * F(1, 20) + 70 * F(1, 14),  # = 5 + 5 = 10
            "event": 100 * F(3, 10) + 70 * F(3, 7),  # = 30 + 30 = 60
            "search": 100 * F(1, 20) + 70 * F(1, 14),  # = 10
        }
    )


def test_full_path_gives_four_milestones_22_5_and_the_rest_10() -> None:
    # first = ads@0, lead (day 6) = email@5, opened (day 15) = search@15,
    # closed (day 30) = webinar@20; event@10 and ads@18 share 10 %: 1/20 each
    # ads: 9/40 + 2/40 = 11/40, email 9/40, event 2/40, search 9/40, webinar 9/40
    full = deal(
        ("ads", 0),
        ("email", 5),
        ("event", 10),
        ("search", 15),
        ("ads", 18),
        ("webinar", 20),
        value=200,
        lead=6,
        opened=15,
        closed=30,
    )
    # ads first and lead, email opened and closed: 0.45 each, nothing plain: 1/2 each
    doubled = deal(("ads", 0), ("email", 10), value=100, lead=0, opened=10, closed=10)
    # still open, lead unknown: ads 0.225 (first), email 0.225 (opened), event 0.1 (plain);
    # total 0.55: 9/22, 9/22, 4/22
    open_deal = no_deal(("ads", 0), ("email", 5), ("event", 10), opened=5)
    world = [full, doubled, open_deal]
    assert touch_shares("full_path", world) == exact_list(
        [
            [F(9, 40), F(9, 40), F(1, 20), F(9, 40), F(1, 20), F(9, 40)],
            [F(1, 2), F(1, 2)],
            [F(9, 22), F(9, 22), F(2, 11)],
        ]
    )
    assert conversions("full_path", world) == exactly(
        {
            "ads": F(11, 40) + F(1, 2),  # = 31/40
            "email": F(9, 40) + F(1, 2),  # = 29/40
            "event": F(2, 40),
            "search": F(9, 40),
            "webinar": F(9, 40),
        }
    )
    assert revenue("full_path", world) == exactly(
        {
            "ads": 200 * F(11, 40) + 100 * F(1, 2),  # = 55 + 50 = 105
            "email": 200 * F(9, 40) + 100 * F(1, 2),  # = 45 + 50 = 95
            "event": 200 * F(2, 40),  # = 10
            "search": 200 * F(9, 40),  # = 45
            "webinar": 200 * F(9, 40),  # = 45
        }
    )


# --- Markov -----------------------------------------------------------------------------------


def test_markov_order_1_removal_effects_of_a_chain_with_a_loop() -> None:
    # transitions: start->A 2, start->B 1; A->B 1, A->conv 1, A->null 1; B->conv 1, B->A 1.
    # h_A = 1/3 + h_B/3 and h_B = 1/2 + h_A/2 give h_A = 3/5, h_B = 4/5;
    # P = 2/3 * 3/5 + 1/3 * 4/5 = 2/3.
    # Without A: h_B = 1/2, P = 1/3 * 1/2 = 1/6, RE_A = 1 - (1/6)/(2/3) = 3/4.
    # Without B: h_A = 1/3, P = 2/3 * 1/3 = 2/9, RE_B = 1 - (2/9)/(2/3) = 2/3.
    # Two conversions shared 3/4 : 2/3 = 9 : 8, so A 18/17 and B 16/17.
    world = [
        deal(("ads", 0), ("email", 1), value=100),
        no_deal(("email", 0), ("ads", 1)),
        deal(("ads", 0), value=40),
    ]
    engine, credit = run("markov", world)
    assert dict(zip(engine.groups, credit.conversions.tolist(), strict=True)) == exactly(
        {"ads": F(18, 17), "email": F(16, 17)}
    )
    assert credit.detail["p_conversion"] == pytest.approx(2 / 3, rel=1e-12)
    assert credit.detail["removal_effects"] == pytest.approx([3 / 4, 2 / 3], rel=1e-12)
    # Values: mean deal value ending in A = 40, in B = 100. g = expected value:
    # g_A = 40/3 + g_B/3, g_B = 100/2 + g_A/2 give g_A = 36, g_B = 68;
    # V = 2/3 * 36 + 1/3 * 68 = 140/3. Without A: V = 1/3 * 50 = 50/3, RE = 1 - 5/14 = 9/14.
    # Without B: V = 2/3 * 40/3 = 80/9, RE = 1 - (80/9)/(140/3) = 17/21.
    # Revenue 140 shared 9/14 : 17/21 = 27 : 34, so A 140*27/61, B 140*34/61.
    assert credit.detail["value_removal_effects"] == pytest.approx([9 / 14, 17 / 21], rel=1e-12)
    assert dict(zip(engine.groups, credit.revenue.tolist(), strict=True)) == exactly(
        {"ads": F(3780, 61), "email": F(4760, 61)}
    )


def test_markov_value_removal_uses_the_mean_deal_value_of_each_last_state() -> None:
    # start->A 1/2, start->B 1/2; A->conv 1; B->conv 1/2, B->null 1/2. P = 1/2 + 1/4 = 3/4;
    # RE_A = 1 - (1/4)/(3/4) = 2/3, RE_B = 1 - (1/2)/(3/4) = 1/3: conversions 3 -> 2 and 1.
    # Mean value ending in A = (100 + 300)/2 = 200, in B = 50: V = 1/2*200 + 1/4*50 = 225/2;
    # RE^v_A = 1 - (25/2)/(225/2) = 8/9, RE^v_B = 1 - 100/(225/2) = 1/9: revenue 450 -> 400, 50.
    world = [
        deal(("ads", 0), value=100),
        deal(("ads", 0), value=300),
        deal(("email", 0), value=50),
        no_deal(("email", 0)),
    ]
    assert conversions("markov", world) == exactly({"ads": 2, "email": 1})
    assert revenue("markov", world) == exactly({"ads": 400, "email": 50})


def test_markov_order_2_remembers_which_way_round_the_touches_came() -> None:
    # A then B converts, B then A does not.
    # Order 1: start->A 1/2, ->B 1/2; A->B 1/2, A->null 1/2; B->conv 1/2, B->A 1/2;
    #   h_A = h_B/2, h_B = 1/2 + h_A/2 give h_B = 2/3, h_A = 1/3, P = 1/2.
    #   Without A: P = 1/2 * 1/2 = 1/4, RE_A = 1/2; without B: P = 0, RE_B = 1 -> 1/3, 2/3.
    # Order 2: states (A), (A,B), (B), (B,A); only start->(A)->(A,B)->conv converts, P = 1/2;
    #   removing either group kills that path: RE_A = RE_B = 1 -> 1/2 each.
    world = [deal(("ads", 0), ("email", 1)), no_deal(("email", 0), ("ads", 1))]
    assert conversions("markov", world) == exactly({"ads": F(1, 3), "email": F(2, 3)})
    assert conversions("markov", world, Params(markov_order=2)) == exactly(
        {"ads": F(1, 2), "email": F(1, 2)}
    )


def test_markov_reference_agrees_with_the_hand_solved_chain() -> None:
    # the reference's own check against the chain solved by hand above
    world = [
        deal(("ads", 0), ("email", 1), value=100),
        no_deal(("email", 0), ("ads", 1)),
        deal(("ads", 0), value=40),
    ]
    result = reference.markov(world, ("ads", "email"))
    assert result.detail["p_conversion"] == F(2, 3)
    assert result.detail["removal_effects"] == {"ads": F(3, 4), "email": F(2, 3)}
    assert result.detail["value_removal_effects"] == {"ads": F(9, 14), "email": F(17, 21)}


# --- Shapley ----------------------------------------------------------------------------------

# Sets and their rates: {A} 1 of 2 = 1/2, {B} 0 of 1 = 0, {C} 1 of 1 = 1, {A,B} 2 of 2 = 1,
# {B,C} 1 of 2 = 1/2 (A = ads, B = email, C = event).
SHAPLEY_WORLD = [
    deal(("ads", 0), value=60),
    no_deal(("ads", 0)),
    no_deal(("email", 0)),
    deal(("event", 0), value=30),
    deal(("ads", 0), ("email", 1), value=100),
    deal(("email", 0), ("ads", 1), ("email", 2), value=200),
    deal(("email", 0), ("event", 1), value=90),
    no_deal(("event", 0), ("email", 1)),
]


def test_shapley_exact_on_three_groups() -> None:
    # v(A) = 1/2, v(B) = 0, v(C) = 1, v(AB) = 3/2, v(AC) = 3/2, v(BC) = 3/2, v(ABC) = 3.
    # A's marginal contributions over the 6 orderings: ABC 1/2, ACB 1/2, BAC 3/2 - 0,
    # BCA 3 - 3/2, CAB 3/2 - 1, CBA 3 - 3/2 -> (1/2 + 1/2 + 3/2 + 3/2 + 1/2 + 3/2)/6 = 1.
    # B: ABC 3/2 - 1/2, ACB 3 - 3/2, BAC 0, BCA 0, CAB 3 - 3/2, CBA 3/2 - 1 -> (9/2)/6 = 3/4.
    # C: ABC 3 - 3/2, ACB 3/2 - 1/2, BAC 3 - 3/2, BCA 3/2 - 0, CAB 1, CBA 1 -> (15/2)/6 = 5/4.
    # (The closed form agrees: phi_B = 0/1 + 1/2 + (1/2)/2 = 3/4, phi_C = 1 + (1/2)/2 = 5/4.)
    # Five conversions shared 1 : 3/4 : 5/4 -> 5/3, 5/4, 25/12.
    assert conversions("shapley", SHAPLEY_WORLD) == exactly(
        {"ads": F(5, 3), "email": F(5, 4), "event": F(25, 12)}
    )
    # Value per journey: {A} 60/2 = 30, {B} 0, {C} 30, {A,B} 300/2 = 150, {B,C} 90/2 = 45.
    # phi_A = 30 + 150/2 = 105, phi_B = 150/2 + 45/2 = 195/2, phi_C = 30 + 45/2 = 105/2;
    # sum 255. Revenue 480 -> 480 * 105/255 = 3360/17, 480 * 97.5/255 = 3120/17,
    # 480 * 52.5/255 = 1680/17.
    assert revenue("shapley", SHAPLEY_WORLD) == exactly(
        {"ads": F(3360, 17), "email": F(3120, 17), "event": F(1680, 17)}
    )
    _, credit = run("shapley", SHAPLEY_WORLD)
    assert credit.detail["method"] == "exact"
    assert credit.detail["standard_error"] == [0.0, 0.0, 0.0]


def test_shapley_reference_both_ways_matches_the_hand_computation() -> None:
    rates, values = reference.shapley_rates(SHAPLEY_WORLD)
    players = ["ads", "email", "event"]
    expected = {"ads": F(1), "email": F(3, 4), "event": F(5, 4)}
    assert reference.shapley_by_orderings(rates, players) == expected
    assert reference.shapley_closed_form(rates, players) == expected
    expected_value = {"ads": F(105), "email": F(195, 2), "event": F(105, 2)}
    assert reference.shapley_by_orderings(values, players) == expected_value


# --- every model ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize(
    ("lead", "opened", "closed"),
    [(None, None, None), (5.0, 6.0, 9.0), (1.0, 3.0, 4.0), (5.0, None, None)],
    ids=["no-milestones", "all-after", "all-before", "lead-only"],
)
def test_one_touch_deal_gives_that_touch_everything(
    model: str, lead: float | None, opened: float | None, closed: float | None
) -> None:
    world = [deal(("email", 5), value=250, lead=lead, opened=opened, closed=closed)]
    _, credit = run(model, world, groups=("ads", "email"))
    assert credit.conversions.tolist() == pytest.approx([0, 1], abs=1e-12)
    assert credit.revenue.tolist() == pytest.approx([0, 250], abs=1e-12)
    if credit.touch_shares is not None:
        assert credit.touch_shares.tolist() == pytest.approx([1], abs=1e-12)


def test_bad_half_life_is_rejected() -> None:
    world = to_engine([deal(("ads", 0))])
    for half_life in (0.0, -7.0):
        with pytest.raises(ValueError, match="half_life_days"):
            attribute("time_decay", world, Params(half_life_days=half_life))


def test_markov_order_below_one_is_rejected() -> None:
    world = to_engine([deal(("ads", 0))])
    for order in (0, -1):
        with pytest.raises(ValueError, match="markov_order"):
            attribute("markov", world, Params(markov_order=order))


def test_shapley_rejects_more_than_62_groups() -> None:
    names = [f"campaign-{i}" for i in range(63)]
    world = [deal((name, 0)) for name in names]
    with pytest.raises(ValueError, match="at most 62 groups"):
        run("shapley", world, groups=names)


def test_shapley_takes_62_groups_by_sampling() -> None:
    # every journey is one group alone with rate 1: phi = 1 each, exactly, in any ordering
    names = [f"campaign-{i}" for i in range(62)]
    world = [deal((name, 0)) for name in names]
    _, credit = run("shapley", world, Params(shapley_samples=20), groups=names)
    assert credit.detail["method"] == "sampled"
    assert credit.conversions.tolist() == pytest.approx([1.0] * 62, rel=1e-12)


# --- properties against the reference ---------------------------------------------------------


@st.composite
def journeys_over(draw: st.DrawFn, groups: tuple[str, ...]) -> Journey:
    """A journey of 1-5 touches at distinct half-day times, milestones on the same grid
    (so some fall exactly on a touch), some before the first touch."""
    length = draw(st.integers(1, 5))
    names = draw(st.lists(st.sampled_from(groups), min_size=length, max_size=length))
    start = draw(st.integers(0, 20))
    gaps = draw(st.lists(st.integers(1, 12), min_size=length - 1, max_size=length - 1))
    steps = [start]
    for gap in gaps:
        steps.append(steps[-1] + gap)
    times = [step / 2 for step in steps]
    order = draw(st.permutations(list(range(length))))  # handed over in any order
    touches = [(names[i], times[i]) for i in order]
    converted = draw(st.booleans())
    value = draw(st.integers(0, 4000)) / 4  # a non-converting journey's value is ignored
    milestone = st.none() | st.integers(steps[0] - 4, steps[-1] + 4).map(lambda x: x / 2)
    lead, opened = draw(milestone), draw(milestone)
    closed = draw(milestone) if converted else None
    return Journey(touches, converted, value, lead, opened, closed)


@st.composite
def worlds(draw: st.DrawFn, max_groups: int = 5) -> tuple[list[Journey], tuple[str, ...]]:
    groups = NAMES[: draw(st.integers(1, max_groups))]
    journeys = draw(st.lists(journeys_over(groups), min_size=1, max_size=8))
    return journeys, groups


@pytest.mark.parametrize("model", list(MODELS))
@PROPERTY
@given(world=worlds())
def test_credit_adds_up_to_the_conversions_and_revenue(
    model: str, world: tuple[list[Journey], tuple[str, ...]]
) -> None:
    journeys, groups = world
    _, credit = run(model, journeys, groups=groups)
    won = [j for j in journeys if j.converted]
    assert credit.conversions.sum() == pytest.approx(len(won), rel=1e-9, abs=1e-9)
    assert credit.revenue.sum() == pytest.approx(sum(j.value for j in won), rel=1e-9, abs=1e-9)
    assert (credit.conversions >= -1e-12).all()
    assert (credit.revenue >= -1e-9).all()


@pytest.mark.parametrize("model", RULE_BASED)
@PROPERTY
@given(world=worlds())
def test_rule_based_touch_shares_sum_to_one_per_journey(
    model: str, world: tuple[list[Journey], tuple[str, ...]]
) -> None:
    journeys, groups = world
    engine, credit = run(model, journeys, groups=groups)
    sums = [sum(shares) for shares in split_by_journey(engine, credit)]
    assert sums == pytest.approx([1.0] * len(journeys), rel=1e-9)


@pytest.mark.parametrize("model", RULE_BASED)
@PROPERTY
@given(
    world=worlds(),
    position_weights=st.sampled_from([(0.4, 0.2, 0.4), (0.3, 0.4, 0.3), (0.6, 0.1, 0.3)]),
    half_life_days=st.sampled_from([0.5, 7.0, 30.0]),
)
def test_rule_based_models_match_the_reference(
    model: str,
    world: tuple[list[Journey], tuple[str, ...]],
    position_weights: tuple[float, float, float],
    half_life_days: float,
) -> None:
    journeys, groups = world
    params = Params(position_weights=position_weights, half_life_days=half_life_days)
    engine, credit = run(model, journeys, params, groups)
    expected = reference.rule_based(
        model,
        journeys,
        groups,
        position_weights=position_weights,
        half_life_days=half_life_days,
    )
    assert expected.shares is not None
    shares = split_by_journey(engine, credit)
    assert len(shares) == len(expected.shares)
    for got, want in zip(shares, expected.shares, strict=True):
        assert got == close(want)
    assert dict(zip(groups, credit.conversions.tolist(), strict=True)) == close(
        expected.conversions
    )
    assert dict(zip(groups, credit.revenue.tolist(), strict=True)) == close(expected.revenue)


@pytest.mark.parametrize("order", [1, 2])
@PROPERTY
@given(world=worlds())
def test_markov_matches_the_exact_reference(
    order: int, world: tuple[list[Journey], tuple[str, ...]]
) -> None:
    journeys, groups = world
    _, credit = run("markov", journeys, Params(markov_order=order), groups)
    expected = reference.markov(journeys, groups, order)
    removal = expected.detail["removal_effects"]
    value_removal = expected.detail["value_removal_effects"]
    assert isinstance(removal, dict)
    assert isinstance(value_removal, dict)
    p_conversion = expected.detail["p_conversion"]
    assert isinstance(p_conversion, Fraction)
    assert credit.detail["p_conversion"] == pytest.approx(float(p_conversion), rel=1e-9)
    assert credit.detail["removal_effects"] == close([float(removal[g]) for g in groups])
    assert credit.detail["value_removal_effects"] == close(
        [float(value_removal[g]) for g in groups]
    )
    assert dict(zip(groups, credit.conversions.tolist(), strict=True)) == close(
        expected.conversions
    )
    assert dict(zip(groups, credit.revenue.tolist(), strict=True)) == close(expected.revenue)


@PROPERTY
@given(world=worlds(max_groups=6))
def test_exact_shapley_matches_the_reference(world: tuple[list[Journey], tuple[str, ...]]) -> None:
    journeys, groups = world
    _, credit = run("shapley", journeys, groups=groups)
    assert credit.detail["method"] == "exact"
    by_orderings = reference.shapley(journeys, groups)
    closed_form = reference.shapley(journeys, groups, reference.shapley_closed_form)
    assert by_orderings.detail == closed_form.detail  # the two references agree exactly
    assert dict(zip(groups, credit.conversions.tolist(), strict=True)) == close(
        by_orderings.conversions
    )
    assert dict(zip(groups, credit.revenue.tolist(), strict=True)) == close(by_orderings.revenue)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(world=worlds(max_groups=6))
def test_sampled_shapley_is_within_five_standard_errors_of_exact(
    world: tuple[list[Journey], tuple[str, ...]],
) -> None:
    journeys, groups = world
    params = Params(shapley_exact_limit=0, shapley_samples=3000)
    _, credit = run("shapley", journeys, params, groups)
    assert credit.detail["method"] == "sampled"
    assert credit.detail["samples"] == 3000
    exact = reference.shapley(journeys, groups, reference.shapley_closed_form)
    errors = credit.detail["standard_error"]
    for i, group in enumerate(groups):
        gap = abs(credit.conversions[i] - exact.conversions[group])
        assert gap <= 5 * errors[i] + 1e-9, (group, gap, errors[i])
    won = [j for j in journeys if j.converted]
    assert credit.conversions.sum() == pytest.approx(len(won), rel=1e-9, abs=1e-9)
    assert credit.revenue.sum() == pytest.approx(sum(j.value for j in won), rel=1e-9, abs=1e-9)
