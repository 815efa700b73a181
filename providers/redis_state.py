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
  of ``backup_dir``, written under a temporary name and renamed when complete. When the file
  would outgrow ``max_backup_bytes`` the clear is refused before anything is deleted: a
  partial backup would lose keys quietly.
- A pattern clear then walks the pattern again with SCAN and UNLINKs, batch by batch, only
  keys that are in the backup: a key created after the backup (by the version now running)
  is left alone and counted, so nothing is deleted without a copy. A whole-database clear
  cannot be that selective: FLUSHDB ASYNC runs right after the backup.
- A restore gives each key the TTL it had left when it was backed up, and skips (and counts)
  keys that had already expired then. RESTORE ... REPLACE overwrites a key re-created since.
- The URL comes from an environment variable, read when first needed; its password never
  reaches a message, a log line or a backup name. The client makes no retries of its own:
  reads are retried by `retrying`, deletions never blindly.

Backup file format (all integers big-endian): ``MAGIC``, a u32-length-prefixed JSON header,
then per key ``u32 key length, key, i64 ttl ms (-1 none, -2 expired), u32 payload length,
payload``, then the trailer ``u32 0xFFFFFFFF, u64 key count, END``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio
import redis.exceptions
import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from providers.base import (
    AuthRejected,
    Outcome,
    Plan,
    Progress,
    ProviderError,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
    human_size,
    say,
    sentence,
    state_or_unknown,
)
from providers.retry import retrying

log = structlog.get_logger(__name__)

MAGIC = b"ROLLBOT-REDIS-KEYS 1\n"
END = b"ROLLBOT-END\n"
TRAILER_MARK = 0xFFFFFFFF
NO_TTL = -1
EXPIRED = -2
SUFFIX = ".rkeys"
BACKUP_NAME = re.compile(r"(?P<stamp>\d{8}T\d{6}\.\d{3}Z)_(?P<label>[A-Za-z0-9_.-]{1,80})\.rkeys")
STAMP_FORMAT = "%Y%m%dT%H%M%S.%f"
UNSAFE_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
HEADER_LIMIT = 64 * 1024
TRAILER = struct.Struct(">IQ")
PROGRESS_EVERY_SECONDS = 10.0
MAX_ERROR_TEXT = 300

Command = Callable[[redis.asyncio.Redis], Awaitable[Any]]


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


@dataclass(frozen=True)
class RedisBackup:
    """One key backup in the backup folder."""

    name: str
    created_at: datetime
    key_count: int
    size_bytes: int
    scope: str

    def describe(self) -> str:
        """Say in one line which backup this is."""
        return (
            f"{self.name} ({_n_keys(self.key_count)}, {self.scope}, {human_size(self.size_bytes)}, "
            f"{self.created_at:%Y-%m-%d %H:%M:%S} UTC)"
        )


@dataclass(frozen=True)
class Entry:
    """One backed-up key."""

    key: bytes
    ttl_ms: int
    payload: bytes


@dataclass
class Tally:
    """What a clear or restore has done so far, for its outcome or its failure message."""

    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Secrets:
    """The parts of the URL that must never be shown."""

    values: tuple[str, ...]

    @classmethod
    def of(cls, url: str) -> Secrets:
        """Find the URL's passwords (plain and encoded), longest first."""
        found = {url}
        with contextlib.suppress(ValueError):
            parts = urlsplit(url)
            if parts.password:
                found |= {parts.password, unquote(parts.password)}
            found |= {v for k, v in parse_qsl(parts.query) if v and "pass" in k.lower()}
        return cls(tuple(sorted(found, key=len, reverse=True)))

    def redact(self, text: str) -> str:
        """Replace every secret in a text."""
        for secret in self.values:
            text = text.replace(secret, "[redacted]")
        return text


