"""pg_dump backups of one database: written, checked, made durable, listed, pruned, restored.

A backup is named ``<UTC stamp>_<database>_<kind>[_<rollback id>].dump``: the stamp sorts
them, the kind says why it was taken (before a rollback or before a restore) and the
rollback id ties it to the rollback whose thread announced it. Only names of that shape
are listed, pruned or restored, so nothing else in the folder is ever touched.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from providers.backup_files import named_files, rename_durably
from providers.base import (
    NotFound,
    Progress,
    Refused,
    RollbackFailed,
    human_size,
    running_rollback,
    say,
)
from providers.pg_urls import Target

if TYPE_CHECKING:
    from providers.postgres_migrations import PostgresMigrationsSettings

PRE_ROLLBACK = "pre-rollback"
PRE_RESTORE = "pre-restore"
BACKUP_NAME = re.compile(
    r"(?P<stamp>\d{8}T\d{6}\.\d{3}Z)_(?P<db>[A-Za-z0-9_-]{1,63})_"
    rf"(?P<kind>{PRE_ROLLBACK}|{PRE_RESTORE})(?:_(?P<rollback>[A-Za-z0-9-]{{1,40}}))?\.dump"
)
STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
MAX_ERROR_TEXT = 600


@dataclass(frozen=True)
class Backup:
    """One pg_dump backup in the backup folder."""

    name: str
    created_at: datetime
    size_bytes: int
    kind: str
    rollback: str | None = None

    def describe(self) -> str:
        """Say in one line which backup this is."""
        made = f", taken by {self.rollback}" if self.rollback else ""
        return f"{self.name} ({human_size(self.size_bytes)}, {when(self.created_at)}{made})"


def when(moment: datetime | None) -> str:
    """Say a moment in UTC to the minute."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else "at an unknown time"


def safe_name(text: str, limit: int = 63) -> str:
    """Return `text` fit for a file name: letters, digits, '-' and '_' only."""
    return UNSAFE_NAME_CHARS.sub("-", text)[:limit] or "db"


