"""The redis_state provider against a real Redis: clear, back up and restore keys."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
import redis
import redis.asyncio

from providers.base import AuthRejected, Refused, RollbackFailed, TimedOut, Transient, running_for
from providers.redis_state import RedisStateProvider, RedisStateSettings
from tests.support.progress import Recorder
from tests.support.proxy import tcp_proxy

PASSWORD = "s3cr3t-Pa55word"
ProviderFactory = Callable[..., RedisStateProvider]


def where(url: str) -> str:
    """How the provider names the database of a URL in its messages."""
    address, db = url.split("//", 1)[1].split("/", 1)
    return f"redis {address} db {db}"


@pytest.fixture
async def db(scratch_db: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the scratch database, for the test to seed and inspect it."""
    client = redis.asyncio.Redis.from_url(scratch_db, socket_timeout=10)
    yield client
    await client.aclose()


@pytest.fixture
async def make_provider(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scratch_db: str
) -> AsyncIterator[ProviderFactory]:
    """Build providers of the scratch database (URL in REDIS_URL); close them after."""
    made: list[RedisStateProvider] = []

    def make(url: str | None = None, **settings: Any) -> RedisStateProvider:
        monkeypatch.setenv("REDIS_URL", url or scratch_db)
        values: dict[str, Any] = {
            "provider": "redis_state",
            "backup_dir": tmp_path / "backups",
            **settings,
        }
        if "flush_database" not in values:
            values.setdefault("pattern", "session:*")
        provider = RedisStateProvider(RedisStateSettings.model_validate(values))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def seed(client: redis.asyncio.Redis, prefix: str, count: int, ttl_ms: int = 0) -> None:
    """Create `count` string keys with a pipeline."""
    step = 10_000
    for start in range(0, count, step):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + step, count)):
                pipe.set(f"{prefix}{i}", f"value-{i}", px=ttl_ms or None)
            await pipe.execute()


async def seed_types(client: redis.asyncio.Redis) -> None:
    """One key of each type, some with a TTL."""
    await client.set("session:str", "hello", px=600_000)
    await client.hset("session:hash", mapping={"user": "ann", "role": "admin"})
    await client.pexpire("session:hash", 300_000)
    await client.rpush("session:list", "a", "b", "c")
    await client.sadd("session:set", "x", "y")
    await client.pexpire("session:set", 120_000)
    await client.zadd("session:zset", {"m": 1.5})


