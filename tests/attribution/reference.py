"""A naive, independent reference for every attribution model, written from the rules stated
in the docstrings of ``revhub.attribution.credit`` — never from the numpy code.

Journeys are plain dataclasses, rule-based models are per-journey Python loops, the Markov
chain is built with dicts and solved exactly with ``fractions.Fraction`` (the absorption
probabilities h = r + Q h rather than the engine's expected visits), and Shapley values are
computed from their definition over every ordering of the groups, and again from the closed
form φ_c = Σ_{T ∋ c} rate(T) / |T|.

Slow by design: it is only ever run on the small journeys of the tests.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from math import factorial

Touch = tuple[str, float]
State = tuple[str, ...]
Coalition = frozenset[str]

START = "start"
CONVERSION = "conversion"
NULL = "null"
Node = State | str

#: The share of W-shaped and full-path credit the non-milestone touches split.
REST = 0.10
#: The most groups the brute force over orderings takes (7! = 5,040 orderings).
MAX_ORDERING_GROUPS = 7


@dataclass(frozen=True)
class Journey:
    """One journey: touches as (group, time in days) in any order, what it led to, and its
    milestone dates (None where there is none)."""

    touches: list[Touch]
    converted: bool = False
    value: float = 0.0
    lead_at: float | None = None
    opened_at: float | None = None
    closed_at: float | None = None

    def ordered(self) -> list[Touch]:
        """The touches by time (a stable sort, so equal times keep their given order)."""
        return sorted(self.touches, key=lambda touch: touch[1])

    @property
    def worth(self) -> float:
        """The value a converting journey brings; nothing for one that did not convert."""
        return self.value if self.converted else 0.0


@dataclass(frozen=True)
class Result:
    """Credit per group name; the per-touch shares (per journey, touches by time) of a
    rule-based model; and what a data-driven model computed on the way."""

    conversions: dict[str, float]
    revenue: dict[str, float]
    shares: list[list[float]] | None = None
    detail: dict[str, object] = field(default_factory=dict)


# --- rule-based models: each maps one journey's touches (by time) to their shares -----------

Rule = Callable[[Journey, list[Touch]], list[float]]


def first_touch_shares(journey: Journey, touches: list[Touch]) -> list[float]:
    return [1.0 if i == 0 else 0.0 for i in range(len(touches))]


def last_touch_shares(journey: Journey, touches: list[Touch]) -> list[float]:
    return [1.0 if i == len(touches) - 1 else 0.0 for i in range(len(touches))]


def linear_shares(journey: Journey, touches: list[Touch]) -> list[float]:
    return [1.0 / len(touches) for _ in touches]


def position_based_rule(weights: tuple[float, float, float]) -> Rule:
    """U-shaped: 1 touch 100 %; 2 touches split first:last; else first, last and the middle
    weight shared equally by the touches between them."""
    first, middle, last = weights

    def shares(journey: Journey, touches: list[Touch]) -> list[float]:
        n = len(touches)
        if n == 1:
            return [1.0]
        if n == 2:
            return [first / (first + last), last / (first + last)]
        result = [first]
        for _ in range(n - 2):
            result.append(middle / (n - 2))
        result.append(last)
        return result

    return shares


def time_decay_rule(half_life_days: float) -> Rule:
    """2^(-age / half-life), age back from the close date, else the open date, else the
    journey's last touch; scaled to sum to 1."""

    def shares(journey: Journey, touches: list[Touch]) -> list[float]:
        if journey.closed_at is not None:
            anchor = journey.closed_at
        elif journey.opened_at is not None:
            anchor = journey.opened_at
        else:
            anchor = touches[-1][1]
        raw = [2.0 ** (-(anchor - at) / half_life_days) for _, at in touches]
        total = sum(raw)
        return [weight / total for weight in raw]

    return shares


def _milestone_rule(weight: float, milestones: Callable[[Journey], list[float | None]]) -> Rule:
    def shares(journey: Journey, touches: list[Touch]) -> list[float]:
        roles = [0] * len(touches)
        roles[0] += 1  # the first touch
        for when in milestones(journey):
            if when is None:
                continue
            holder = None
            for i, (_, at) in enumerate(touches):
                if at <= when:
                    holder = i  # the last touch at or before the milestone
            if holder is not None:
                roles[holder] += 1
        plain = sum(1 for count in roles if count == 0)
        raw = [count * weight if count else REST / plain for count in roles]
        total = sum(raw)
        return [part / total for part in raw]

    return shares


w_shaped_shares = _milestone_rule(0.30, lambda j: [j.lead_at, j.opened_at])
full_path_shares = _milestone_rule(0.225, lambda j: [j.lead_at, j.opened_at, j.closed_at])


def rule(
    name: str,
    *,
    position_weights: tuple[float, float, float] = (0.4, 0.2, 0.4),
    half_life_days: float = 7.0,
) -> Rule:
    rules: dict[str, Rule] = {
        "first_touch": first_touch_shares,
        "last_touch": last_touch_shares,
        "linear": linear_shares,
        "position_based": position_based_rule(position_weights),
        "time_decay": time_decay_rule(half_life_days),
        "w_shaped": w_shaped_shares,
        "full_path": full_path_shares,
    }
    return rules[name]


