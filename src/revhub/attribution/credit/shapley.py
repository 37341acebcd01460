"""Shapley value over the groups (campaigns, channels, touchpoint types) of all journeys.

The game: a coalition S of groups is worth v(S) = Σ_{T ⊆ S} rate(T), where rate(T) is the
conversion rate of the journeys whose set of groups is exactly T (converting journeys over
all journeys with that set — so non-converting journeys count). This is the "simplified"
Shapley game of Zhao et al. (2018): the rates are its Harsanyi dividends, so
φ_c = Σ over sets T holding c of rate(T) / |T| (the tests check the exact method against
this closed form). Revenue uses the same game with the value per journey (deal value over
all journeys with that set) in place of the rate.

Each group's Shapley value φ_c is its marginal contribution v(S + c) - v(S) averaged over
every order in which the groups can join. The journeys' conversions (and revenue) are then
shared in proportion to φ_c / Σ φ (Σ φ = v(all groups), by efficiency).

Up to ``Params.shapley_exact_limit`` groups (15) the value is exact: v over all 2^n
coalitions by a subset-sum transform, then the weighted marginal contributions. Beyond, it
is estimated from ``Params.shapley_samples`` random orderings; the detail reports the sample
size and each group's standard error.
"""

from __future__ import annotations

from math import factorial

import numpy as np

from revhub.attribution.credit.base import Credit, Params
from revhub.attribution.journeys import Floats, Ints, Journeys

MAX_GROUPS = 62
CHUNK_CELLS = 8_000_000  # int16 cells per block of orderings: 16 MB


def credit(journeys: Journeys, params: Params) -> Credit:
    present = np.unique(journeys.group)
    players = len(present)
    if players > MAX_GROUPS:
        raise ValueError(
            f"Shapley takes at most {MAX_GROUPS} groups; this period has {players} "
            "(group by channel, or narrow the period)"
        )
    compact = np.searchsorted(present, journeys.group)
    masks = np.bitwise_or.reduceat(np.left_shift(1, compact), journeys.starts)
    sets, which = np.unique(masks, return_inverse=True)
    which = which.reshape(-1)
    seen = np.bincount(which)
    rates = np.stack(
        (
            np.bincount(which, weights=journeys.converted) / seen,
            np.bincount(which, weights=journeys.value) / seen,
        )
    )
    detail: dict[str, object] = {"players": players}
    if players <= params.shapley_exact_limit:
        phi, error = _exact(sets, rates, players), np.zeros((2, players))
        detail["method"] = "exact"
    else:
        phi, error = _sampled(sets, rates, players, params.shapley_samples, params.seed)
        detail |= {"method": "sampled", "samples": params.shapley_samples}
    totals = np.array([journeys.converted.sum(), journeys.value.sum()], dtype=float)
    shares, errors = np.zeros((2, players)), np.zeros((2, players))
    for row in range(2):
        whole = phi[row].sum()
        if whole != 0:
            shares[row] = totals[row] * phi[row] / whole
            errors[row] = totals[row] * error[row] / abs(whole)
    conversions = np.zeros(len(journeys.groups))
    revenue = np.zeros(len(journeys.groups))
    conversions[present], revenue[present] = shares
    standard_error = np.zeros(len(journeys.groups))
    standard_error[present] = errors[0]
    detail["standard_error"] = standard_error.tolist()
    return Credit(conversions=conversions, revenue=revenue, detail=detail)


def _exact(sets: Ints, rates: Floats, players: int) -> Floats:
    """φ of both games, from v over every coalition (a subset-sum transform of the rates)."""
    size = 1 << players
    value = np.zeros((2, size))
    value[:, sets] = rates
    for bit in range(players):
        pairs = value.reshape(2, -1, 2, 1 << bit)
        pairs[:, :, 1, :] += pairs[:, :, 0, :]
    members = np.zeros(size, dtype=np.int64)
    for bit in range(players):
        members += (np.arange(size) >> bit) & 1
    weights = np.array(
        [factorial(s) * factorial(players - s - 1) / factorial(players) for s in range(players)]
    )
    phi = np.zeros((2, players))
    for bit in range(players):
        pairs = value.reshape(2, -1, 2, 1 << bit)
        gain = (pairs[:, :, 1, :] - pairs[:, :, 0, :]).reshape(2, -1)
        without = members.reshape(-1, 2, 1 << bit)[:, 0, :].reshape(-1)
        phi[:, bit] = gain @ weights[without]
    return phi


def _sampled(
    sets: Ints, rates: Floats, players: int, samples: int, seed: int
) -> tuple[Floats, Floats]:
    """Mean marginal contributions over random orderings, and their standard errors. In an
    ordering, the set T adds rate(T) exactly when its last member (by the ordering) joins."""
    rng = np.random.default_rng(seed)
    members = ((sets[:, None] >> np.arange(players)) & 1).astype(np.int16)
    total = np.zeros((2, players))
    squares = np.zeros((2, players))
    chunk = max(1, CHUNK_CELLS // max(len(sets) * players, 1))
    done = 0
    while done < samples:
        count = min(chunk, samples - done)
        ranks = np.argsort(rng.random((count, players)), axis=1).argsort(axis=1)
        last = (members[None, :, :] * (ranks[:, None, :] + 1).astype(np.int16)).max(axis=2) - 1
        for k in range(count):
            for game in range(2):
                gained = np.bincount(last[k], weights=rates[game], minlength=players)
                contribution = gained[ranks[k]]
                total[game] += contribution
                squares[game] += contribution**2
        done += count
    mean = total / samples
    variance = np.maximum(squares / samples - mean**2, 0.0)
    return mean, np.sqrt(variance / samples)
