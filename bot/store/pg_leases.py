"""The PostgreSQL store's leases: one row per service+environment, tokens from a sequence."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from bot.models import Lock, utcnow
from bot.store.base import LeaseGrant
from bot.store.pg_base import PgBase

_LEASE = "SELECT * FROM leases WHERE key = $1"
# A lease is written when none is held, or when `condition` allows replacing the held one;
# the conflicting row stays locked either way, until the transaction ends.
_GRANT = (
    "INSERT INTO leases (key, holder, rollback_id, owner, token, expires_at) "
    "VALUES ($1, $2, $3, $4, nextval('lease_tokens'), $5) ON CONFLICT (key) DO UPDATE SET "
    "holder = excluded.holder, rollback_id = excluded.rollback_id, owner = excluded.owner, "
    "token = excluded.token, expires_at = excluded.expires_at "
    "WHERE {condition} RETURNING *"
)


class PgLeases(PgBase):
    """Fenced leases, granted by a conditional upsert."""

    async def take_lease(
        self, key: str, rollback_id: str, grant: LeaseGrant, *, takeover_from: str | None = None
    ) -> Lock:
        """Grant the lease with a new token, or return the live lease that holds it."""
        async with self._transaction() as conn:
            granted = await self._grant(
                conn,
                key,
                rollback_id,
                grant,
                utcnow(),
                "leases.expires_at < $6 OR (leases.rollback_id = $3 AND leases.owner = $7)",
                takeover_from,
            )
            if granted is not None:
                return granted
            # The upsert left the live row locked: it is still the one that holds the key.
            held = await self._lease(conn, key)
            assert held is not None
            return held

    async def renew_lease(self, key: str, rollback_id: str, token: int, ttl: timedelta) -> bool:
        """Extend a lease still held under `token`; False when it was lost."""
        async with self._transaction() as conn:
            renewed = await conn.fetchval(
                "UPDATE leases SET expires_at = $4 WHERE key = $1 AND rollback_id = $2 "
                "AND token = $3 RETURNING true",
                key,
                rollback_id,
                token,
                utcnow() + ttl,
            )
        return bool(renewed)

    async def release_lease(self, key: str, rollback_id: str, token: int) -> None:
        """Release a lease still held under `token`; a no-op otherwise."""
        async with self._transaction() as conn:
            await conn.execute(
                "DELETE FROM leases WHERE key = $1 AND rollback_id = $2 AND token = $3",
                key,
                rollback_id,
                token,
            )

    async def locks(self, *, expired: bool = False) -> list[Lock]:
        """Return the live leases (with `expired`, also those that lapsed)."""
        async with self._transaction(readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT * FROM leases WHERE $1 OR expires_at >= $2 ORDER BY key",
                expired,
                utcnow(),
            )
        return [Lock.model_validate(dict(row)) for row in rows]

    async def _lease(
        self, conn: asyncpg.Connection, key: str, *, lock: bool = False
    ) -> Lock | None:
        row = await conn.fetchrow(f"{_LEASE} FOR UPDATE" if lock else _LEASE, key)
        return Lock.model_validate(dict(row)) if row else None

    async def _grant(
        self,
        conn: asyncpg.Connection,
        key: str,
        rollback_id: str,
        grant: LeaseGrant,
        now: datetime,
        condition: str,
        *extra: Any,
    ) -> Lock | None:
        """Write the lease with the next token when `condition` allows; None when it does not."""
        row = await conn.fetchrow(
            _GRANT.format(condition=condition),
            key,
            grant.holder,
            rollback_id,
            grant.owner,
            now + grant.ttl,
            now,
            *extra,
        )
        return Lock.model_validate(dict(row)) if row else None


def holds(lease: Lock | None, rollback_id: str, token: int) -> bool:
    """Return True when `lease` is rollback_id's lease under exactly this token."""
    return lease is not None and lease.rollback_id == rollback_id and lease.token == token