def rule_based(
    name: str,
    journeys: Sequence[Journey],
    groups: Iterable[str],
    *,
    position_weights: tuple[float, float, float] = (0.4, 0.2, 0.4),
    half_life_days: float = 7.0,
) -> Result:
    """Each converting journey's conversion and value, split by its touches' shares."""
    shares_of = rule(name, position_weights=position_weights, half_life_days=half_life_days)
    conversions = dict.fromkeys(groups, 0.0)
    revenue = dict.fromkeys(groups, 0.0)
    all_shares = []
    for journey in journeys:
        touches = journey.ordered()
        shares = shares_of(journey, touches)
        all_shares.append(shares)
        if not journey.converted:
            continue
        for (group, _), share in zip(touches, shares, strict=True):
            conversions[group] += share
            revenue[group] += share * journey.value
    return Result(conversions, revenue, all_shares)


def _shared(total: Fraction, effects: Mapping[str, Fraction]) -> dict[str, float]:
    """``total`` shared in proportion to ``effects`` (nothing to anyone if they are all 0)."""
    whole = sum(effects.values(), Fraction(0))
    if whole == 0:
        return dict.fromkeys(effects, 0.0)
    return {group: float(total * effect / whole) for group, effect in effects.items()}


def _totals(journeys: Sequence[Journey]) -> tuple[Fraction, Fraction]:
    """The number of converting journeys and the sum of their values, exactly."""
    won = [j for j in journeys if j.converted]
    return Fraction(len(won)), sum((Fraction(j.value) for j in won), Fraction(0))


# --- Markov chain removal effect --------------------------------------------------------------


def markov_states(journey: Journey, order: int) -> list[State]:
    """Each touch's state: the tuple of the last ``order`` groups (shorter at the start)."""
    names = [group for group, _ in journey.ordered()]
    return [tuple(names[max(0, i - order + 1) : i + 1]) for i in range(len(names))]


def markov_transitions(journeys: Sequence[Journey], order: int) -> dict[Node, Counter[Node]]:
    """Transition counts: start -> first state -> ... -> last state -> conversion or null."""
    counts: dict[Node, Counter[Node]] = defaultdict(Counter)
    for journey in journeys:
        path: list[Node] = [START, *markov_states(journey, order)]
        path.append(CONVERSION if journey.converted else NULL)
        for here, there in itertools.pairwise(path):
            counts[here][there] += 1
    return counts


def solve_exact(
    matrix: dict[State, dict[State, Fraction]], rhs: dict[State, list[Fraction]]
) -> dict[State, list[Fraction]]:
    """Solve ``matrix · x = rhs`` (one column per entry of each rhs list) by Gaussian
    elimination in exact fractions. ``matrix`` is sparse (row -> column -> coefficient); no
    pivoting, which is safe for I - Q of an absorbing chain (a nonsingular M-matrix)."""
    rows = {state: dict(row) for state, row in matrix.items()}
    right = {state: list(values) for state, values in rhs.items()}
    order = list(rows)
    for k, pivot in enumerate(order):
        pivot_row = rows[pivot]
        diagonal = pivot_row[pivot]
        for other in order[k + 1 :]:
            row = rows[other]
            if pivot not in row:
                continue
            factor = row[pivot] / diagonal
            for column, coefficient in pivot_row.items():
                row[column] = row.get(column, Fraction(0)) - factor * coefficient
            del row[pivot]
            right[other] = [
                mine - factor * theirs
                for mine, theirs in zip(right[other], right[pivot], strict=True)
            ]
    solution: dict[State, list[Fraction]] = {}
    for pivot in reversed(order):
        row = rows[pivot]
        values = list(right[pivot])
        for column, coefficient in row.items():
            if column != pivot:
                values = [
                    v - coefficient * known
                    for v, known in zip(values, solution[column], strict=True)
                ]
        solution[pivot] = [v / row[pivot] for v in values]
    return solution


