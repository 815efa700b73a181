"""The redis_state backup file: one file per clear, written whole or not at all.

Format (all integers big-endian): ``MAGIC``, a u32-length-prefixed JSON header, then per
key ``u32 key length, key, i64 ttl ms (-1 none, -2 expired), u32 payload length, payload``,
then the trailer ``u32 0xFFFFFFFF, u64 key count, END``. A file is written under a
temporary name and renamed once its trailer is on disk, so a file without a trailer is
never listed nor restored.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from providers.backup_files import named_files, rename_durably
from providers.base import Progress, Refused, human_size, running_rollback, say

MAGIC = b"ROLLBOT-REDIS-KEYS 1\n"
END = b"ROLLBOT-END\n"
TRAILER_MARK = 0xFFFFFFFF
NO_TTL = -1
EXPIRED = -2
SUFFIX = ".rkeys"
BACKUP_NAME = re.compile(r"(?P<stamp>\d{8}T\d{6}\.\d{3}Z)_(?P<label>[A-Za-z0-9_.-]{1,80})\.rkeys")
STAMP_FORMAT = "%Y%m%dT%H%M%S.%f"
HEADER_LIMIT = 64 * 1024
TRAILER = struct.Struct(">IQ")
PROGRESS_EVERY_SECONDS = 10.0


@dataclass(frozen=True)
class RedisBackup:
    """One key backup in the backup folder."""

    name: str
    created_at: datetime
    key_count: int
    size_bytes: int
    scope: str
    rollback: str | None = None

    def describe(self) -> str:
        """Say in one line which backup this is."""
        made = f", taken by {self.rollback}" if self.rollback else ""
        return (
            f"{self.name} ({n_keys(self.key_count)}, {self.scope}, {human_size(self.size_bytes)}, "
            f"{self.created_at:%Y-%m-%d %H:%M:%S} UTC{made})"
        )


@dataclass(frozen=True)
class Entry:
    """One backed-up key."""

    key: bytes
    ttl_ms: int
    payload: bytes


@dataclass(frozen=True)
class BackupTarget:
    """Where a new backup goes and what its header says."""

    folder: Path
    label: str
    scope: str
    where: str


async def write_backup(
    target: BackupTarget,
    batches: Callable[[set[bytes]], AsyncIterator[list[Entry]]],
    *,
    cap: int,
    scope_text: str,
    progress: Progress,
) -> tuple[RedisBackup, set[bytes]]:
    """Write every batch into a new file, named only once complete; refuse above the cap.

    `batches` is given the keys written so far, so a key scanned twice is dumped once.
    """
    stamp = datetime.now(UTC)
    name = f"{stamp.strftime(STAMP_FORMAT)[:-3]}Z_{target.label}{SUFFIX}"
    path, partial = target.folder / name, target.folder / f".{name}.partial"
    header = {"scope": target.scope, "where": target.where, "created": stamp.isoformat()}
    rollback = running_rollback()
    if rollback:
        header["rollback"] = rollback
    try:
        file = await asyncio.to_thread(open_partial, partial, header)
    except OSError as exc:
        raise Refused(f"Cannot write backups to {target.folder}: {exc.strerror}.") from exc
    written: set[bytes] = set()
    size, last_report = 0, time.monotonic()
    try:
        async for entries in batches(written):
            chunk = encode(entries)
            size += len(chunk)
            if size > cap:
                raise Refused(
                    f"The backup of {scope_text} would exceed max_backup_bytes "
                    f"({human_size(cap)}; {n_keys(len(written) + len(entries))} already take "
                    f"{human_size(size)}), so nothing was deleted. Narrow the pattern or "
                    "raise the cap."
                )
            await asyncio.to_thread(file.write, chunk)
            written.update(e.key for e in entries)
            if time.monotonic() - last_report > PROGRESS_EVERY_SECONDS:
                last_report = time.monotonic()
                await say(progress, f"Backed up {n_keys(len(written))} so far…")
        size = await asyncio.to_thread(finish, file, partial, path, len(written))
    except BaseException:
        await asyncio.to_thread(discard, file, partial)
        raise
    return RedisBackup(name, stamp, len(written), size, target.scope, rollback), written


def n_keys(count: int) -> str:
    """Return a key count as a sentence wants it."""
    return "1 key" if count == 1 else f"{count} keys"


def encode(entries: list[Entry]) -> bytes:
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


def open_partial(partial: Path, header: dict[str, str]) -> IO[bytes]:
    partial.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    file = partial.open("xb")
    partial.chmod(0o600)
    encoded = json.dumps(header).encode()
    file.write(MAGIC + struct.pack(">I", len(encoded)) + encoded)
    return file


def finish(file: IO[bytes], partial: Path, path: Path, count: int) -> int:
    """Write the trailer, fsync, and give the file its final name; return its size."""
    file.write(TRAILER.pack(TRAILER_MARK, count) + END)
    file.flush()
    os.fsync(file.fileno())
    file.close()
    return rename_durably(partial, path)


def discard(file: IO[bytes], partial: Path) -> None:
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


def open_checked(path: Path) -> tuple[IO[bytes], int]:
    """Open a backup after checking its header and trailer; positioned at the first record."""
    file = path.open("rb")
    try:
        count = _read_count(file)
        file.seek(0)
        _read_header(file)
    except BaseException:
        file.close()
        raise
    return file, count


def read_entries(file: IO[bytes], limit: int) -> list[Entry]:
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


def list_backups(folder: Path, label: str) -> list[RedisBackup]:
    """List the complete backups of one database by strict name, newest first."""
    found = []
    for entry, match in named_files(folder, BACKUP_NAME):
        if match["label"] != label:
            continue
        try:
            count, header = _summary(entry)
        except (OSError, ValueError):
            continue
        stamp = datetime.strptime(match["stamp"][:-1] + "000", STAMP_FORMAT).replace(tzinfo=UTC)
        scope = str(header.get("scope", "unknown scope"))
        rollback = str(header["rollback"]) if header.get("rollback") else None
        size = entry.stat().st_size
        found.append(RedisBackup(entry.name, stamp, count, size, scope, rollback))
    return sorted(found, key=lambda b: b.name, reverse=True)
