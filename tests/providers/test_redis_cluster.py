"""The redis_state provider against a real three-primary Redis Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from providers.base import Refused, RollbackFailed
from providers.redis_state import RedisStateProvider, RedisStateSettings
from tests.support.progress import Recorder
from tests.support.redis_cluster import SlotMover, keys_on, node_client

ProviderFactory = Callable[..., RedisStateProvider]


@pytest.fixture
async def make_provider(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_cluster_url: str, cluster_prefix: str
) -> AsyncIterator[ProviderFactory]:
    """Build cluster providers of this test's keys (URL in REDIS_URL); close them after."""
    made: list[RedisStateProvider] = []

    def make(url: str | None = None, **settings: Any) -> RedisStateProvider:
        monkeypatch.setenv("REDIS_URL", url or redis_cluster_url)
        values: dict[str, Any] = {
            "provider": "redis_state",
            "cluster": True,
            "backup_dir": tmp_path / "backups",
            "pattern": f"{cluster_prefix}session:*",
            **settings,
        }
        provider = RedisStateProvider(RedisStateSettings.model_validate(values))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def seed(cluster: RedisCluster, keys: list[str], ttl_ms: int = 0) -> None:
    """Create string keys whose value is their name, spread over the cluster's slots."""
    async with cluster.pipeline() as pipe:
        for key in keys:
            pipe.set(key, key, px=ttl_ms or None)
        await pipe.execute()


def where(url: str) -> str:
    return f"redis cluster {url.split('//', 1)[1].split('/', 1)[0]}"


async def test_a_count_scans_every_primary(
    cluster: RedisCluster,
    make_provider: ProviderFactory,
    cluster_prefix: str,
    cluster_nodes: list[str],
    redis_cluster_url: str,
) -> None:
    await seed(cluster, [f"{cluster_prefix}session:{i}" for i in range(300)])
    await seed(cluster, [f"{cluster_prefix}other:{i}" for i in range(30)])
    provider = make_provider(batch_size=20)

    state = await provider.describe_state()
    plan = await provider.plan_clear()

    # The keys really are on all three nodes, so a one-node SCAN would count about 100.
    per_node = [len(await keys_on(n, f"{cluster_prefix}session:")) for n in cluster_nodes]
    assert all(count > 50 for count in per_node), per_node
    pattern = f"{cluster_prefix}session:*"
    assert state == f"300 keys match `{pattern}` in {where(redis_cluster_url)}"
    assert f"Back up keys matching `{pattern}` (300 keys)" in plan.steps[0]


async def test_clear_and_restore_keys_spread_over_three_nodes(
    cluster: RedisCluster,
    make_provider: ProviderFactory,
    cluster_prefix: str,
    cluster_nodes: list[str],
) -> None:
    keys = [f"{cluster_prefix}session:{i}" for i in range(600)]
    await seed(cluster, keys[:300])
    await seed(cluster, keys[300:], ttl_ms=600_000)
    await cluster.hset(f"{cluster_prefix}session:hash", mapping={"user": "ann"})
    await seed(cluster, [f"{cluster_prefix}cache:{i}" for i in range(50)])
    provider = make_provider(batch_size=64)

    cleared = await provider.clear(Recorder())

    assert cleared.summary.startswith("Deleted 601 keys matching")
    for node in cluster_nodes:
        assert await keys_on(node, f"{cluster_prefix}session:") == set()
        assert await keys_on(node, f"{cluster_prefix}cache:") != set()
    [backup] = await provider.backups()
    assert backup.key_count == 601

    progress = Recorder()
    outcome = await provider.restore(backup.name, progress)

    assert outcome.summary.startswith(f"Restored 601 keys of {backup.name}")
    assert await cluster.mget_nonatomic(keys) == [k.encode() for k in keys]
    assert await cluster.hgetall(f"{cluster_prefix}session:hash") == {b"user": b"ann"}
    assert await cluster.pttl(keys[0]) == -1
    assert 590_000 < await cluster.pttl(keys[-1]) <= 600_000
    for node in cluster_nodes:
        assert len(await keys_on(node, f"{cluster_prefix}session:")) > 100


