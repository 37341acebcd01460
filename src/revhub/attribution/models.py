"""Attribution's tables: computed reports kept until their inputs change, and each deal's
credit under the write-back model (what the CRM sync puts on the opportunity)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from revhub.core.db import Base, utcnow


class AttributionReport(Base):
    """A computed report. ``key`` hashes the request (period, model, scope, …); ``inputs``
    fingerprints the data it was computed from, so a report is served again only while no
    touch, deal, contact or campaign has changed since."""

    __tablename__ = "attribution_report"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    inputs: Mapped[str] = mapped_column(String(200))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class DealAttribution(Base):
    """One deal's campaign credit under ``model`` (contact scope, default look-back): the
    ``primary_campaign_id`` is the campaign with the largest share."""

    __tablename__ = "deal_attribution"

    opportunity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("opportunity.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(32))
    primary_campaign_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("campaign.id"))
    credits: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
