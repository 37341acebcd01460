"""The CRM domain's tables: the CRM accounts the hub connects to, credentials sealed."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from revhub.core.db import Base, Timestamped


class CrmConnection(Timestamped, Base):
    """One CRM account the hub syncs with. ``credentials_sealed`` is the vendor's secrets
    as JSON, AES-GCM sealed with a key derived from the PII secret (DESIGN §6): a copy of
    the database alone does not open the CRM."""

    __tablename__ = "crm_connection"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    crm: Mapped[str] = mapped_column(String(16))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    credentials_sealed: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
