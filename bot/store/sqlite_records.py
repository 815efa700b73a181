"""The SQLite store's append-only checklist marks, one-time deliveries and Slack requests."""

from __future__ import annotations

from datetime import datetime, timedelta

import aiosqlite

from bot.records import ChecklistMark, Delivery
from bot.store.sqlite_base import SQLiteBase, iso, when


class SQLiteRecords(SQLiteBase):
    """Checklist ticks, deliveries claimed once, and Slack requests handled once."""

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
        async with self._transaction("DEFERRED") as conn:
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
        async with self._transaction("DEFERRED") as conn:
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

        Claims older than `keep` are pruned: Slack retries within minutes, not days.
        """
        async with self._transaction() as conn:
            await conn.execute("DELETE FROM requests WHERE at < ?", [iso(now - keep)])
            cursor = await conn.execute(
                "INSERT OR IGNORE INTO requests (key, at) VALUES (?, ?)", [key, iso(now)]
            )
            return cursor.rowcount == 1
