"""Who holds a lease: this process's identity, and whether another owner is surely dead.

A lock is a lease: an owner, an expiry renewed by a heartbeat while its rollback runs, and
a fencing token that grows on every grant (the store refuses writes with a stale one).
An owner names the machine's boot, the host, the process id and a random nonce, so a
lease left by a process that died on this same machine can be taken over at once, while
one held by another machine, container or live process is only taken over once it expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import structlog

from bot.models import Lock
from bot.store.base import LeaseStore

log = structlog.get_logger(__name__)

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip().replace("-", "")[:12] or "unknown"
    except OSError:
        return "unknown"


@dataclass(frozen=True)
class Owner:
    """One process that may hold leases."""

    boot: str
    host: str
    pid: int
    nonce: str

    def __str__(self) -> str:
        return f"{self.boot}:{self.host}:{self.pid}:{self.nonce}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """Read an owner back from the store; None when it is not one of ours."""
        parts = text.rsplit(":", 3)
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        boot, host, pid, nonce = parts
        return cls(boot, host, int(pid), nonce)

    def surely_dead(self, other: str) -> bool:
        """Return True when `other` owned leases in a process of this machine that has ended.

        Only a process of the same boot and host can be judged; a process id that is ours
        now but under another nonce was an earlier process (a restarted container's pid 1).
        Anything else is alive until its lease expires: fail closed.
        """
        them = Owner.parse(other)
        if them is None or them == self or (them.boot, them.host) != (self.boot, self.host):
            return False
        if them.boot == "unknown":
            return False
        if them.pid == self.pid:
            return True
        return not Path(f"/proc/{them.pid}").exists()


def this_process() -> Owner:
    """Return a new identity for this process (a new nonce each call)."""
    return Owner(_boot_id(), socket.gethostname()[:64], os.getpid(), secrets.token_hex(4))


Renew = Callable[[], Awaitable[bool]]


async def heartbeat(renew: Renew, every: float, lost: Callable[[], object]) -> None:
    """Renew a lease every `every` seconds until cancelled; call `lost` once it is gone."""
    while True:
        await asyncio.sleep(every)
        try:
            kept = await renew()
        except Exception as exc:
            # A store hiccup is not a lost lease: try again next beat, before it expires.
            log.warning("lease renewal failed", error=type(exc).__name__)
            continue
        if not kept:
            log.error("lease lost: another process took this rollback over")
            lost()
            return


@contextlib.asynccontextmanager
async def renewing(store: LeaseStore, lease: Lock, ttl: timedelta) -> AsyncIterator[None]:
    """Renew `lease` every third of `ttl` beside the block; cancel the block if it is lost.

    The heartbeat is stopped (and waited for) when the block ends, so no renewal lands
    after the lease is released.
    """
    task = asyncio.current_task()
    assert task is not None, "a lease is held by a task"

    async def renew() -> bool:
        return await store.renew_lease(lease.key, lease.rollback_id, lease.token, ttl)

    beat = asyncio.create_task(heartbeat(renew, ttl.total_seconds() / 3, task.cancel))
    try:
        yield
    finally:
        beat.cancel()
        await asyncio.wait([beat])