class PgBackups:
    """The backup folder of one database, and the pg_dump/pg_restore runs that fill it."""

    def __init__(
        self, settings: PostgresMigrationsSettings, state: Callable[[], Awaitable[str]]
    ) -> None:
        self._settings = settings
        # Says what the database holds, for the message of a backup that failed.
        self._state = state

    async def take(
        self, target: Target, kind: str, progress: Progress, *, keep: str | None = None
    ) -> Backup:
        """Dump the database with pg_dump -Fc; any failure aborts with nothing changed.

        Pruning spares the new backup and `keep` (the backup a restore is about to read).
        """
        folder = self._settings.backup_dir
        stamp = datetime.now(UTC)
        rollback = running_rollback()
        suffix = f"_{safe_name(rollback, 40).replace('_', '-')}" if rollback else ""
        database = safe_name(target.database)
        name = f"{stamp.strftime(STAMP_FORMAT)[:-4]}Z_{database}_{kind}{suffix}.dump"
        path, partial = folder / name, folder / f".{name}.partial"
        await say(progress, f"Backing up database {target.database} with pg_dump -Fc…")
        try:
            await asyncio.to_thread(_prepare_folder, folder)
        except OSError as exc:
            raise RollbackFailed(
                f"Cannot write backups to {folder}: {exc.strerror}. Nothing was changed.",
                target_state=await self._state(),
            ) from exc
        error = await self._dump(target, partial)
        if error is not None:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            raise RollbackFailed(
                f"The backup failed, so nothing was changed: {error}",
                target_state=await self._state(),
            )
        size = await asyncio.to_thread(_finish_file, partial, path)
        backup = Backup(name, stamp, size, kind, rollback)
        await say(
            progress,
            f"Backup written: {backup.name} ({human_size(size)}) in {folder}; "
            "pg_restore --list reads it.",
        )
        limit = self._settings.keep_backups
        spared = {name, keep} if keep else {name}
        pruned = await asyncio.to_thread(_prune, folder, database, limit, spared)
        if pruned:
            await say(
                progress,
                f"Removed {len(pruned)} older backup(s) (keep_backups: {limit}): "
                f"{', '.join(pruned)}.",
            )
        return backup

    async def _dump(self, target: Target, partial: Path) -> str | None:
        """Write the dump and check pg_restore can read it; return what went wrong, if anything."""
        args = [
            str(self.binary("pg_dump")),
            "--format=custom",
            f"--lock-wait-timeout={int(self._settings.lock_timeout_seconds * 1000)}",
            f"--file={partial}",
            f"--dbname={target.public_dsn}",
        ]
        if target.schema_given:
            args.append(f"--schema={target.schema}")  # Prisma's schema, not the database
        seconds = self._settings.backup_timeout_seconds
        if error := await self.run_tool(args, target, seconds):
            return f"pg_dump said {error}"
        # A dump pg_restore cannot read is no backup: check it before anything changes.
        listing = [str(self.binary("pg_restore")), "--list", str(partial)]
        if unreadable := await self.run_tool(listing, target, seconds):
            return f"pg_dump wrote a dump pg_restore cannot read ({unreadable})"
        return None

    async def listed(self, database: str) -> list[Backup]:
        """Return this database's backups, newest first."""
        folder = self._settings.backup_dir
        return await asyncio.to_thread(_list_backups, folder, safe_name(database))

    async def chosen(self, database: str, name: str | None) -> Backup:
        """Return the named backup (only one the folder lists) or the latest pre-rollback one."""
        found = await self.listed(database)
        if name is None:
            latest = next((b for b in found if b.kind == PRE_ROLLBACK), None)
            if latest is None:
                raise NotFound(
                    f"No pre-rollback backup of this database in {self._settings.backup_dir}."
                )
            return latest
        chosen = next((b for b in found if b.name == name), None)
        if chosen is None:
            shown = ", ".join(b.name for b in found[:5]) or "none"
            raise NotFound(f"No backup `{name[:80]}` of this database. Newest: {shown}.")
        return chosen

    async def restore(self, target: Target, backup: Backup) -> str | None:
        """Run pg_restore of `backup` in one transaction; return what went wrong, if anything."""
        args = [
            str(self.binary("pg_restore")),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={target.public_dsn}",
            str(self._settings.backup_dir / backup.name),
        ]
        return await self.run_tool(args, target, self._settings.restore_timeout_seconds)

    def binary(self, name: str) -> Path:
        """Find pg_dump or pg_restore in pg_bin_dir (or PATH)."""
        folder = self._settings.pg_bin_dir
        found = shutil.which(name, path=str(folder) if folder else None)
        if found is None:
            where = str(folder) if folder else "PATH"
            raise Refused(f"{name} was not found in {where}; set pg_bin_dir.")
        return Path(found)

    async def run_tool(self, args: list[str], target: Target, seconds: float) -> str | None:
        """Run pg_dump/pg_restore (no shell); return None, or what went wrong (redacted)."""
        env = dict(os.environ)
        env.pop("PGPASSWORD", None)
        if target.password:
            env["PGPASSWORD"] = target.password
        env["PGCONNECT_TIMEOUT"] = str(max(2, int(self._settings.connect_timeout_seconds)))
        if not target.pooled:  # poolers refuse startup options
            env["PGOPTIONS"] = f"-c lock_timeout={int(self._settings.lock_timeout_seconds * 1000)}"
        tool = Path(args[0]).name
        try:
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            return f"{tool} could not start: {exc.strerror}"
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), seconds)
        except TimeoutError:
            return f"{tool} did not finish within {seconds:g} s and was stopped."
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if process.returncode != 0:
            text = stderr.decode(errors="replace").strip() or f"exit status {process.returncode}"
            return target.redact(text)[-MAX_ERROR_TEXT:]
        return None


def _prepare_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def _finish_file(partial: Path, path: Path) -> int:
    """Make a finished dump private, durable and named; return its size."""
    partial.chmod(0o600)
    with partial.open("rb") as dump:
        os.fsync(dump.fileno())
    return rename_durably(partial, path)


def _prune(folder: Path, database: str, keep: int, spared: set[str]) -> list[str]:
    """Remove this database's backups beyond the newest `keep`, never one named in `spared`."""
    removed = []
    for old in _list_backups(folder, database)[keep:]:
        if old.name not in spared:
            (folder / old.name).unlink(missing_ok=True)
            removed.append(old.name)
    return removed


def _list_backups(folder: Path, database: str) -> list[Backup]:
    """List the backups of one database by strict name, newest first."""
    found = []
    for entry, match in named_files(folder, BACKUP_NAME):
        if match["db"] != database:
            continue
        stamp = datetime.strptime(match["stamp"][:-1] + "000Z", STAMP_FORMAT).replace(tzinfo=UTC)
        size = entry.stat().st_size
        found.append(Backup(entry.name, stamp, size, match["kind"], match["rollback"]))
    # By stamp, not by name: the rollback id after the kind must not change the order.
    return sorted(found, key=lambda b: (b.created_at, b.name), reverse=True)