class RedisStateProvider:
    """Clear a key pattern or a whole Redis database after backing the keys up."""

    def __init__(self, settings: RedisStateSettings) -> None:
        self._settings = settings
        self._client: redis.asyncio.Redis | None = None
        self._secrets = Secrets(())
        self._where = "redis"

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
                tally.done = await self._flush(progress)
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
                f"{sentence(exc.message)} The clear stopped after deleting {_n_keys(tally.done)}.",
                target_state=await self._after_failure(backup, tally),
            ) from exc
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
            size = await self._read("Reading DBSIZE", "DBSIZE")
            return f"{self._where} holds {_n_keys(size)}"
        return f"{await self._count_text()} match `{self._settings.pattern}` in {self._where}"

    async def aclose(self) -> None:
        """Close the Redis client."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # -- backups and restore ----------------------------------------------------------------

    async def backups(self) -> list[RedisBackup]:
        """Return this database's backups, newest first."""
        self._connection()
        return await asyncio.to_thread(_list_backups, self._settings.backup_dir, self._label())

    async def restore(self, name: str, progress: Progress) -> Outcome:
        """Put a backup's keys back with the TTL they had left; overwrite keys re-created since."""
        chosen = await self._chosen_backup(name)
        path = self._settings.backup_dir / chosen.name
        tally = Tally()
        await say(progress, f"Restoring {chosen.describe()} into {self._where}…")
        give_up_at = time.monotonic() + self._settings.operation_timeout_seconds
        try:
            await self._restore_file(path, tally, give_up_at)
        except (TimeoutError, ProviderError) as exc:
            why = exc.message if isinstance(exc, ProviderError) else "the deadline passed"
            raise RollbackFailed(
                f"Restoring {chosen.name} stopped: {sentence(why)} {_n_keys(tally.done)} were "
                "restored before that; running the restore again is safe (REPLACE).",
                target_state=await state_or_unknown(self.describe_state),
            ) from exc
        if tally.failed:
            raise RollbackFailed(
                f"Restored {_n_keys(tally.done)} of {chosen.name}, but {len(tally.failed)} failed: "
                + "; ".join(tally.failed[:5]),
                target_state=await state_or_unknown(self.describe_state),
            )
        await say(progress, f"Restored {_n_keys(tally.done)}; skipped {tally.skipped} expired.")
        log.info("redis_state.restore", backup=chosen.name, restored=tally.done)
        notes = [f"Skipped {_n_keys(tally.skipped)} that had expired when backed up."]
        return Outcome(
            summary=f"Restored {_n_keys(tally.done)} of {chosen.name} into {self._where}.",
            notes=notes if tally.skipped else [],
        )

    # -- the steps of a clear ---------------------------------------------------------------

    async def _backup(
        self, progress: Progress, give_up_at: float
    ) -> tuple[RedisBackup, set[bytes]]:
        """Stream PTTL + DUMP of every affected key into a new file; refuse above the cap."""
        folder = self._settings.backup_dir
        stamp = datetime.now(UTC)
        name = f"{stamp.strftime(STAMP_FORMAT)[:-3]}Z_{self._label()}{SUFFIX}"
        path, partial = folder / name, folder / f".{name}.partial"
        await say(progress, f"Backing up {self._scope()} into {folder}…")
        scope = self._backup_scope()
        header = {"scope": scope, "where": self._where, "created": stamp.isoformat()}
        try:
            file = await asyncio.to_thread(_open_partial, partial, header)
        except OSError as exc:
            raise Refused(f"Cannot write backups to {folder}: {exc.strerror}.") from exc
        try:
            written = await self._write_entries(file, progress, give_up_at)
            size = await asyncio.to_thread(_finish, file, partial, path, len(written))
        except BaseException:
            await asyncio.to_thread(_discard, file, partial)
            raise
        backup = RedisBackup(name, stamp, len(written), size, scope)
        await say(progress, f"Backup written: {backup.describe()}.")
        return backup, written

    async def _write_entries(
        self, file: IO[bytes], progress: Progress, give_up_at: float
    ) -> set[bytes]:
        """Write each scanned batch's entries; return the keys written."""
        written_keys: set[bytes] = set()
        written, last_report = 0, time.monotonic()
        cap = self._settings.max_backup_bytes
        async for batch in self._scan(self._settings.pattern, give_up_at):
            fresh = [k for k in batch if k not in written_keys]
            entries = await self._dump(fresh)
            chunk = _encode(entries)
            written += len(chunk)
            if written > cap:
                raise Refused(
                    f"The backup of {self._scope()} would exceed max_backup_bytes "
                    f"({human_size(cap)}; {_n_keys(len(written_keys) + len(entries))} already take "
                    f"{human_size(written)}), so nothing was deleted. Narrow the pattern or "
                    "raise the cap."
                )
            await asyncio.to_thread(file.write, chunk)
            written_keys.update(e.key for e in entries)
            if time.monotonic() - last_report > PROGRESS_EVERY_SECONDS:
                last_report = time.monotonic()
                await say(progress, f"Backed up {_n_keys(len(written_keys))} so far…")
        return written_keys

    async def _dump(self, keys: list[bytes]) -> list[Entry]:
        """PTTL + DUMP a batch in one pipeline; a key gone meanwhile is left out."""
        if not keys:
            return []

        def queue(pipe: Any) -> None:
            for key in keys:
                pipe.execute_command("PTTL", key)
                pipe.execute_command("DUMP", key)

        replies = await self._pipeline(queue, "Backing up a batch of keys (PTTL + DUMP)")
        entries = []
        for key, ttl, payload in zip(keys, replies[::2], replies[1::2], strict=True):
            if isinstance(ttl, Exception) or isinstance(payload, Exception):
                raise self._error(_first(ttl, payload), f"Backing up key {_show(key)}")
            if payload is None:
                continue
            # PTTL was read before DUMP: a key that expired in between is kept, marked expired.
            entries.append(Entry(key, ttl if ttl > 0 or ttl == NO_TTL else EXPIRED, payload))
        return entries

    async def _unlink(
        self, backed_up: set[bytes], tally: Tally, progress: Progress, give_up_at: float
    ) -> None:
        """SCAN the pattern again and UNLINK, batch by batch, the keys that were backed up."""
        await say(progress, f"Deleting {_n_keys(len(backed_up))} with SCAN + UNLINK…")
        async for batch in self._scan(self._settings.pattern, give_up_at):
            known = [k for k in batch if k in backed_up]
            tally.skipped += len(batch) - len(known)
            if known:
                tally.done += await self._command(
                    "Deleting a batch of keys (UNLINK)", "UNLINK", *known
                )
        await say(progress, self._cleared_text(tally))

    async def _flush(self, progress: Progress) -> int:
        """Count and flush the database in one MULTI; return how many keys it held."""
        await say(progress, f"Flushing {self._where} (FLUSHDB ASYNC)…")

        def queue(pipe: Any) -> None:
            pipe.execute_command("DBSIZE")
            pipe.execute_command("FLUSHDB", "ASYNC")

        size, _ = await self._pipeline(queue, "FLUSHDB ASYNC", transaction=True)
        await say(progress, f"Flushed {self._where}: {_n_keys(int(size))} removed.")
        return int(size)

    # -- the steps of a restore -------------------------------------------------------------

    async def _restore_file(self, path: Path, tally: Tally, give_up_at: float) -> None:
        """RESTORE the file's keys in pipelined batches; the file is checked whole first."""
        try:
            file = await asyncio.to_thread(_open_checked, path)
        except (OSError, ValueError) as exc:
            raise Refused(f"Cannot read backup {path.name}: {exc}") from exc
        try:
            while batch := await self._next_entries(file, path):
                _check_time(give_up_at)
                live = [e for e in batch if e.ttl_ms != EXPIRED]
                tally.skipped += len(batch) - len(live)
                await self._restore_batch(live, tally)
        finally:
            await asyncio.to_thread(file.close)

    async def _next_entries(self, file: IO[bytes], path: Path) -> list[Entry]:
        try:
            return await asyncio.to_thread(_read_entries, file, self._settings.batch_size)
        except (OSError, ValueError) as exc:
            raise Refused(f"Cannot read backup {path.name}: {exc}") from exc

    async def _restore_batch(self, entries: list[Entry], tally: Tally) -> None:
        def queue(pipe: Any) -> None:
            for e in entries:
                pipe.execute_command("RESTORE", e.key, max(e.ttl_ms, 0), e.payload, "REPLACE")

        replies = await self._pipeline(queue, "Restoring a batch of keys (RESTORE)")
        for entry, reply in zip(entries, replies, strict=True):
            if isinstance(reply, Exception):
                tally.failed.append(f"{_show(entry.key)}: {self._redact(str(reply))}")
            else:
                tally.done += 1

    async def _chosen_backup(self, name: str) -> RedisBackup:
        """Return the backup of that exact name, only when the folder lists it."""
        found = await self.backups()
        chosen = next((b for b in found if b.name == name), None)
        if chosen is None:
            shown = ", ".join(b.name for b in found[:5]) or "none"
            raise Refused(f"No backup `{name[:80]}` of {self._where}. Newest: {shown}.")
        return chosen

    # -- talking to Redis -------------------------------------------------------------------

    def _connection(self) -> redis.asyncio.Redis:
        """Return the one client, created on first use from the URL read now."""
        if self._client is not None:
            return self._client
        variable = self._settings.url_env
        url = os.environ.get(variable)
        if not url:
            raise Refused(f"{variable} is not set: rollbot has no Redis URL to use.")
        self._secrets = Secrets.of(url)
        try:
            client = redis.asyncio.Redis.from_url(
                url,
                socket_connect_timeout=self._settings.connect_timeout_seconds,
                socket_timeout=self._settings.command_timeout_seconds,
                # No retries inside the client: a retried UNLINK or FLUSHDB is not ours to decide.
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise Refused(
                f"{variable} is not a usable Redis URL: {self._redact(str(exc))}"
            ) from exc
        self._client = client
        self._where = _where(client.connection_pool.connection_kwargs)
        return client

    async def _call(self, command: Command, what: str) -> Any:
        """Run one command; redis errors become provider errors."""
        client = self._connection()
        try:
            return await command(client)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise self._error(exc, what) from exc

    async def _command(self, what: str, *args: Any) -> Any:
        """Run one Redis command."""
        return await self._call(lambda client: client.execute_command(*args), what)

    async def _read(self, what: str, *args: Any) -> Any:
        """Run one read command, retried on transient errors."""
        return await retrying(lambda: self._command(what, *args))

    async def _pipeline(
        self, queue: Callable[[Any], None], what: str, *, transaction: bool = False
    ) -> list[Any]:
        """Send a batch of commands in one round trip; per-command errors come back as values."""

        async def run(client: redis.asyncio.Redis) -> list[Any]:
            async with client.pipeline(transaction=transaction) as pipe:
                queue(pipe)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
                return replies

        return await self._call(run, what)

    async def _scan(self, pattern: str | None, give_up_at: float) -> AsyncIterator[list[bytes]]:
        """Yield SCAN batches until the cursor comes back to 0 (or the time is up)."""
        cursor = 0
        args = ["MATCH", pattern] if pattern else []
        while True:
            _check_time(give_up_at)
            cursor, keys = await self._command(
                "Scanning keys (SCAN)", "SCAN", cursor, *args, "COUNT", self._settings.batch_size
            )
            if keys:
                yield list(keys)
            if int(cursor) == 0:
                return

    async def _count(self) -> tuple[int, bool]:
        """Count the affected keys within count_timeout_seconds; say whether it finished."""
        if self._settings.flush_database:
            size = await self._read("Reading DBSIZE", "DBSIZE")
            return int(size), True
        seen: set[bytes] = set()
        give_up_at = time.monotonic() + self._settings.count_timeout_seconds
        with contextlib.suppress(TimeoutError):
            async for batch in self._scan(self._settings.pattern, give_up_at):
                seen.update(batch)
            return len(seen), True
        return len(seen), False

    async def _count_text(self) -> str:
        count, finished = await retrying(self._count)
        if finished:
            return _n_keys(count)
        return f"at least {_n_keys(count)} (counted for {self._settings.count_timeout_seconds:g} s)"

    def _error(self, exc: BaseException, what: str) -> ProviderError:
        """Map a redis exception onto the provider error tree, without the password."""
        text = (
            f"{what} on {self._where} failed: {sentence(self._redact(str(exc))[:MAX_ERROR_TEXT])}"
        )
        if isinstance(
            exc, redis.exceptions.AuthenticationError | redis.exceptions.NoPermissionError
        ):
            return AuthRejected(f"{text} Check the credentials in {self._settings.url_env}.")
        if isinstance(exc, redis.exceptions.TimeoutError):
            return TimedOut(text)
        if isinstance(exc, redis.exceptions.ConnectionError | OSError):
            return Transient(text)
        return Refused(text)

    def _redact(self, text: str) -> str:
        return self._secrets.redact(text)

    def _label(self) -> str:
        """Return the part of backup names that says which database they hold."""
        self._connection()
        return UNSAFE_LABEL_CHARS.sub("-", self._where.replace(" ", "-"))[:80]

    def _backup_scope(self) -> str:
        pattern = self._settings.pattern
        return f"pattern `{pattern}`" if pattern else "whole database"

    def _scope(self) -> str:
        pattern = self._settings.pattern
        return f"keys matching `{pattern}`" if pattern else f"every key of {self._where}"

    def _cleared_text(self, tally: Tally) -> str:
        if self._settings.flush_database:
            return f"Flushed {self._where}: {_n_keys(tally.done)} removed."
        kept = f"; kept {_n_keys(tally.skipped)} created after the backup" if tally.skipped else ""
        pattern = self._settings.pattern
        return f"Deleted {_n_keys(tally.done)} matching `{pattern}` in {self._where}{kept}."

    async def _after_failure(self, backup: RedisBackup | None, tally: Tally) -> str:
        """Say where a failed clear left the database."""
        state = await state_or_unknown(self.describe_state)
        if backup is None:
            return f"nothing was deleted: {state}"
        return f"{_n_keys(tally.done)} deleted, all in backup {backup.name}: {state}"


def _check_time(give_up_at: float) -> None:
    """Stop between two commands once the time is up.

    Checked, not cancelled: a redis-py command cancelled by an outer asyncio.timeout may
    swallow the cancellation (seen here), and a half-sent batch leaves its outcome unknown;
    each single command is bounded by the socket timeout instead.
    """
    if time.monotonic() > give_up_at:
        raise TimeoutError


def _where(kwargs: dict[str, Any]) -> str:
    """Say which server and database the client talks to (no credentials)."""
    place = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return f"redis {place} db {kwargs.get('db', 0)}"


def _n_keys(count: int) -> str:
    """Return a key count as a sentence wants it."""
    return "1 key" if count == 1 else f"{count} keys"


def _show(key: bytes) -> str:
    return repr(key[:80])[2:-1]


def _first(*values: Any) -> BaseException:
    return next(v for v in values if isinstance(v, BaseException))


def _encode(entries: list[Entry]) -> bytes:
    """Serialise entries as records of the backup format."""
    parts: list[bytes] = []
    for e in entries:
        parts += [
            struct.pack(">I", len(e.key)),
            e.key,
            struct.pack(">qI", e.ttl_ms, len(e.payload)),
            e.payload,
        ]
    return b"".join(parts)


def _open_partial(partial: Path, header: dict[str, str]) -> IO[bytes]:
    partial.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    file = partial.open("xb")
    partial.chmod(0o600)
    encoded = json.dumps(header).encode()
    file.write(MAGIC + struct.pack(">I", len(encoded)) + encoded)
    return file


def _finish(file: IO[bytes], partial: Path, path: Path, count: int) -> int:
    """Write the trailer, fsync, and give the file its final name; return its size."""
    file.write(TRAILER.pack(TRAILER_MARK, count) + END)
    file.flush()
    os.fsync(file.fileno())
    file.close()
    partial.rename(path)
    with contextlib.suppress(OSError):
        # The rename is only durable once the folder is synced too.
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path.stat().st_size


def _discard(file: IO[bytes], partial: Path) -> None:
    file.close()
    partial.unlink(missing_ok=True)


def _read_header(file: IO[bytes]) -> dict[str, Any]:
    if file.read(len(MAGIC)) != MAGIC:
        raise ValueError("not a rollbot Redis backup")
    (length,) = struct.unpack(">I", _exactly(file, 4))
    if length > HEADER_LIMIT:
        raise ValueError("header too large")
    header = json.loads(_exactly(file, length))
    if not isinstance(header, dict):
        raise ValueError("bad header")
    return header


def _read_count(file: IO[bytes]) -> int:
    """Read the trailer's key count; a file without one is incomplete."""
    file.seek(-(TRAILER.size + len(END)), os.SEEK_END)
    mark, count = TRAILER.unpack(_exactly(file, TRAILER.size))
    if mark != TRAILER_MARK or file.read(len(END)) != END:
        raise ValueError("incomplete backup (no trailer)")
    return int(count)


def _summary(path: Path) -> tuple[int, dict[str, Any]]:
    """Return a backup's key count and header."""
    with path.open("rb") as file:
        count = _read_count(file)
        file.seek(0)
        return count, _read_header(file)


def _open_checked(path: Path) -> IO[bytes]:
    """Open a backup after checking its header and trailer; positioned at the first record."""
    file = path.open("rb")
    try:
        _read_count(file)
        file.seek(0)
        _read_header(file)
    except BaseException:
        file.close()
        raise
    return file


def _read_entries(file: IO[bytes], limit: int) -> list[Entry]:
    """Read up to `limit` records; an empty list at the trailer."""
    return list(_entries(file, limit))


def _entries(file: IO[bytes], limit: int) -> Iterator[Entry]:
    for _ in range(limit):
        (key_length,) = struct.unpack(">I", _exactly(file, 4))
        if key_length == TRAILER_MARK:
            # Stay at the trailer, so every later read ends here too.
            file.seek(-4, os.SEEK_CUR)
            return
        key = _exactly(file, key_length)
        ttl, size = struct.unpack(">qI", _exactly(file, 12))
        yield Entry(key, ttl, _exactly(file, size))


def _exactly(file: IO[bytes], size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise ValueError("truncated backup")
    return data


def _list_backups(folder: Path, label: str) -> list[RedisBackup]:
    """List the complete backups of one database by strict name, newest first."""
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise Refused(f"Cannot read the backup folder {folder}: {exc.strerror}") from exc
    found = []
    for entry in entries:
        match = BACKUP_NAME.fullmatch(entry.name)
        if match is None or match["label"] != label or not entry.is_file():
            continue
        try:
            count, header = _summary(entry)
        except (OSError, ValueError):
            continue
        stamp = datetime.strptime(match["stamp"][:-1] + "000", STAMP_FORMAT).replace(tzinfo=UTC)
        scope = str(header.get("scope", "unknown scope"))
        found.append(RedisBackup(entry.name, stamp, count, entry.stat().st_size, scope))
    return sorted(found, key=lambda b: b.name, reverse=True)
