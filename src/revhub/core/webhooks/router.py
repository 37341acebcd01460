"""HTTP endpoints of core.webhooks."""

from __future__ import annotations

from fastapi import APIRouter

from revhub.core.responses import PROTECTED

router = APIRouter(prefix="/api/v1", tags=["webhooks"], responses=PROTECTED)
