"""The PostgreSQL store's append-only checklist marks, one-time deliveries and Slack requests."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from bot.records import ChecklistMark, Delivery
from bot.store.pg_base import PgBase
from bot.store.rows import PRUNE_EVERY, aware


class PgRecords(PgBase):
    """Checklist ticks, deliveries claimed once, and Slack requests handled once."""

    async def add_checklist_mark(self, mark: ChecklistMark) -> None:
        """Append a person's tick or untick; marks are never changed or deleted."""
        async with self._transaction() as conn:
            try:
                await conn.execute(
                    "INSERT INTO checklist (rollback_id, item, done, actor, at) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    mark.rollback_id,
                    mark.item,
                    mark.done,
                    mark.actor,
                    aware(mark.at),
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise KeyError(mark.rollback_id) from exc

    async def checklist_marks(self, rollback_id: str) -> list[ChecklistMark]:
        """Return a rollback's checklist marks, oldest first."""
        async with self._transaction(readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT rollback_id, item, done, actor, at FROM checklist "
                "WHERE rollback_id = $1 ORDER BY seq",
                rollback_id,
            )
        return [ChecklistMark.model_validate(dict(row)) for row in rows]

    async def claim_delivery(self, delivery: Delivery) -> bool:
        """Claim (rollback_id, key) for this delivery; False when it was claimed already."""
        async with self._transaction() as conn:
            try:
                claimed = await conn.fetchval(
                    "INSERT INTO deliveries (rollback_id, key, actor, at, channel, ts, body) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7) "
                    "ON CONFLICT (rollback_id, key) DO NOTHING RETURNING true",
                    delivery.rollback_id,
                    delivery.key,
                    delivery.actor,
                    aware(delivery.at),
                    delivery.channel,
                    delivery.ts,
                    delivery.body,
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise KeyError(delivery.rollback_id) from exc
        return bool(claimed)

    async def update_delivery(
        self,
        rollback_id: str,
        key: str,
        *,
        channel: str | None = None,
        ts: str | None = None,
        body: str | None = None,
    ) -> None:
        """Set the given fields of a claimed delivery (where it was posted, its text)."""
        if channel is None and ts is None and body is None:
            return
        async with self._transaction() as conn:
            found = await conn.fetchval(
                "UPDATE deliveries SET channel = COALESCE($3, channel), ts = COALESCE($4, ts), "
                "body = COALESCE($5, body) WHERE rollback_id = $1 AND key = $2 RETURNING true",
                rollback_id,
                key,
                channel,
                ts,
                body,
            )
        if not found:
            raise KeyError(f"{rollback_id}/{key}")

    async def delivery(self, rollback_id: str, key: str) -> Delivery | None:
        """Return a claimed delivery, or None."""
        async with self._transaction(readonly=True) as conn:
            row = await conn.fetchrow(
                "SELECT * FROM deliveries WHERE rollback_id = $1 AND key = $2", rollback_id, key
            )
        return Delivery.model_validate(dict(row)) if row else None

    async def release_delivery(self, rollback_id: str, key: str) -> None:
        """Drop a claim whose work failed, so it can be tried again."""
        async with self._transaction() as conn:
            await conn.execute(
                "DELETE FROM deliveries WHERE rollback_id = $1 AND key = $2", rollback_id, key
            )

    async def claim_request(self, key: str, now: datetime, keep: timedelta) -> bool:
        """Claim a Slack request by its idempotency key; False when it was handled already.

        A claim older than `keep` no longer counts (Slack retries within minutes, not days);
        such claims are pruned now and then, not on every claim that waits for its ack.
        """
        prune = self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY
        async with self._transaction() as conn:
            if prune:
                self._pruned_at = now
                await conn.execute("DELETE FROM requests WHERE at < $1", aware(now) - keep)
            claimed = await conn.fetchval(
                "INSERT INTO requests (key, at) VALUES ($1, $2) "
                "ON CONFLICT (key) DO UPDATE SET at = EXCLUDED.at WHERE requests.at < $3 "
                "RETURNING true",
                key,
                aware(now),
                aware(now) - keep,
            )
        return bool(claimed)
