"""Acks first: work that follows an ack yields, briefly, to requests still waiting for theirs.

Every request's ack and the work earlier requests do after their acks (a reply, a store
read, a rollback starting) share one event loop. When many people act at once during an
incident, that work would push the acks back, and Slack shows a person an error after 3 s
without one; the work itself has no such deadline. So work after an ack waits until no
request is waiting for its ack, for at most `TURN_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

# Under a steady stream of requests the work still goes on after this long.
TURN_SECONDS = 0.25


class AcksFirst:
    """Counts the requests not yet acked; lets work wait its turn behind them."""

    def __init__(self) -> None:
        self.waiting = 0
        self._clear: asyncio.Event | None = None

    @contextlib.contextmanager
    def until_acked(self) -> Iterator[None]:
        """Count one request from its arrival until its ack is answered."""
        self.waiting += 1
        try:
            yield
        finally:
            self.waiting -= 1
            if self.waiting == 0 and self._clear is not None:
                self._clear.set()

    async def turn(self, most: float = TURN_SECONDS) -> None:
        """Wait until no request waits for its ack, or `most` seconds."""
        if self.waiting == 0:
            return
        if self._clear is None or self._clear.is_set():
            self._clear = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._clear.wait(), most)
