"""Markov chain removal effect, exact, of order 1 and higher.

The chain: a start state, one state per group (per tuple of the last k groups at order k;
a journey's first k-1 states are the shorter tuples it has), and two absorbing states,
conversion and null. Every journey, converting or not, adds its transitions: start → its
first state → … → its last state → conversion (a deal) or null (no deal). Transition
probabilities are the counts of each state's outgoing transitions, normalised.

P(conversion) is the probability that a walk from start is absorbed in conversion, solved
exactly from the absorbing chain: with Q the transient-to-transient probabilities and r
the probabilities of going to conversion, the expected visits x from start solve
(I - Q)^T x = e_start, and P(conversion) = x · r. Removing group c turns every state that
contains c into a dead end (its outflow goes to null) and solves again:

    RE_c = 1 - P(conversion with c removed) / P(conversion)

and the journeys' conversions are shared in proportion to RE_c / Σ RE.

Revenue uses the value removal effect: a conversion reached from state s is worth the mean
deal value of the converting journeys whose last state is s, so the chain's expected value
is V = Σ_s x_s · r_s · value_s, RE^value_c = 1 - V(c removed) / V, and the journeys'
revenue is shared in proportion to RE^value_c / Σ RE^value. (A group whose journeys close
bigger deals earns more revenue than conversions.)
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu

from revhub.attribution.credit.base import Credit, Params
from revhub.attribution.journeys import Bools, Floats, Ints, Journeys

DENSE_STATES = 1500


def credit(journeys: Journeys, params: Params) -> Credit:
    if params.markov_order < 1:
        raise ValueError("markov_order must be at least 1")
    chain = _Chain(journeys, params.markov_order)
    visits = chain.visits(removed=None)
    reach, worth = chain.outcome(visits)
    removal = np.zeros(len(journeys.groups))
    value_removal = np.zeros(len(journeys.groups))
    for group in np.unique(journeys.group):
        dead = chain.contains(int(group))
        without, without_worth = chain.outcome(chain.visits(removed=dead), dead)
        removal[group] = 1 - without / reach if reach > 0 else 0.0
        value_removal[group] = 1 - without_worth / worth if worth > 0 else 0.0
    conversions = float(journeys.converted.sum())
    revenue = float(journeys.value.sum())
    return Credit(
        conversions=_shared(conversions, removal),
        revenue=_shared(revenue, value_removal),
        detail={
            "order": params.markov_order,
            "states": chain.size - 1,
            "p_conversion": reach,
            "removal_effects": removal.tolist(),
            "value_removal_effects": value_removal.tolist(),
        },
    )


def _shared(total: float, effects: Floats) -> Floats:
    weight = effects.sum()
    return total * effects / weight if weight > 0 else np.zeros_like(effects)


class _Chain:
    """The absorbing chain of ``journeys`` at ``order``: transient nodes are start (0) and the
    states (1…n); conversion and null are the two columns after them."""

    def __init__(self, journeys: Journeys, order: int) -> None:
        groups = len(journeys.groups)
        self.base = groups + 1
        self.order = order
        code = _state_codes(journeys, order, self.base)
        self.codes, state = np.unique(code, return_inverse=True)
        state = state.reshape(-1) + 1
        self.size = len(self.codes) + 1
        first = journeys.position == 0
        source = np.where(first, 0, np.roll(state, 1))
        ends = journeys.starts + journeys.lengths - 1
        sink = np.where(journeys.converted, self.size, self.size + 1)
        counts = _counts(
            np.concatenate((source, state[ends])),
            np.concatenate((state, sink)),
            self.size,
        )
        out = np.asarray(counts.sum(axis=1)).ravel()
        scale = sparse.diags(1.0 / np.where(out > 0, out, 1))
        probabilities = (scale @ counts).tocsr()
        self.q = probabilities[:, : self.size].tocsc()
        self.r = probabilities[:, self.size].toarray().ravel()
        self.value = _value_by_last_state(journeys, state[ends], self.size)

    def contains(self, group: int) -> Bools:
        """Per transient node: does its state hold ``group``?"""
        digits = np.zeros(len(self.codes), dtype=np.bool_)
        for i in range(self.order):
            digits |= (self.codes // self.base**i) % self.base == group
        return np.concatenate(([False], digits))

    def visits(self, removed: Bools | None) -> Floats:
        """Expected visits to each transient node from start, with ``removed`` nodes'
        outflow sent to null."""
        q = self.q
        if removed is not None and removed.any():
            q = (sparse.diags((~removed).astype(float)) @ q).tocsc()
        system = (sparse.identity(self.size, format="csc") - q).T.tocsc()
        start = np.zeros(self.size)
        start[0] = 1.0
        if self.size <= DENSE_STATES:
            return np.linalg.solve(system.toarray(), start)
        return np.asarray(splu(system).solve(start))

    def outcome(self, visits: Floats, removed: Bools | None = None) -> tuple[float, float]:
        """P(conversion) and expected conversion value from expected visits (a ``removed``
        node converts nothing)."""
        flow = visits * self.r
        if removed is not None:
            flow = np.where(removed, 0.0, flow)
        return float(flow.sum()), float((flow * self.value).sum())


def _state_codes(journeys: Journeys, order: int, base: int) -> Ints:
    """Each touch's state as a number: the last ``order`` groups in base groups + 1, the
    missing places before a journey's start holding the padding digit ``base - 1``."""
    code = np.zeros(journeys.group.size, dtype=np.int64)
    for i in range(order):
        earlier = np.roll(journeys.group, i)
        digit = np.where(journeys.position >= i, earlier, base - 1)
        code += digit * base**i
    return code


def _counts(source: Ints, target: Ints, size: int) -> sparse.csr_matrix:
    """Transition counts from transient nodes to every node (transient, conversion, null)."""
    width = size + 2
    if size * width <= 4_000_000:
        dense = np.bincount(source * width + target, minlength=size * width)
        return sparse.csr_matrix(dense.reshape(size, width).astype(float))
    ones = np.ones(source.size)
    return sparse.coo_matrix((ones, (source, target)), shape=(size, width)).tocsr()


def _value_by_last_state(journeys: Journeys, last: Ints, size: int) -> Floats:
    """Mean deal value of the converting journeys ending in each state (0 where none do)."""
    won = journeys.converted
    total = np.bincount(last[won], weights=journeys.value[won], minlength=size)
    count = np.bincount(last[won], minlength=size)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)
