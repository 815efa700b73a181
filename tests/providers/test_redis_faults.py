"""redis_state's fault matrix: each way Redis refuses or goes away, at a clear and a restore.

Redis has no HTTP status: its faults are a refused password, a user whose ACL denies a
command the step needs, and the connection refused or cut (a reset mid-restore, and a
node that stops answering, are in test_redis_state.py and test_redis_cluster.py). Each
case checks the message names the cause and no key was lost: a failed clear deletes
nothing, a failed restore leaves the backup for the next attempt.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from providers.base import ProviderError
from providers.redis_state import RedisStateProvider, RedisStateSettings
from tests.support.faults import Fault, assert_names_cause
from tests.support.progress import Recorder
from tests.support.proxy import TcpProxy

PASSWORD = "s3cr3t-Pa55word"
KEYS = 50


@pytest.fixture
async def db(scratch_db: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the scratch database, seeded with the keys the step clears."""
    client = redis.asyncio.Redis.from_url(scratch_db, socket_timeout=10)
    await client.mset({f"session:{i}": f"value-{i}" for i in range(KEYS)})
    yield client
    await client.aclose()


ProviderFactory = Callable[[str], RedisStateProvider]


@pytest.fixture
async def make_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ProviderFactory]:
    """Steps over a URL, clearing `session:*` with short deadlines; closed after the test."""
    made: list[RedisStateProvider] = []

    def make(url: str) -> RedisStateProvider:
        monkeypatch.setenv("REDIS_URL", url)
        settings: dict[str, Any] = {
            "provider": "redis_state",
            "backup_dir": tmp_path / "backups",
            "pattern": "session:*",
            "command_timeout_seconds": 1,
        }
        made.append(RedisStateProvider(RedisStateSettings.model_validate(settings)))
        return made[-1]

    yield make
    for step in made:
        await step.aclose()


Arrange = Callable[[redis.asyncio.Redis, str], Awaitable[tuple[str, Callable[[], Awaitable[Any]]]]]


async def as_user(
    db: redis.asyncio.Redis, url: str, rules: list[str], password: str
) -> tuple[str, Any]:
    """A URL of a new ACL user with `rules`, logging in with `password`; and its removal."""
    user = f"rollbot-fault-{uuid.uuid4().hex[:8]}"
    await db.execute_command("ACL", "SETUSER", user, "on", f">{PASSWORD}", *rules)
    address, number = url.split("//", 1)[1].split("/", 1)

    async def remove() -> None:
        await db.execute_command("ACL", "DELUSER", user)

    return f"redis://{user}:{password}@{address}/{number}", remove


async def wrong_password(db: redis.asyncio.Redis, url: str) -> tuple[str, Any]:
    return await as_user(db, url, ["~*", "+@all"], "not-the-password")


async def denied_unlink(db: redis.asyncio.Redis, url: str) -> tuple[str, Any]:
    return await as_user(db, url, ["~*", "+@all", "-unlink", "-del"], PASSWORD)


async def denied_restore(db: redis.asyncio.Redis, url: str) -> tuple[str, Any]:
    return await as_user(db, url, ["~*", "+@all", "-restore"], PASSWORD)


async def refused(db: redis.asyncio.Redis, url: str) -> tuple[str, Any]:
    address, number = url.split("//", 1)[1].split("/", 1)
    host, port = address.rsplit(":", 1)
    proxy = await TcpProxy([(host, int(port))]).start()
    proxy.cut()
    return f"redis://127.0.0.1:{proxy.port}/{number}", proxy.close


CASES: dict[str, tuple[Fault, Arrange]] = {
    "password refused": (Fault.UNAUTHORIZED, wrong_password),
    "ACL denies UNLINK": (Fault.FORBIDDEN, denied_unlink),
    "connection refused": (Fault.RESET, refused),
}
RESTORE_CASES: dict[str, tuple[Fault, Arrange]] = {
    "password refused": (Fault.UNAUTHORIZED, wrong_password),
    "ACL denies RESTORE": (Fault.FORBIDDEN, denied_restore),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_refused_clear_names_its_cause_and_deletes_nothing(
    db: redis.asyncio.Redis,
    scratch_db: str,
    make_step: ProviderFactory,
    case: str,
) -> None:
    fault, arrange = CASES[case]
    url, cleanup = await arrange(db, scratch_db)
    try:
        with pytest.raises(ProviderError) as failed:
            await make_step(url).clear(Recorder())
    finally:
        await cleanup()

    assert_names_cause(fault, failed.value.message)
    assert PASSWORD not in failed.value.message and "not-the-password" not in failed.value.message
    assert await db.dbsize() == KEYS


@pytest.mark.parametrize("case", ["password refused", "ACL denies RESTORE"])
async def test_a_refused_restore_names_its_cause_and_keeps_the_backup(
    db: redis.asyncio.Redis,
    scratch_db: str,
    make_step: ProviderFactory,
    case: str,
) -> None:
    # A restore goes to the same server (backups belong to it), so no proxy case here:
    # a reset mid-restore is test_redis_state.py's.
    fault, arrange = RESTORE_CASES[case]
    step = make_step(scratch_db)
    await step.clear(Recorder())
    [backup] = await step.backups()
    url, cleanup = await arrange(db, scratch_db)
    try:
        with pytest.raises(ProviderError) as failed:
            await make_step(url).restore(backup.name, Recorder())
    finally:
        await cleanup()

    assert_names_cause(fault, failed.value.message)
    assert await db.dbsize() == 0
    # The backup is still there, and a restore with working access brings every key back.
    await step.restore(backup.name, Recorder())
    assert await db.dbsize() == KEYS
