"""Put the keys of a redis_state backup file back into Redis, batch by batch.

Each key gets the TTL it had left when it was backed up; keys that had already expired
then are skipped and counted. RESTORE ... REPLACE overwrites a key re-created since, so
a restore that stopped can run again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import IO

from providers.base import Refused
from providers.redis_backups import EXPIRED, Entry, RedisBackup, n_keys, open_checked, read_entries
from providers.redis_keys import RedisKeys, Tally, check_time


async def restore_file(
    keys: RedisKeys, path: Path, tally: Tally, *, batch_size: int, give_up_at: float
) -> None:
    """RESTORE the file's keys batch by batch; the file is checked whole first."""
    try:
        file, _ = await asyncio.to_thread(open_checked, path)
    except (OSError, ValueError) as exc:
        raise Refused(f"Cannot read backup {path.name}: {exc}") from exc
    try:
        while batch := await _next_entries(file, path, batch_size):
            check_time(give_up_at)
            live = [e for e in batch if e.ttl_ms != EXPIRED]
            tally.skipped += len(batch) - len(live)
            await keys.restore(live, tally)
            if keys.all_lost(tally):
                return
    finally:
        await asyncio.to_thread(file.close)


async def _next_entries(file: IO[bytes], path: Path, batch_size: int) -> list[Entry]:
    try:
        return await asyncio.to_thread(read_entries, file, batch_size)
    except (OSError, ValueError) as exc:
        raise Refused(f"Cannot read backup {path.name}: {exc}") from exc


def restored_text(backup: RedisBackup, tally: Tally) -> str:
    """Say what a stopped restore did and did not put back, and what to do."""
    unsure = sum(tally.unsure.values())
    left = backup.key_count - tally.done - tally.skipped - len(tally.failed) - unsure
    parts = [f"Restored {tally.done} of {n_keys(backup.key_count)}"]
    parts += [
        f"{n_keys(n)} sent to {node} when it failed may or may not have been restored"
        for node, n in tally.unsure.items()
        if n
    ]
    if tally.failed:
        parts.append(f"{len(tally.failed)} failed ({'; '.join(tally.failed[:3])})")
    parts.append(f"{n_keys(left)} were not restored")
    return "; ".join(parts) + ". Running the restore again is safe (RESTORE ... REPLACE)."
