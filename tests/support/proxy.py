"""A TCP proxy written for the tests: round-robin over backends, and a switch to cut it.

Cutting it closes every open connection and refuses new ones, as a database that went
away (or a network that broke) looks to a client; restoring it lets connections through.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence

from tests.support.docker import free_port


class TcpProxy:
    """Listens on 127.0.0.1:`port` and pipes each connection to the next backend."""

    def __init__(self, backends: Sequence[tuple[str, int]]) -> None:
        self.backends = list(backends)
        self.port = free_port()
        self.up = True
        self.chosen: list[int] = []  # which backend each connection went to, in order
        self._next = itertools.cycle(range(len(self.backends)))
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        """Start listening."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def close(self) -> None:
        """Stop listening and close every connection."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Close every open connection and refuse new ones until `restore`."""
        self.up = False
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        """Let connections through again."""
        self.up = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        index = next(self._next)
        self.chosen.append(index)
        host, port = self.backends[index]
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.transport.abort()
            return
        self._open.update({writer, up_writer})
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        self._open.difference_update({writer, up_writer})


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
