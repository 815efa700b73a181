"""Redis state provider: clear cached state (a key pattern or a whole db) after a backup.

What Redis defines, and this module relies on:

- ``SCAN cursor MATCH pattern COUNT n`` walks the keyspace a little per call, so the server
  keeps answering other clients; ``KEYS`` would block it for the whole walk. SCAN may return
  a key twice and may or may not return keys created during the walk.
- ``UNLINK`` deletes keys and frees their memory in a background thread; ``FLUSHDB ASYNC``
  does the same for a whole database.
- ``DUMP`` serialises one key's value (any type) in RDB form; ``RESTORE key ttl payload
  REPLACE`` recreates it, overwriting a key of that name, with ``ttl`` milliseconds to live
  (0: none). ``PTTL`` answers the milliseconds left, -1 for no expiry, -2 for no such key.

Choices written down here:

- A clear backs up every affected key first (PTTL + DUMP, in pipelined batches) into one file
  of ``backup_dir`` (`providers.redis_backups`). When the file would outgrow
  ``max_backup_bytes`` the clear is refused before anything is deleted: a partial backup
  would lose keys quietly.
- A pattern clear then walks the pattern again with SCAN and UNLINKs, batch by batch, only
  keys that are in the backup: a key created after the backup (by the version now running)
  is left alone and counted, so nothing is deleted without a copy. A whole-database clear
  cannot be that selective: FLUSHDB ASYNC runs right after the backup.
- A restore gives each key the TTL it had left when it was backed up, and skips (and counts)
  keys that had already expired then. RESTORE ... REPLACE overwrites a key re-created since,
  so running a restore again is safe (`providers.redis_restore`).
- ``cluster: true`` selects Redis Cluster (the URL stays a plain ``redis://`` URL of any
  node, as applications use it): SCAN runs on every primary, UNLINK per hash slot, RESTORE
  per owning node (`providers.redis_keys`). A node that stops answering mid-restore is given
  up on while the others are finished, and the message counts what was restored, what may
  have been (the batch in flight) and what was not.
- The URL comes from an environment variable, read when first needed; its password never
  reaches a message, a log line or a backup name.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from providers.base import (
    Outcome,
    Plan,
    Progress,
    ProviderError,
    Refused,
    RollbackFailed,
    TimedOut,
    human_size,
    say,
    sentence,
    state_or_unknown,
)
from providers.capabilities import BackupListing
from providers.redis_backups import (
    BackupTarget,
    Entry,
    RedisBackup,
    list_backups,
    n_keys,
    write_backup,
)
from providers.redis_keys import RedisKeys, Tally, Timeouts, check_time
from providers.redis_restore import restore_file, restored_text
from providers.retry import retrying

log = structlog.get_logger(__name__)

UNSAFE_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


class RedisStateSettings(BaseModel):
    """Settings of a `redis_state` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["redis_state"] = Field(description="Selects this provider.")
    url_env: str = Field(
        default="REDIS_URL",
        description="Variable holding the Redis URL (redis://[user:password@]host:port/db).",
    )
    pattern: str | None = Field(
        default=None,
        min_length=1,
        description="SCAN MATCH pattern of the keys to clear, e.g. `session:*`.",
    )
    cluster: bool = Field(
        default=False,
        description="The URL names one node of a Redis Cluster: keys are scanned on every "
        "primary and written to the node that owns their slot (database 0 only).",
    )
    flush_database: bool = Field(
        default=False,
        description="Clear the whole database (FLUSHDB ASYNC) instead of a pattern; needs an "
        "explicit danger confirmation.",
    )
    backup_dir: Path = Field(description="Folder for key backups (created if missing).")
    max_backup_bytes: int = Field(
        default=500_000_000,
        gt=0,
        description="Largest backup allowed; a clear whose keys would need more is refused "
        "before anything is deleted.",
    )
    batch_size: int = Field(
        default=500, ge=1, le=100_000, description="SCAN COUNT and keys per DUMP/UNLINK batch."
    )
    connect_timeout_seconds: float = Field(
        default=5, gt=0, description="Deadline of one connection attempt."
    )
    command_timeout_seconds: float = Field(
        default=10, gt=0, description="Deadline of one command or pipelined batch."
    )
    count_timeout_seconds: float = Field(
        default=5,
        gt=0,
        description="How long a key count (plan, state) may scan before it "
        "reports what it found so far.",
    )
    operation_timeout_seconds: float = Field(
        default=1800, gt=0, description="Deadline of a whole clear or restore."
    )

    @model_validator(mode="after")
    def _one_scope(self) -> RedisStateSettings:
        if (self.pattern is None) == (not self.flush_database):
            raise ValueError("set exactly one of `pattern` and `flush_database: true`")
        return self

    def secret_variables(self) -> dict[str, str]:
        """Name the variable that holds the URL."""
        return {"url_env": self.url_env}


