"""Small factories that build committed-in-the-test-transaction data through the services."""

from __future__ import annotations

import itertools
from datetime import datetime

from sqlalchemy.orm import Session

from revhub.core.auth import service as auth
from revhub.core.auth.models import ApiKey
from revhub.core.auth.schemas import ApiKeyCreate
from revhub.core.auth.scopes import Role
from revhub.core.db import utcnow

_counter = itertools.count(1)


class ApiKeyFactory:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(
        self,
        *,
        role: str = "admin",
        name: str | None = None,
        expires_in_days: int | None = 30,
        now: datetime | None = None,
    ) -> tuple[ApiKey, str]:
        key_in = ApiKeyCreate(
            name=name or f"test-{role}-{next(_counter)}",
            role=Role(role),
            expires_in_days=expires_in_days,
        )
        key, token = auth.create_key(
            self.session, key_in=key_in, created_by="tests", now=now or utcnow()
        )
        self.session.commit()
        return key, token
