"""Rollbacks built for tests that need a record, not a store."""

from __future__ import annotations

from typing import Any

from bot.models import Rollback


def rollback(**fields: Any) -> Rollback:
    """A rollback of backend/production from v1.2.4 to v1.2.3, with the fields a test sets."""
    base: dict[str, Any] = {
        "id": "rb-0000abcd",
        "service": "backend",
        "environment": "production",
        "requested_by": "U_REQ",
        "current_version": "v1.2.4",
        "target_version": "v1.2.3",
    }
    return Rollback.model_validate(base | fields)