class RedisStateProvider:
    """Clear a key pattern or a whole Redis database after backing the keys up."""

    restore_kind = "redis"

    def __init__(self, settings: RedisStateSettings) -> None:
        self._settings = settings
        self._keys = RedisKeys(
            settings.url_env,
            cluster=settings.cluster,
            timeouts=Timeouts(settings.connect_timeout_seconds, settings.command_timeout_seconds),
        )

    @property
    def _where(self) -> str:
        return self._keys.where

    # -- clearing ---------------------------------------------------------------------------

    async def plan_clear(self) -> Plan:
        """Say what a clear will remove and where its backup goes, changing nothing."""
        count = await self._count_text()
        folder = self._settings.backup_dir
        cap = human_size(self._settings.max_backup_bytes)
        steps = [
            f"Back up {self._scope()} ({count}) with DUMP + PTTL into {folder} "
            f"(refused, with nothing deleted, above {cap}).",
        ]
        warnings = []
        if self._settings.flush_database:
            steps.append(f"FLUSHDB ASYNC on {self._where}: every key in the database goes.")
            warnings.append(
                f"This empties the whole database {self._where}: it needs an explicit danger "
                "confirmation. Keys written between the backup and the flush are not backed up."
            )
        else:
            steps.append(
                f"SCAN MATCH {self._settings.pattern} + UNLINK in batches of "
                f"{self._settings.batch_size}: delete the backed-up keys (keys created after "
                "the backup stay)."
            )
        return Plan(steps=steps, warnings=warnings)

    async def clear(self, progress: Progress) -> Outcome:
        """Back up the affected keys, then delete them; return how many went and the backup."""
        started = time.monotonic()
        tally = Tally()
        backup: RedisBackup | None = None
        give_up_at = started + self._settings.operation_timeout_seconds
        try:
            backup, keys = await self._backup(progress, give_up_at)
            if self._settings.flush_database:
                await say(progress, f"Flushing {self._where} (FLUSHDB ASYNC)…")
                tally.done = await self._keys.flush()
            else:
                await self._unlink(keys, tally, progress, give_up_at)
        except TimeoutError as exc:
            raise TimedOut(
                f"The clear did not finish within {self._settings.operation_timeout_seconds:g} s.",
                target_state=await self._after_failure(backup, tally),
            ) from exc
        except ProviderError as exc:
            if backup is None:
                exc.target_state = exc.target_state or await self._after_failure(None, tally)
                raise
            raise RollbackFailed(
                f"{sentence(exc.message)} The clear stopped after deleting {n_keys(tally.done)}.",
                target_state=await self._after_failure(backup, tally),
            ) from exc
        await say(progress, self._cleared_text(tally))
        log.info(
            "redis_state.clear",
            scope=self._scope(),
            removed=tally.done,
            kept=tally.skipped,
            backup=backup.name,
            seconds=round(time.monotonic() - started, 2),
        )
        return Outcome(
            summary=self._cleared_text(tally),
            notes=[f"Backup taken before: {backup.describe()}; restore it to put the keys back."],
        )

    async def describe_state(self) -> str:
        """Say how many keys match the pattern now (or how many the db holds)."""
        if self._settings.flush_database:
            size = await retrying(self._keys.size)
            return f"{self._where} holds {n_keys(size)}"
        return f"{await self._count_text()} match `{self._settings.pattern}` in {self._where}"

    async def aclose(self) -> None:
        """Close the Redis client."""
        await self._keys.aclose()

    # -- backups and restore ----------------------------------------------------------------

    async def backups(self) -> list[RedisBackup]:
        """Return this database's backups, newest first."""
        return await asyncio.to_thread(list_backups, self._settings.backup_dir, self._label())

    async def backup_listing(self) -> list[BackupListing]:
        """Return this database's backups as people see them, newest first."""
        return [
            BackupListing(b.name, b.created_at, b.size_bytes, f"{n_keys(b.key_count)}, {b.scope}")
            for b in await self.backups()
        ]

    async def restore(self, name: str, progress: Progress) -> Outcome:
        """Put a backup's keys back with the TTL they had left; overwrite keys re-created since."""
        chosen = await self._chosen_backup(name)
        path = self._settings.backup_dir / chosen.name
        tally = Tally()
        await say(progress, f"Restoring {chosen.describe()} into {self._where}…")
        give_up_at = time.monotonic() + self._settings.operation_timeout_seconds
        try:
            await restore_file(
                self._keys,
                path,
                tally,
                batch_size=self._settings.batch_size,
                give_up_at=give_up_at,
            )
        except (TimeoutError, ProviderError) as exc:
            why = exc.message if isinstance(exc, ProviderError) else "the deadline passed"
            raise RollbackFailed(
                f"Restoring {chosen.name} stopped: {sentence(why)} {restored_text(chosen, tally)}",
                target_state=await state_or_unknown(self.describe_state),
            ) from exc
        if tally.lost:
            causes = " ".join(sentence(e.message) for e in tally.lost.values())
            raise RollbackFailed(
                f"Restoring {chosen.name} stopped short: {causes} {restored_text(chosen, tally)}",
                target_state=await state_or_unknown(self.describe_state),
            )
        if tally.failed:
            raise RollbackFailed(
                f"Restored {n_keys(tally.done)} of {chosen.name}, but {len(tally.failed)} failed: "
                + "; ".join(tally.failed[:5]),
                target_state=await state_or_unknown(self.describe_state),
            )
        await say(progress, f"Restored {n_keys(tally.done)}; skipped {tally.skipped} expired.")
        log.info("redis_state.restore", backup=chosen.name, restored=tally.done)
        notes = [f"Skipped {n_keys(tally.skipped)} that had expired when backed up."]
        return Outcome(
            summary=f"Restored {n_keys(tally.done)} of {chosen.name} into {self._where}.",
            notes=notes if tally.skipped else [],
        )

    # -- the steps of a clear ---------------------------------------------------------------

    async def _backup(
        self, progress: Progress, give_up_at: float
    ) -> tuple[RedisBackup, set[bytes]]:
        """Stream PTTL + DUMP of every affected key into a new file; refuse above the cap."""
        folder = self._settings.backup_dir
        await say(progress, f"Backing up {self._scope()} into {folder}…")

        async def batches(written: set[bytes]) -> AsyncIterator[list[Entry]]:
            async for batch in self._scan(give_up_at):
                # SCAN may return a key twice (and a key moving between nodes on both).
                yield await self._keys.dump([k for k in batch if k not in written])

        backup, written = await write_backup(
            BackupTarget(folder, self._label(), self._backup_scope(), self._where),
            batches,
            cap=self._settings.max_backup_bytes,
            scope_text=self._scope(),
            progress=progress,
        )
        await say(progress, f"Backup written: {backup.describe()}.")
        return backup, written

    async def _unlink(
        self, backed_up: set[bytes], tally: Tally, progress: Progress, give_up_at: float
    ) -> None:
        """SCAN the pattern again and UNLINK, batch by batch, the keys that were backed up."""
        await say(progress, f"Deleting {n_keys(len(backed_up))} with SCAN + UNLINK…")
        async for batch in self._scan(give_up_at):
            known = [k for k in batch if k in backed_up]
            tally.skipped += len(batch) - len(known)
            if known:
                await self._keys.unlink(known, tally)

    async def _chosen_backup(self, name: str) -> RedisBackup:
        """Return the backup of that exact name, only when the folder lists it."""
        found = await self.backups()
        chosen = next((b for b in found if b.name == name), None)
        if chosen is None:
            shown = ", ".join(b.name for b in found[:5]) or "none"
            raise Refused(f"No backup `{name[:80]}` of {self._where}. Newest: {shown}.")
        return chosen

    # -- helpers ----------------------------------------------------------------------------

    async def _scan(self, give_up_at: float) -> AsyncIterator[list[bytes]]:
        """Yield SCAN batches of the pattern (every primary's) until the time is up."""
        check_time(give_up_at)
        async for batch in self._keys.scan(self._settings.pattern, self._settings.batch_size):
            yield batch
            check_time(give_up_at)

    async def _count(self) -> tuple[int, bool]:
        """Count the affected keys within count_timeout_seconds; say whether it finished."""
        if self._settings.flush_database:
            return await self._keys.size(), True
        seen: set[bytes] = set()
        give_up_at = time.monotonic() + self._settings.count_timeout_seconds
        try:
            async for batch in self._scan(give_up_at):
                seen.update(batch)
        except TimeoutError:
            return len(seen), False
        return len(seen), True

    async def _count_text(self) -> str:
        count, finished = await retrying(self._count)
        if finished:
            return n_keys(count)
        return f"at least {n_keys(count)} (counted for {self._settings.count_timeout_seconds:g} s)"

    def _label(self) -> str:
        """Return the part of backup names that says which database they hold."""
        self._keys.connect()
        return UNSAFE_LABEL_CHARS.sub("-", self._where.replace(" ", "-"))[:80]

    def _backup_scope(self) -> str:
        pattern = self._settings.pattern
        return f"pattern `{pattern}`" if pattern else "whole database"

    def _scope(self) -> str:
        pattern = self._settings.pattern
        return f"keys matching `{pattern}`" if pattern else f"every key of {self._where}"

    def _cleared_text(self, tally: Tally) -> str:
        if self._settings.flush_database:
            return f"Flushed {self._where}: {n_keys(tally.done)} removed."
        kept = f"; kept {n_keys(tally.skipped)} created after the backup" if tally.skipped else ""
        pattern = self._settings.pattern
        return f"Deleted {n_keys(tally.done)} matching `{pattern}` in {self._where}{kept}."

    async def _after_failure(self, backup: RedisBackup | None, tally: Tally) -> str:
        """Say where a failed clear left the database."""
        state = await state_or_unknown(self.describe_state)
        if backup is None:
            return f"nothing was deleted: {state}"
        return f"{n_keys(tally.done)} deleted, all in backup {backup.name}: {state}"