@pytest.mark.parametrize("move", ["finished (MOVED)", "half-way (ASK)"])
async def test_a_restore_follows_a_slot_that_moved_since_the_backup(
    cluster: RedisCluster,
    make_provider: ProviderFactory,
    cluster_prefix: str,
    slot_mover: SlotMover,
    move: str,
) -> None:
    # Keys with one hash tag share one slot, so the whole group moves with it.
    moving = [f"{cluster_prefix}session:{{{cluster_prefix}moving}}:{i}" for i in range(20)]
    staying = [f"{cluster_prefix}session:{i}" for i in range(100)]
    await seed(cluster, moving + staying)
    provider = make_provider(batch_size=50)
    await provider.clear(Recorder())
    [backup] = await provider.backups()
    slot = cluster.keyslot(moving[0])
    source = slot_mover.owner(slot)
    target = slot_mover.other_than(source)
    # The provider's client still maps the slot to `source`: its RESTOREs go there first.
    if move.startswith("finished"):
        await slot_mover.move(slot, target)
    else:
        await slot_mover.start(slot, target)

    outcome = await provider.restore(backup.name, Recorder())

    assert outcome.summary.startswith("Restored 120 keys")
    if not move.startswith("finished"):
        await slot_mover.finish(slot, target)
    assert await keys_on(target, f"{cluster_prefix}session:{{") == {k.encode() for k in moving}
    assert await keys_on(source, f"{cluster_prefix}session:{{") == set()
    await cluster.aclose()  # a fresh map of the slots for the reads below
    assert await cluster.mget(moving) == [k.encode() for k in moving]


async def test_one_node_not_answering_says_what_was_and_was_not_restored(
    cluster: RedisCluster,
    make_provider: ProviderFactory,
    cluster_prefix: str,
    cluster_nodes: list[str],
) -> None:
    keys = [f"{cluster_prefix}session:{i}" for i in range(300)]
    await seed(cluster, keys)
    provider = make_provider(batch_size=30, command_timeout_seconds=0.5)
    await provider.clear(Recorder())
    [backup] = await provider.backups()
    stuck = cluster_nodes[2]
    on_stuck = {k for k in keys if cluster.get_node_from_key(k).name == stuck}
    # The node takes no write for 3 s, as a node stalled by a fork or a slow disk does.
    async with node_client(stuck) as client:
        await client.execute_command("CLIENT PAUSE", 3000, "WRITE")

    with pytest.raises(RollbackFailed) as caught:
        await provider.restore(backup.name, Recorder())

    message = caught.value.message
    healthy = len(keys) - len(on_stuck)
    assert f"{stuck} did not answer in time" in message
    assert f"Restored {healthy} of 300 keys" in message
    assert "Running the restore again is safe" in message
    # The batch in flight on the stuck node may still land once it wakes; the rest cannot.
    unsure = int(message.split(" sent to ")[0].rsplit(" ", 2)[-2])
    assert 0 < unsure <= 30
    assert f"{len(on_stuck) - unsure} keys were not restored" in message
    for node in cluster_nodes[:2]:
        assert len(await keys_on(node, f"{cluster_prefix}session:")) > 50
    await asyncio.sleep(3)
    assert len(await keys_on(stuck, f"{cluster_prefix}session:")) <= unsure


async def test_a_plain_client_on_a_cluster_node_is_refused(
    cluster: RedisCluster, make_provider: ProviderFactory, cluster_prefix: str
) -> None:
    await seed(cluster, [f"{cluster_prefix}session:{i}" for i in range(30)])
    provider = make_provider(cluster=False)

    with pytest.raises(Refused) as caught:
        await provider.clear(Recorder())

    assert "is a Redis Cluster node" in caught.value.message
    assert "cluster: true" in caught.value.message
    assert len(await cluster.keys(f"{cluster_prefix}session:*", target_nodes="primaries")) == 30
    assert await provider.backups() == []


async def test_cluster_mode_on_a_plain_server_or_a_database_number_is_refused(
    make_provider: ProviderFactory, redis_url: str, redis_cluster_url: str
) -> None:
    plain = make_provider(redis_url)
    with pytest.raises(Refused, match="cluster mode is not enabled") as caught:
        await plain.describe_state()
    assert "cluster: false" in caught.value.message

    numbered = make_provider(redis_cluster_url.rsplit("/", 1)[0] + "/3")
    with pytest.raises(Refused, match="only database 0"):
        await numbered.describe_state()


async def test_flush_database_empties_every_primary_and_restores(
    cluster: RedisCluster,
    make_provider: ProviderFactory,
    cluster_prefix: str,
    cluster_nodes: list[str],
    redis_cluster_url: str,
) -> None:
    keys = [f"{cluster_prefix}any:{i}" for i in range(90)]
    await seed(cluster, keys)
    provider = make_provider(flush_database=True, pattern=None)

    outcome = await provider.clear(Recorder())

    assert outcome.summary == f"Flushed {where(redis_cluster_url)}: 90 keys removed."
    assert await provider.describe_state() == f"{where(redis_cluster_url)} holds 0 keys"
    for node in cluster_nodes:
        assert await keys_on(node, cluster_prefix) == set()
    [backup] = await provider.backups()
    await provider.restore(backup.name, Recorder())
    assert await cluster.mget_nonatomic(keys) == [k.encode() for k in keys]
