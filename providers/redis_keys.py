"""The Redis side of redis_state: one server, or every primary of a Redis Cluster.

What Redis defines, and this module relies on:

- ``SCAN`` walks one server's keyspace; in a cluster each primary holds only its own hash
  slots, so a cluster walk is one SCAN per primary ("Redis cluster specification": keys are
  mapped to 16384 slots, each served by one primary).
- A command naming several keys must keep them in one slot in a cluster (``CROSSSLOT``
  otherwise), so UNLINK goes out per slot; RESTORE and DUMP name one key each.
- A node answers ``-MOVED slot host:port`` for a slot it no longer serves and ``-ASK`` for
  a key of a slot being migrated away; redis-py's cluster client follows both (for a
  pipeline, it re-sends the redirected commands one by one), and refreshes its slot map.
- A clear or restore stops between commands, never by cancelling one mid-flight.

The client makes no retries of its own (neither connection nor cluster-level ones): a
RESTORE or UNLINK that timed out may have been applied, and a second one is not ours to
send blindly. Reads are retried by `providers.retry.retrying` in the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from providers.base import AuthRejected, ProviderError, Refused, TimedOut, Transient, sentence
from providers.redis_backups import EXPIRED, NO_TTL, Entry

MAX_ERROR_TEXT = 300
# Errors after which a node's state is unknown: the command may or may not have run.
LOST = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

Client = redis.asyncio.Redis | RedisCluster


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


@dataclass
class Tally:
    """What a clear or restore has done so far, for its outcome or its failure message."""

    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    # Per node that stopped answering: why, and how many keys were in flight to it then.
    lost: dict[str, ProviderError] = field(default_factory=dict)
    unsure: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True)
class Timeouts:
    """The client's deadlines, in seconds."""

    connect: float
    command: float


def check_time(give_up_at: float) -> None:
    """Stop between two commands once the time is up.

    Checked, not cancelled: a redis-py command cancelled by an outer asyncio.timeout may
    swallow the cancellation (seen here), and a half-sent batch leaves its outcome unknown;
    each single command is bounded by the socket timeout instead.
    """
    if time.monotonic() > give_up_at:
        raise TimeoutError


