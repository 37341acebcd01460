"""Who is calling: the small frozen value every route and the audit trail receive."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Principal:
    credential_id: uuid.UUID
    name: str
    role: str
    scopes: frozenset[str]
    via: Literal["api_key", "oauth"]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes
