"""The SQLite store's append-only checklist marks, one-time deliveries and Slack requests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiosqlite

from bot.records import ChecklistMark, Delivery
from bot.store.rows import PRUNE_EVERY
from bot.store.sqlite_base import SQLiteBase, iso, when

# SQLite takes up to 32,766 parameters in a statement; two per claim, with room to spare.
CLAIMS_PER_STATEMENT = 500


class SQLiteRecords(SQLiteBase):
    """Checklist ticks, deliveries claimed once, and Slack requests handled once."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._claims: list[Claim] = []
        self._claiming: asyncio.Future[None] | None = None

    async def add_checklist_mark(self, mark: ChecklistMark) -> None:
        """Append a person's tick or untick; marks are never changed or deleted."""
        async with self._transaction() as conn:
            try:
                await conn.execute(
                    "INSERT INTO checklist (rollback_id, item, done, actor, at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [mark.rollback_id, mark.item, int(mark.done), mark.actor, iso(mark.at)],
                )
            except aiosqlite.IntegrityError as exc:
                raise KeyError(mark.rollback_id) from exc

    async def checklist_marks(self, rollback_id: str) -> list[ChecklistMark]:
        """Return a rollback's checklist marks, oldest first."""
        async with self._reading() as conn:
            rows = await conn.execute_fetchall(
                "SELECT * FROM checklist WHERE rollback_id = ? ORDER BY seq", [rollback_id]
            )
        return [
            ChecklistMark(
                rollback_id=row["rollback_id"],
                item=row["item"],
                done=bool(row["done"]),
                actor=row["actor"],
                at=when(row["at"]),
            )
            for row in rows
        ]

    async def claim_delivery(self, delivery: Delivery) -> bool:
        """Claim (rollback_id, key) for this delivery; False when it was claimed already."""
        async with self._transaction() as conn:
            try:
                cursor = await conn.execute(
                    "INSERT OR IGNORE INTO deliveries "
                    "(rollback_id, key, actor, at, channel, ts, body) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        delivery.rollback_id,
                        delivery.key,
                        delivery.actor,
                        iso(delivery.at),
                        delivery.channel,
                        delivery.ts,
                        delivery.body,
                    ],
                )
            except aiosqlite.IntegrityError as exc:
                raise KeyError(delivery.rollback_id) from exc
            return cursor.rowcount == 1

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
        given = {"channel": channel, "ts": ts, "body": body}
        fields = {name: value for name, value in given.items() if value is not None}
        if not fields:
            return
        sets = ", ".join(f"{name} = ?" for name in fields)
        async with self._transaction() as conn:
            cursor = await conn.execute(
                f"UPDATE deliveries SET {sets} WHERE rollback_id = ? AND key = ?",  # noqa: S608
                [*fields.values(), rollback_id, key],
            )
            if cursor.rowcount != 1:
                raise KeyError(f"{rollback_id}/{key}")

    async def delivery(self, rollback_id: str, key: str) -> Delivery | None:
        """Return a claimed delivery, or None."""
        async with self._reading() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT * FROM deliveries WHERE rollback_id = ? AND key = ?",
                    [rollback_id, key],
                )
            )
        if not rows:
            return None
        row = rows[0]
        return Delivery(
            rollback_id=row["rollback_id"],
            key=row["key"],
            actor=row["actor"],
            at=when(row["at"]),
            channel=row["channel"],
            ts=row["ts"],
            body=row["body"],
        )

    async def release_delivery(self, rollback_id: str, key: str) -> None:
        """Drop a claim whose work failed, so it can be tried again."""
        async with self._transaction() as conn:
            await conn.execute(
                "DELETE FROM deliveries WHERE rollback_id = ? AND key = ?", [rollback_id, key]
            )

    async def claim_request(self, key: str, now: datetime, keep: timedelta) -> bool:
        """Claim a Slack request by its idempotency key; False when it was handled already.

        A claim older than `keep` no longer counts (Slack retries within minutes, not days);
        such claims are pruned now and then. Every command and click waits for its claim
        before its ack, and each trip to the connection's thread costs a GIL hand-over: the
        claims that arrive together go in one statement, one trip for all of them.
        """
        claim = Claim(key, now, keep, asyncio.get_running_loop().create_future())
        self._claims.append(claim)
        if self._claiming is None or self._claiming.done():
            self._claiming = asyncio.ensure_future(self._claim_pending())
        return await claim.fresh

    async def _claim_pending(self) -> None:
        """Write the pending claims, batch by batch, and tell each claimant its answer."""
        while self._claims:
            async with self._mutex:  # waiting here lets more claims join the batch
                batch = self._claims[:CLAIMS_PER_STATEMENT]
                del self._claims[:CLAIMS_PER_STATEMENT]
                try:
                    won = await self._write_claims(batch)
                except Exception as exc:
                    for claim in batch:
                        if not claim.fresh.done():
                            claim.fresh.set_exception(exc)
                    continue
            for claim in batch:
                if not claim.fresh.done():
                    # A key twice in one batch: only its first claim wins.
                    claim.fresh.set_result(claim.key in won)
                won.discard(claim.key)

    async def _write_claims(self, batch: list[Claim]) -> set[str]:
        """Insert a batch of claims in one statement; the keys that were not claimed yet."""
        if self._conn is None:
            raise RuntimeError("SQLiteStore is not open: await store.open() first")
        now = max(claim.now for claim in batch)
        # The earliest cutoff of the batch: a claim is taken over only when surely stale.
        stale = iso(min(claim.now - claim.keep for claim in batch))
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            await self._conn.execute("DELETE FROM requests WHERE at < ?", [stale])
        values = ", ".join("(?, ?)" for _ in batch)
        rows = await self._conn.execute_fetchall(
            f"INSERT INTO requests (key, at) VALUES {values} "  # noqa: S608 - placeholders only
            "ON CONFLICT (key) DO UPDATE SET at = excluded.at WHERE requests.at < ? "
            "RETURNING key",
            [*(v for claim in batch for v in (claim.key, iso(claim.now))), stale],
        )
        return {row[0] for row in rows}


@dataclass(frozen=True)
class Claim:
    """A Slack request's key waiting to be claimed, and where its answer goes."""

    key: str
    now: datetime
    keep: timedelta
    fresh: asyncio.Future[bool]