class RedisKeys:
    """Scans, dumps, deletes and restores keys on one server or across a cluster."""

    def __init__(self, url_env: str, *, cluster: bool, timeouts: Timeouts) -> None:
        self._url_env = url_env
        self._cluster = cluster
        self._timeouts = timeouts
        self._client: Client | None = None
        self._checked = False
        self._secrets = Secrets(())
        self.where = "redis cluster" if cluster else "redis"

    def connect(self) -> Client:
        """Return the one client, created on first use from the URL read now."""
        if self._client is not None:
            return self._client
        url = os.environ.get(self._url_env)
        if not url:
            raise Refused(f"{self._url_env} is not set: rollbot has no Redis URL to use.")
        self._secrets = Secrets.of(url)
        options: dict[str, Any] = {
            "socket_connect_timeout": self._timeouts.connect,
            "socket_timeout": self._timeouts.command,
            "retry": Retry(NoBackoff(), 0),
        }
        try:
            if self._cluster:
                cluster = RedisCluster.from_url(url, **options)
                self.where = f"redis cluster {cluster.startup_nodes[0].name}"
                client: Client = cluster
            else:
                client = redis.asyncio.Redis.from_url(url, **options)
                self.where = _where(client.connection_pool.connection_kwargs)
        except redis.exceptions.RedisClusterException as exc:
            raise Refused(
                f"{self._url_env} cannot be used in cluster mode: a Redis Cluster has only "
                f"database 0 and no unix sockets ({self.redact(str(exc))})."
            ) from exc
        except ValueError as exc:
            raise Refused(
                f"{self._url_env} is not a usable Redis URL: {self.redact(str(exc))}"
            ) from exc
        self._client = client
        return client

    async def aclose(self) -> None:
        """Close the client."""
        if self._client is not None:
            client, self._client = self._client, None
            self._checked = False
            await client.aclose()

    # -- reads ------------------------------------------------------------------------------

    async def scan(self, pattern: str | None, count: int) -> AsyncIterator[list[bytes]]:
        """Yield SCAN batches of every primary, one primary after the other."""
        client = await self._ready()
        args = ["MATCH", pattern] if pattern else []
        for node in self._primaries(client):
            cursor: Any = 0
            while True:
                cursor, keys = await self._on_node(
                    node, "Scanning keys (SCAN)", "SCAN", cursor, *args, "COUNT", count
                )
                if isinstance(cursor, dict):  # a cluster client answers per node
                    cursor = next(iter(cursor.values()))
                if keys:
                    yield list(keys)
                if int(cursor) == 0:
                    break

    async def size(self) -> int:
        """Return how many keys the database holds (every primary's DBSIZE added up)."""
        client = await self._ready()
        return sum([await self._size_of(node) for node in self._primaries(client)])

    async def _size_of(self, node: ClusterNode | None) -> int:
        return int(await self._on_node(node, "Reading DBSIZE", "DBSIZE"))

    async def _on_node(self, node: ClusterNode | None, what: str, *args: Any) -> Any:
        """Run one command on one node (on the server, for a single server)."""
        target = {} if node is None else {"target_nodes": node}
        return await self._call(
            lambda c: c.execute_command(*args, **target), what, self._name(node)
        )

    async def dump(self, keys: list[bytes]) -> list[Entry]:
        """PTTL + DUMP a batch in one pipeline; a key gone meanwhile is left out."""
        if not keys:
            return []
        replies = await self._pipeline(
            [("PTTL", k) for k in keys] + [("DUMP", k) for k in keys],
            "Backing up a batch of keys (PTTL + DUMP)",
        )
        entries = []
        for key, ttl, payload in zip(keys, replies[: len(keys)], replies[len(keys) :], strict=True):
            for reply in (ttl, payload):
                if isinstance(reply, Exception):
                    raise self.error(reply, f"Backing up key {show(key)}")
            if payload is None:
                continue
            # PTTL was read before DUMP: a key that expired in between is kept, marked expired.
            entries.append(Entry(key, ttl if ttl > 0 or ttl == NO_TTL else EXPIRED, payload))
        return entries

    # -- writes -----------------------------------------------------------------------------

    async def unlink(self, keys: list[bytes], tally: Tally) -> None:
        """UNLINK a batch, one command per hash slot in a cluster; count what went."""
        client = await self._ready()
        groups: dict[int, list[bytes]] = defaultdict(list)
        for key in keys:
            groups[client.keyslot(key) if isinstance(client, RedisCluster) else 0].append(key)
        replies = await self._pipeline(
            [("UNLINK", *group) for group in groups.values()], "Deleting a batch of keys (UNLINK)"
        )
        tally.done += sum(r for r in replies if isinstance(r, int))
        for reply in replies:
            if isinstance(reply, Exception):
                raise self.error(reply, "Deleting a batch of keys (UNLINK)")

    async def flush(self) -> int:
        """Count and flush the database; return how many keys it held."""
        client = await self._ready()
        if not isinstance(client, RedisCluster):
            # One MULTI: the count is exactly what the flush removed.
            size, _ = await self._pipeline(
                [("DBSIZE",), ("FLUSHDB", "ASYNC")], "FLUSHDB ASYNC", transaction=True
            )
            return int(size)
        # A MULTI cannot span nodes: each primary is counted, then flushed.
        total = 0
        for node in self._primaries(client):
            total += await self._size_of(node)
            await self._on_node(node, "FLUSHDB ASYNC", "FLUSHDB", "ASYNC")
        return total

    async def restore(self, entries: list[Entry], tally: Tally) -> None:
        """RESTORE ... REPLACE a batch, one pipeline per node; a node that fails is given up.

        Keys of a node given up on are not sent again: what the node did with its last
        batch is unknown, and a failing node is not hammered once per batch.
        """
        client = await self._ready()
        groups: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            groups[self._owner(client, entry.key)].append(entry)
        await asyncio.gather(
            *(self._restore_on(node, group, tally) for node, group in groups.items())
        )

    def all_lost(self, tally: Tally) -> bool:
        """Say whether every node the client knows has been given up on."""
        client = self._client
        if client is None:
            return False
        return all(self._name(n) in tally.lost for n in self._primaries(client))

    async def _restore_on(self, node: str, entries: list[Entry], tally: Tally) -> None:
        if node in tally.lost:
            return
        what = "Restoring a batch of keys (RESTORE)"
        commands = [("RESTORE", e.key, max(e.ttl_ms, 0), e.payload, "REPLACE") for e in entries]
        try:
            replies = await self._pipeline(commands, what, node)
        except ProviderError as exc:
            if not isinstance(exc.__cause__, LOST):
                raise
            tally.lost[node], tally.unsure[node] = exc, tally.unsure[node] + len(entries)
            return
        for entry, reply in zip(entries, replies, strict=True):
            if isinstance(reply, LOST):
                tally.lost.setdefault(node, self.error(reply, what, node))
                tally.unsure[node] += 1
            elif isinstance(reply, Exception):
                tally.failed.append(f"{show(entry.key)}: {self.redact(str(reply))}")
            else:
                tally.done += 1

    # -- plumbing ---------------------------------------------------------------------------

    async def _ready(self) -> Client:
        """Return the client, once it is known to talk to the kind of server configured."""
        client = self.connect()
        if self._checked:
            return client
        if isinstance(client, RedisCluster):
            await self._call(lambda c: c.initialize(), "Reading the cluster's slot map")
        else:
            try:
                info = await client.info("cluster")
            except redis.exceptions.ResponseError:
                # INFO denied or renamed (common on managed Redis): nothing to tell either way.
                info = {}
            except (redis.exceptions.RedisError, OSError) as exc:
                raise self.error(exc, "Reading INFO cluster") from exc
            if info.get("cluster_enabled"):
                raise Refused(
                    f"{self.where} is a Redis Cluster node: a plain SCAN there sees only that "
                    "node's keys. Set `cluster: true` in this step's settings."
                )
        self._checked = True
        return client

    async def _call(
        self, command: Callable[[Any], Awaitable[Any]], what: str, place: str | None = None
    ) -> Any:
        """Run one call on the client; redis errors become provider errors."""
        client = self.connect()
        try:
            return await command(client)
        except (
            redis.exceptions.RedisError,
            redis.exceptions.RedisClusterException,
            OSError,
        ) as exc:
            raise self.error(exc, what, place) from exc

    async def _pipeline(
        self,
        commands: Sequence[tuple[Any, ...]],
        what: str,
        place: str | None = None,
        *,
        transaction: bool = False,
    ) -> list[Any]:
        """Send commands in one round trip per node; per-command errors come back as values."""

        async def run(client: Any) -> list[Any]:
            async with client.pipeline(transaction=transaction) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
                return replies

        return list(await self._call(run, what, place))

    def _primaries(self, client: Client) -> list[ClusterNode | None]:
        """The nodes whose keys make up the database: the primaries, or the one server."""
        if isinstance(client, RedisCluster):
            primaries: list[ClusterNode | None] = list(client.get_primaries())
            return sorted(primaries, key=self._name)
        return [None]

    def _owner(self, client: Client, key: bytes) -> str:
        """The node a key's slot belongs to, as the client's slot map has it now."""
        if isinstance(client, RedisCluster):
            node = client.nodes_manager.get_node_from_slot(client.keyslot(key))
            return self._name(node)
        return self.where

    def _name(self, node: ClusterNode | None) -> str:
        return self.where if node is None else str(node.name)

    def error(self, exc: BaseException, what: str, place: str | None = None) -> ProviderError:
        """Map a redis exception onto the provider error tree, without the password."""
        place = place or self.where
        if isinstance(exc, redis.exceptions.TimeoutError | TimeoutError):
            return TimedOut(
                f"{what}: {place} did not answer in time "
                f"(command_timeout_seconds: {self._timeouts.command:g})."
            )
        text = f"{what} on {place} failed: {sentence(self.redact(str(exc))[:MAX_ERROR_TEXT])}"
        if isinstance(
            exc, redis.exceptions.AuthenticationError | redis.exceptions.NoPermissionError
        ):
            return AuthRejected(f"{text} Check the credentials in {self._url_env}.")
        if "Cluster mode is not enabled" in str(exc):
            return Refused(
                f"{self.where} is not a Redis Cluster (cluster mode is not enabled there). "
                "Set `cluster: false` in this step's settings."
            )
        if isinstance(exc, redis.exceptions.ConnectionError | OSError) or (
            "cannot be connected" in str(exc)
        ):
            return Transient(text)
        return Refused(text)

    def redact(self, text: str) -> str:
        """Remove the URL's secrets from a text."""
        return self._secrets.redact(text)


def _where(kwargs: dict[str, Any]) -> str:
    """Say which server and database the client talks to (no credentials)."""
    place = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return f"redis {place} db {kwargs.get('db', 0)}"


def show(key: bytes) -> str:
    """A key as a message may show it: the start of it, non-printable bytes escaped."""
    return repr(key[:80])[2:-1]
