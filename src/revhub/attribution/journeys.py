"""Journeys as flat arrays: what every attribution model reads.

A journey is the ordered touches that lead to one outcome: a deal (converting) or a person or
account that touched marketing in the period without one (non-converting). Touches are held
flat, sorted by journey and then time, so a model is a handful of numpy operations over
millions of touches instead of a Python loop per touch.

Times are days (float) since any fixed epoch; only differences matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class Journeys:
    """Touches of many journeys (per touch: ``journey``, ``group``, ``at``) and what each
    journey led to (per journey: ``converted``, ``value`` and its milestone dates).

    ``group`` indexes ``groups``: campaigns, channels or touchpoint types, whichever the credit
    is reported by. Every journey has at least one touch; milestone dates are NaN where they
    do not apply (``closed_at`` of open pipeline, every milestone of a non-converting journey).
    """

    journey: Ints
    group: Ints
    at: Floats
    converted: Bools
    value: Floats
    lead_at: Floats
    opened_at: Floats
    closed_at: Floats
    groups: tuple[str, ...]
    kind: Ints = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def build(
        cls,
        *,
        journey: Ints,
        group: Ints,
        at: Floats,
        converted: Bools,
        value: Floats,
        groups: tuple[str, ...],
        lead_at: Floats | None = None,
        opened_at: Floats | None = None,
        closed_at: Floats | None = None,
        kind: Ints | None = None,
    ) -> Journeys:
        """Journeys from touches in any order: sorted by (journey, time), checked for
        journeys without touches (they cannot be credited; drop them before)."""
        count = len(converted)
        order = np.lexsort((at, journey))
        journey = np.asarray(journey, dtype=np.int64)[order]
        if count and (journey.size == 0 or np.bincount(journey, minlength=count).min() == 0):
            raise ValueError("every journey needs at least one touch")
        missing = np.full(count, np.nan)
        return cls(
            journey=journey,
            group=np.asarray(group, dtype=np.int64)[order],
            at=np.asarray(at, dtype=np.float64)[order],
            converted=np.asarray(converted, dtype=np.bool_),
            value=np.where(converted, np.asarray(value, dtype=np.float64), 0.0),
            lead_at=missing if lead_at is None else np.asarray(lead_at, dtype=np.float64),
            opened_at=missing if opened_at is None else np.asarray(opened_at, dtype=np.float64),
            closed_at=missing if closed_at is None else np.asarray(closed_at, dtype=np.float64),
            groups=groups,
            kind=np.zeros(len(order), dtype=np.int64) if kind is None else np.asarray(kind)[order],
        )

    @property
    def count(self) -> int:
        return len(self.converted)

    @cached_property
    def starts(self) -> Ints:
        """Index of each journey's first touch."""
        edges = np.flatnonzero(np.diff(self.journey)) + 1
        return np.concatenate(([0], edges)).astype(np.int64) if self.journey.size else edges

    @cached_property
    def lengths(self) -> Ints:
        return np.diff(np.append(self.starts, self.journey.size))

    @cached_property
    def position(self) -> Ints:
        """Each touch's 0-based place in its journey."""
        return np.arange(self.journey.size) - self.starts[self.journey]

    @cached_property
    def length(self) -> Ints:
        """Each touch's journey length."""
        return self.lengths[self.journey]

    def last_touch_by(self, when: Floats) -> Bools:
        """Per touch: is it its journey's last touch at or before ``when`` (per journey; NaN
        marks none)? The milestone touches of the W-shaped and full-path models."""
        before = self.at <= when[self.journey]
        seen = np.bincount(self.journey, weights=before, minlength=self.count).astype(np.int64)
        flags = np.zeros(self.journey.size, dtype=np.bool_)
        has = seen > 0
        flags[self.starts[has] + seen[has] - 1] = True
        return flags

    def per_group(self, weights: Floats) -> Floats:
        """Sum of per-touch ``weights`` by group."""
        summed = np.bincount(self.group, weights=weights, minlength=len(self.groups))
        return summed.astype(np.float64)

    def selected(self, keep: Bools) -> Journeys:
        """The journeys where ``keep`` (per journey) holds, renumbered in order."""
        renumber = np.cumsum(keep) - 1
        touches = keep[self.journey]
        return Journeys(
            journey=renumber[self.journey[touches]],
            group=self.group[touches],
            at=self.at[touches],
            converted=self.converted[keep],
            value=self.value[keep],
            lead_at=self.lead_at[keep],
            opened_at=self.opened_at[keep],
            closed_at=self.closed_at[keep],
            groups=self.groups,
            kind=self.kind[touches] if self.kind.size else self.kind,
        )
