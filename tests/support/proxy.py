"""A TCP proxy written for the tests: round-robin over backends, and a switch to cut it.

Cutting it closes every open connection and refuses new ones, as a database that went
away (or a network that broke) looks to a client; restoring it lets connections through.
A backend that refuses a connection (a killed replica) is passed over for the next one,
as a load balancer retries a failed connect. With `pinned=True` it also listens on one
port per backend whose connections always go to that backend, so a test can reach one
of several replicas through the same proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from functools import partial

from tests.support.docker import free_port


class TcpProxy:
    """Listens on 127.0.0.1:`port` and pipes each connection to the next backend."""

    def __init__(self, backends: Sequence[tuple[str, int]], *, pinned: bool = False) -> None:
        self.backends = list(backends)
        self.port = free_port()
        # With `pinned`: pinned_ports[i] leads to backends[i] only.
        self.pinned_ports = [free_port() for _ in self.backends] if pinned else []
        self.up = True
        # Which backend each connection went to, in order; None: none accepted it.
        self.chosen: list[int | None] = []
        self._next = itertools.cycle(range(len(self.backends)))
        self._servers: list[asyncio.Server] = []
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        """Start listening."""
        self._servers.append(await asyncio.start_server(self._serve, "127.0.0.1", self.port))
        for index, port in enumerate(self.pinned_ports):
            serve = partial(self._serve, pinned=index)
            self._servers.append(await asyncio.start_server(serve, "127.0.0.1", port))
        return self

    async def close(self) -> None:
        """Stop listening and close every connection."""
        self.cut()
        for server in self._servers:
            server.close()
            await server.wait_closed()

    def cut(self) -> None:
        """Close every open connection and refuse new ones until `restore`."""
        self.up = False
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        """Let connections through again."""
        self.up = True

    def _order(self, pinned: int | None) -> list[int]:
        """The backends to try for a new connection, in turn."""
        if pinned is not None:
            return [pinned]
        first = next(self._next)
        return [(first + k) % len(self.backends) for k in range(len(self.backends))]

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pinned: int | None = None
    ) -> None:
        if not self.up:
            writer.transport.abort()
            return
        for index in self._order(pinned):
            host, port = self.backends[index]
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                continue
            self.chosen.append(index)
            self._open.update({writer, up_writer})
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            self._open.difference_update({writer, up_writer})
            return
        self.chosen.append(None)
        writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes until either side closes, then close the other."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


@contextlib.asynccontextmanager
async def tcp_proxy(backends: Sequence[tuple[str, int]]) -> AsyncIterator[TcpProxy]:
    """A started proxy, closed afterwards."""
    proxy = await TcpProxy(backends).start()
    try:
        yield proxy
    finally:
        await proxy.close()
