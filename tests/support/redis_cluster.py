"""A real three-primary Redis Cluster started by the test command, and slot moves on it.

Start it with `scripts/start-redis-cluster.sh` and run pytest with
`ROLLBOT_TEST_REDIS_CLUSTER_URL=redis://127.0.0.1:57001/0`. As with the other services, a
missing or unhealthy cluster fails the tests that need it instead of skipping them.

Slots move the way the Redis Cluster specification describes resharding ("Cluster live
reconfiguration"): the target node is set IMPORTING, the source MIGRATING, the keys go over
with MIGRATE, and CLUSTER SETSLOT ... NODE ends the move. While a slot is half-way, the
source answers `-ASK` for a key it no longer holds; once moved, `-MOVED`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio
import redis.cluster
from redis.asyncio.cluster import RedisCluster

CLUSTER_URL_VAR = "ROLLBOT_TEST_REDIS_CLUSTER_URL"


@pytest.fixture(scope="session")
def redis_cluster_url() -> str:
    """URL of one node of the test cluster, checked: every primary says cluster_state:ok."""
    url = os.environ.get(CLUSTER_URL_VAR)
    if not url:
        pytest.fail(
            f"{CLUSTER_URL_VAR} is not set: start the cluster with "
            "scripts/start-redis-cluster.sh and export it",
            pytrace=False,
        )
    problem = None
    try:
        with redis.cluster.RedisCluster.from_url(url, socket_timeout=5) as cluster:
            for node in cluster.get_primaries():
                with redis.Redis(node.host, node.port, socket_timeout=5) as client:
                    state = client.cluster("INFO")["cluster_state"]
                    if state != "ok":
                        problem = f"{node.name} says cluster_state:{state}"
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        problem = str(exc)
    if problem:
        pytest.fail(
            f"{CLUSTER_URL_VAR} is set but the cluster is not usable there ({problem}); "
            "start it with scripts/start-redis-cluster.sh",
            pytrace=False,
        )
    return url


@pytest.fixture
async def cluster(redis_cluster_url: str) -> AsyncIterator[RedisCluster]:
    """A cluster client for the test to seed and inspect keys with."""
    client = RedisCluster.from_url(redis_cluster_url, socket_timeout=10)
    await client.initialize()
    yield client
    await client.aclose()


@pytest.fixture
async def cluster_prefix(cluster: RedisCluster) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted from every primary after it."""
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    yield prefix
    for node in cluster.get_primaries():
        async with node_client(node.name) as client:
            async for key in client.scan_iter(match=f"{prefix}*", count=1000):
                await client.unlink(key)


def node_client(name: str) -> redis.asyncio.Redis:
    """A plain client of one cluster node (`host:port`), for commands aimed at that node."""
    host, port = name.rsplit(":", 1)
    return redis.asyncio.Redis(host=host, port=int(port), socket_timeout=10)


async def keys_on(node: str, prefix: str) -> set[bytes]:
    """The keys with this prefix that one node holds."""
    async with node_client(node) as client:
        return {k async for k in client.scan_iter(match=f"{prefix}*", count=1000)}


class SlotMover:
    """Moves hash slots between primaries, and puts them back after the test."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._moved: dict[int, str] = {}  # slot -> node that owned it first

    def owner(self, slot: int) -> str:
        """The node name that the cluster map gives for a slot."""
        return str(self._cluster.nodes_manager.get_node_from_slot(slot).name)

    def other_than(self, node: str) -> str:
        """A primary other than `node`."""
        return next(n.name for n in self._cluster.get_primaries() if n.name != node)

    async def start(self, slot: int, target: str) -> None:
        """Mark the slot IMPORTING on `target` and MIGRATING on its owner; move no key."""
        source = self.owner(slot)
        self._moved.setdefault(slot, source)
        async with node_client(target) as dst:
            await dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", await _id(source))
        async with node_client(source) as src:
            await src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", await _id(target))

    async def finish(self, slot: int, target: str) -> None:
        """MIGRATE the slot's remaining keys to `target`, then give every node the new owner."""
        source = self._moved[slot]
        host, port = target.rsplit(":", 1)
        async with node_client(source) as src:
            while keys := await src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
                await src.execute_command("MIGRATE", host, port, "", 0, 5000, "KEYS", *keys)
        await self._assign(slot, target)

    async def move(self, slot: int, target: str) -> None:
        """Move a slot with its keys to `target`, start to end."""
        await self.start(slot, target)
        await self.finish(slot, target)

    async def undo(self) -> None:
        """Give every moved slot back to its first owner (the test's keys are gone by then)."""
        for slot, source in self._moved.items():
            for node in self._cluster.get_primaries():
                async with node_client(node.name) as client:
                    keys = await client.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
                    if keys:
                        await client.unlink(*keys)
            await self._assign(slot, source)
        self._moved.clear()

    async def _assign(self, slot: int, owner: str) -> None:
        owner_id = await _id(owner)
        # The new owner first, as the specification orders it, so no node points nowhere.
        names = [owner] + [n.name for n in self._cluster.get_primaries() if n.name != owner]
        for name in names:
            async with node_client(name) as client:
                await client.execute_command("CLUSTER SETSLOT", slot, "NODE", owner_id)


async def _id(node: str) -> str:
    async with node_client(node) as client:
        return (await client.execute_command("CLUSTER MYID")).decode()


@pytest.fixture
async def slot_mover(cluster: RedisCluster) -> AsyncIterator[SlotMover]:
    """Move slots during a test; every slot goes back to its owner afterwards."""
    mover = SlotMover(cluster)
    yield mover
    await mover.undo()


@pytest.fixture
def cluster_nodes(cluster: RedisCluster) -> Iterator[list[str]]:
    """The names (`host:port`) of the cluster's primaries."""
    yield sorted(n.name for n in cluster.get_primaries())