async def snapshot(client: redis.asyncio.Redis) -> dict[bytes, Any]:
    """Read the type and value of every session:* key."""
    found: dict[bytes, Any] = {}
    async for key in client.scan_iter(match="session:*"):
        kind = (await client.type(key)).decode()
        reader = {
            "string": client.get,
            "hash": client.hgetall,
            "list": lambda k: client.lrange(k, 0, -1),
            "set": client.smembers,
            "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        }[kind]
        found[key] = (kind, await reader(key))
    return found


# Runs in its own process, so what it measures is the server, not this process's GIL.
PING_LOOP = """
import sys, threading, time
import redis

client = redis.Redis.from_url(sys.argv[1], socket_timeout=5)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
worst, pings = 0.0, 0
print("ready", flush=True)
while not stop.is_set():
    started = time.perf_counter()
    client.ping()
    worst = max(worst, time.perf_counter() - started)
    pings += 1
    time.sleep(0.002)
print(worst, pings)
"""


class PingWatcher:
    """Pings Redis from another process until stopped, keeping the slowest answer."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.worst = 0.0
        self.pings = 0

    def __enter__(self) -> PingWatcher:
        self._process = subprocess.Popen(
            [sys.executable, "-c", PING_LOOP, self._url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        assert self._process.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        out, _ = self._process.communicate("stop\n", timeout=30)
        worst, pings = out.split()
        self.worst, self.pings = float(worst), int(pings)


async def test_pattern_clear_of_100k_keys_keeps_the_server_answering(
    db: redis.asyncio.Redis, make_provider: ProviderFactory, scratch_db: str
) -> None:
    await seed(db, "session:", 100_000)
    await seed(db, "cache:", 1_000)
    provider = make_provider()
    progress = Recorder()

    with PingWatcher(scratch_db) as watcher:
        outcome = await provider.clear(progress)

    assert await db.dbsize() == 1_000
    assert await db.get("cache:7") == b"value-7"
    assert outcome.summary == f"Deleted 100000 keys matching `session:*` in {where(scratch_db)}."
    [backup] = await provider.backups()
    assert backup.key_count == 100_000
    assert backup.name in outcome.notes[0]
    assert f"Backup written: {backup.name} (100000 keys" in progress.text
    assert "Deleted 100000 keys" in progress.text
    # The server kept answering others while 100k keys were dumped and unlinked.
    assert watcher.pings > 20
    assert watcher.worst < 0.1, f"slowest PING took {watcher.worst * 1000:.0f} ms"


async def test_restore_brings_back_every_key_with_its_type_and_ttl(
    db: redis.asyncio.Redis, make_provider: ProviderFactory
) -> None:
    await seed_types(db)
    await seed(db, "session:ttl:", 2_000, ttl_ms=900_000)
    before = await snapshot(db)
    provider = make_provider(batch_size=100)
    cleared = await provider.clear(Recorder())
    await db.set("session:str", "re-created by the new version")
    assert await db.dbsize() == 1
    [backup] = await provider.backups()
    progress = Recorder()

    outcome = await provider.restore(backup.name, progress)

    assert outcome.summary.startswith(f"Restored 2005 keys of {backup.name}")
    assert "Deleted 2005 keys" in cleared.summary
    assert await snapshot(db) == before
    ttls = {
        "session:str": 600_000,
        "session:hash": 300_000,
        "session:set": 120_000,
        "session:ttl:1999": 900_000,
    }
    for key, ttl in ttls.items():
        left = await db.pttl(key)
        assert ttl - 10_000 < left <= ttl, key
    assert await db.pttl("session:list") == -1
    assert await db.pttl("session:zset") == -1
    assert "Restored 2005 keys; skipped 0 expired." in progress.text


async def test_keys_created_after_the_backup_are_kept(
    db: redis.asyncio.Redis, make_provider: ProviderFactory
) -> None:
    await seed(db, "session:", 10)
    provider = make_provider()

    async def progress(text: str) -> None:
        # The running app writes a session between the backup and the deletion.
        if text.startswith("Backup written"):
            await db.set("session:new", "written by the rolled-back version")

    outcome = await provider.clear(progress)

    assert outcome.summary.startswith("Deleted 10 keys matching `session:*`")
    assert outcome.summary.endswith("; kept 1 key created after the backup.")
    assert await db.get("session:new") == b"written by the rolled-back version"
    assert await db.dbsize() == 1


async def test_size_cap_refuses_and_deletes_nothing(
    db: redis.asyncio.Redis, make_provider: ProviderFactory, tmp_path: Path, scratch_db: str
) -> None:
    await seed(db, "session:", 5_000)
    provider = make_provider(max_backup_bytes=20_000)

    with pytest.raises(Refused) as caught:
        await provider.clear(Recorder())

    assert "would exceed max_backup_bytes (20.0 kB" in caught.value.message
    assert "nothing was deleted" in caught.value.message
    assert caught.value.target_state == (
        f"nothing was deleted: 5000 keys match `session:*` in {where(scratch_db)}"
    )
    assert await db.dbsize() == 5_000
    assert list((tmp_path / "backups").iterdir()) == []
    assert await provider.backups() == []


async def test_flush_database_backs_up_then_flushes(
    db: redis.asyncio.Redis, make_provider: ProviderFactory, scratch_db: str
) -> None:
    await seed(db, "any:", 300)
    await seed_types(db)
    before = await snapshot(db)
    provider = make_provider(flush_database=True)
    plan = await provider.plan_clear()
    progress = Recorder()

    outcome = await provider.clear(progress)

    assert "danger confirmation" in plan.warnings[0]
    assert "FLUSHDB ASYNC" in plan.steps[1]
    assert "(305 keys)" in plan.steps[0]
    assert outcome.summary.endswith(": 305 keys removed.")
    assert await db.dbsize() == 0
    assert await provider.describe_state() == f"{where(scratch_db)} holds 0 keys"
    [backup] = await provider.backups()
    assert backup.key_count == 305
    await provider.restore(backup.name, Recorder())
    assert await db.dbsize() == 305
    assert await snapshot(db) == before


async def test_plan_and_state_count_the_pattern(
    db: redis.asyncio.Redis, make_provider: ProviderFactory, tmp_path: Path, scratch_db: str
) -> None:
    await seed(db, "session:", 1_234)
    await seed(db, "other:", 10)
    provider = make_provider(batch_size=100)

    plan = await provider.plan_clear()

    assert plan.warnings == []
    assert "Back up keys matching `session:*` (1234 keys)" in plan.steps[0]
    assert str(tmp_path / "backups") in plan.steps[0]
    assert "SCAN MATCH session:* + UNLINK in batches of 100" in plan.steps[1]
    assert await provider.describe_state() == (
        f"1234 keys match `session:*` in {where(scratch_db)}"
    )


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "../backups/x.rkeys",
        "/etc/passwd",
        "20261125T183000.123Z_redis-127.0.0.1-56379-db-1.rkeys/../x",
        "",
    ],
)
async def test_restore_refuses_names_not_in_the_listing(
    db: redis.asyncio.Redis, make_provider: ProviderFactory, name: str, tmp_path: Path
) -> None:
    await seed(db, "session:", 3)
    provider = make_provider()
    await provider.clear(Recorder())
    # A file with a backup-like name outside the folder is not reachable either.
    (tmp_path / "x.rkeys").write_bytes(b"not a backup")

    with pytest.raises(Refused, match="No backup"):
        await provider.restore(name, Recorder())

    assert await db.dbsize() == 0


async def test_a_corrupt_backup_is_not_listed(
    db: redis.asyncio.Redis, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    await seed(db, "session:", 3)
    provider = make_provider()
    await provider.clear(Recorder())
    [good] = await provider.backups()
    truncated = tmp_path / "backups" / good.name.replace("Z_", "9Z_").replace(".123", ".12")
    data = (tmp_path / "backups" / good.name).read_bytes()
    truncated.write_bytes(data[:-5])

    assert [b.name for b in await provider.backups()] == [good.name]


async def test_a_password_in_the_url_never_shows(
    make_provider: ProviderFactory, redis_url: str
) -> None:
    address = redis_url.split("//", 1)[1].split("/", 1)[0]
    # Each provider reads REDIS_URL when it first connects, so each is used right away.
    wrong = make_provider(f"redis://rollbot-nobody:{PASSWORD}@{address}/0")
    with pytest.raises(AuthRejected) as rejected:
        await wrong.clear(Recorder())
    closed = make_provider(f"redis://:{PASSWORD}@127.0.0.1:1/0")
    with pytest.raises(Transient) as refused:
        await closed.describe_state()

    for error in (rejected.value, refused.value):
        text = f"{error.message} {error.target_state} {error!r}"
        assert PASSWORD not in text
        assert "127.0.0.1" in error.message
    assert "REDIS_URL" in rejected.value.message


async def test_a_missing_url_is_a_clear_refusal(
    make_provider: ProviderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = make_provider()
    monkeypatch.delenv("REDIS_URL")

    with pytest.raises(Refused, match="REDIS_URL is not set"):
        await provider.plan_clear()


@pytest.mark.parametrize(
    "scope",
    [{}, {"pattern": "session:*", "flush_database": True}, {"pattern": ""}],
)
def test_settings_need_exactly_one_scope(scope: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError):
        RedisStateSettings.model_validate(
            {"provider": "redis_state", "backup_dir": tmp_path, **scope}
        )


def test_settings_name_the_secret_variable(tmp_path: Path) -> None:
    settings = RedisStateSettings.model_validate(
        {"provider": "redis_state", "backup_dir": tmp_path, "pattern": "s:*", "url_env": "CACHE"}
    )

    assert settings.secret_variables() == {"url_env": "CACHE"}
    assert all(f.description for f in RedisStateSettings.model_fields.values())


async def test_a_count_stops_at_its_deadline(
    db: redis.asyncio.Redis, make_provider: ProviderFactory, scratch_db: str
) -> None:
    await seed(db, "session:", 5_000)
    # One key per SCAN call: 5000 round trips cannot fit in 10 ms.
    provider = make_provider(batch_size=1, count_timeout_seconds=0.01)

    state = await provider.describe_state()

    assert state.startswith("at least ")
    assert state.endswith(f"keys (counted for 0.01 s) match `session:*` in {where(scratch_db)}")
    assert await db.dbsize() == 5_000


async def test_backups_are_listed_newest_first(
    db: redis.asyncio.Redis, make_provider: ProviderFactory
) -> None:
    provider = make_provider()
    await seed(db, "session:", 3)
    await provider.clear(Recorder())
    await seed(db, "session:", 5)
    await provider.clear(Recorder())

    listed = await provider.backups()

    assert [b.key_count for b in listed] == [5, 3]
    assert listed[0].created_at > listed[1].created_at
    assert all(b.size_bytes > 0 and b.scope == "pattern `session:*`" for b in listed)


async def test_a_clear_past_its_deadline_deletes_nothing_without_a_backup(
    db: redis.asyncio.Redis, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    await seed(db, "session:", 5_000)
    provider = make_provider(batch_size=1, operation_timeout_seconds=0.05)

    with pytest.raises(TimedOut) as caught:
        await provider.clear(Recorder())

    assert caught.value.message == "The clear did not finish within 0.05 s."
    assert (caught.value.target_state or "").startswith("nothing was deleted: ")
    assert await db.dbsize() == 5_000
    assert list((tmp_path / "backups").iterdir()) == []


async def test_a_connection_reset_mid_restore_says_what_was_restored(
    db: redis.asyncio.Redis, make_provider: ProviderFactory, scratch_db: str
) -> None:
    await seed(db, "session:", 20_000)
    address, number = scratch_db.split("//", 1)[1].split("/", 1)
    host, port = address.split(":")
    async with tcp_proxy([(host, int(port))]) as proxy:
        provider = make_provider(f"redis://127.0.0.1:{proxy.port}/{number}", batch_size=100)
        await provider.clear(Recorder())
        [backup] = await provider.backups()

        async def cut_half_way() -> None:
            while await db.dbsize() < 5_000:
                await asyncio.sleep(0.001)
            proxy.cut()

        cutter = asyncio.create_task(cut_half_way())
        with pytest.raises(RollbackFailed) as caught:
            await provider.restore(backup.name, Recorder())
        await cutter

        message = caught.value.message
        found = re.search(
            r"Restored (\d+) of 20000 keys; (\d+) keys sent to (.+) when it failed may or may "
            r"not have been restored; (\d+) keys were not restored\.",
            message,
        )
        assert found, message
        restored, unsure, left = (int(found[n]) for n in (1, 2, 4))
        assert "Connection" in message or "connection" in message
        assert found[3] == f"redis 127.0.0.1:{proxy.port} db {number}"
        assert restored + unsure + left == 20_000
        assert restored <= await db.dbsize() <= restored + unsure
        assert "Running the restore again is safe" in message
        # The server cannot be reached, and the state says so instead of guessing.
        assert (caught.value.target_state or "").startswith("unknown (")

        proxy.restore()
        await provider.aclose()
        outcome = await provider.restore(backup.name, Recorder())

    assert outcome.summary.startswith("Restored 20000 keys")
    assert await db.dbsize() == 20_000


async def test_a_user_without_info_can_still_clear(
    db: redis.asyncio.Redis, make_provider: ProviderFactory, scratch_db: str
) -> None:
    # Managed Redis often denies INFO; the check for a cluster node must not block a clear.
    user = f"rollbot-noinfo-{uuid.uuid4().hex[:8]}"
    await db.execute_command("ACL", "SETUSER", user, "on", f">{PASSWORD}", "~*", "+@all", "-info")
    try:
        await seed(db, "session:", 5)
        address, number = scratch_db.split("//", 1)[1].split("/", 1)
        provider = make_provider(f"redis://{user}:{PASSWORD}@{address}/{number}")

        outcome = await provider.clear(Recorder())
    finally:
        await db.execute_command("ACL", "DELUSER", user)

    assert outcome.summary.startswith("Deleted 5 keys matching `session:*`")
    assert await db.dbsize() == 0


async def test_a_backup_says_which_rollback_took_it(
    db: redis.asyncio.Redis, make_provider: ProviderFactory
) -> None:
    await seed(db, "session:", 3)
    provider = make_provider()

    with running_for("rb-0badcafe"):
        outcome = await provider.clear(Recorder())

    [backup] = await provider.backups()
    assert backup.rollback == "rb-0badcafe"
    assert "taken by rb-0badcafe" in backup.describe()
    assert backup.name in " ".join([outcome.summary, *outcome.notes])