def markov(journeys: Sequence[Journey], groups: Iterable[str], order: int = 1) -> Result:
    """Removal effects of the order-``order`` chain, solved exactly; conversions shared by
    RE_c / Σ RE and revenue by the value removal effects."""
    counts = markov_transitions(journeys, order)
    probability: dict[Node, dict[Node, Fraction]] = {
        here: {there: Fraction(n, sum(out.values())) for there, n in out.items()}
        for here, out in counts.items()
    }
    takings: dict[State, list[Fraction]] = defaultdict(list)
    for journey in journeys:
        if journey.converted:
            takings[markov_states(journey, order)[-1]].append(Fraction(journey.value))
    mean_value = {state: sum(v, Fraction(0)) / len(v) for state, v in takings.items()}
    states = [node for node in probability if isinstance(node, tuple)]

    def outcome(removed: str | None) -> tuple[Fraction, Fraction]:
        """P(conversion) and expected conversion value from start, with every state holding
        ``removed`` a dead end (its h is 0: it never converts)."""
        live = [s for s in states if removed is None or removed not in s]
        alive = set(live)
        matrix: dict[State, dict[State, Fraction]] = {}
        rhs: dict[State, list[Fraction]] = {}
        for s in live:
            # h_s - Σ_t P(s, t) h_t = P(s, conversion), and the same with value weights
            row = {s: Fraction(1)}
            for there, p in probability[s].items():
                if isinstance(there, tuple) and there in alive:
                    row[there] = row.get(there, Fraction(0)) - p
            to_conversion = probability[s].get(CONVERSION, Fraction(0))
            matrix[s] = row
            rhs[s] = [to_conversion, to_conversion * mean_value.get(s, Fraction(0))]
        h = solve_exact(matrix, rhs)
        reach, worth = Fraction(0), Fraction(0)
        for there, p in probability.get(START, {}).items():
            if isinstance(there, tuple) and there in h:
                reach += p * h[there][0]
                worth += p * h[there][1]
        return reach, worth

    reach, worth = outcome(None)
    conversions, revenue = _totals(journeys)
    removal: dict[str, Fraction] = {}
    value_removal: dict[str, Fraction] = {}
    for group in groups:
        without, without_worth = outcome(group)
        removal[group] = 1 - without / reach if reach else Fraction(0)
        value_removal[group] = 1 - without_worth / worth if worth else Fraction(0)
    return Result(
        conversions=_shared(conversions, removal),
        revenue=_shared(revenue, value_removal),
        detail={
            "p_conversion": reach,
            "value": worth,
            "removal_effects": removal,
            "value_removal_effects": value_removal,
        },
    )


# --- Shapley value --------------------------------------------------------------------------


def shapley_rates(journeys: Sequence[Journey]) -> tuple[dict[Coalition, Fraction], ...]:
    """rate(T) and value-per-journey(T) of the journeys whose set of groups is exactly T."""
    seen: Counter[Coalition] = Counter()
    won: Counter[Coalition] = Counter()
    takings: dict[Coalition, Fraction] = defaultdict(Fraction)
    for journey in journeys:
        touched = frozenset(group for group, _ in journey.touches)
        seen[touched] += 1
        if journey.converted:
            won[touched] += 1
            takings[touched] += Fraction(journey.value)
    rate = {t: Fraction(won[t], n) for t, n in seen.items()}
    value = {t: takings[t] / n for t, n in seen.items()}
    return rate, value


def coalition_worth(rates: Mapping[Coalition, Fraction], coalition: Coalition) -> Fraction:
    """v(S) = Σ_{T ⊆ S} rate(T), straight from the definition."""
    return sum((rate for t, rate in rates.items() if t <= coalition), Fraction(0))


def shapley_by_orderings(
    rates: Mapping[Coalition, Fraction], players: Sequence[str]
) -> dict[str, Fraction]:
    """φ_c: c's marginal contribution v(S + c) - v(S) averaged over every ordering."""
    if len(players) > MAX_ORDERING_GROUPS:
        raise ValueError("the brute force takes at most 7 groups")
    worth: dict[Coalition, Fraction] = {}

    def v(coalition: Coalition) -> Fraction:
        if coalition not in worth:
            worth[coalition] = coalition_worth(rates, coalition)
        return worth[coalition]

    total = dict.fromkeys(players, Fraction(0))
    for ordering in itertools.permutations(players):
        joined: Coalition = frozenset()
        for player in ordering:
            bigger = joined | {player}
            total[player] += v(bigger) - v(joined)
            joined = bigger
    orderings = factorial(len(players))
    return {player: gained / orderings for player, gained in total.items()}


def shapley_closed_form(
    rates: Mapping[Coalition, Fraction], players: Sequence[str]
) -> dict[str, Fraction]:
    """φ_c = Σ_{T ∋ c} rate(T) / |T|: each set's rate split evenly by its members."""
    return {
        player: sum((rate / len(t) for t, rate in rates.items() if player in t), Fraction(0))
        for player in players
    }


def shapley(
    journeys: Sequence[Journey],
    groups: Iterable[str],
    method: Callable[[Mapping[Coalition, Fraction], Sequence[str]], dict[str, Fraction]] = (
        shapley_by_orderings
    ),
) -> Result:
    """Conversions and revenue shared by φ_c / Σ φ of the conversion and value games."""
    groups = list(groups)
    players = sorted({group for j in journeys for group, _ in j.touches})
    rate, value = shapley_rates(journeys)
    conversions, revenue = _totals(journeys)
    phi = {g: Fraction(0) for g in groups} | method(rate, players)
    phi_value = {g: Fraction(0) for g in groups} | method(value, players)
    return Result(
        conversions=_shared(conversions, phi),
        revenue=_shared(revenue, phi_value),
        detail={"phi": phi, "phi_value": phi_value},
    )
