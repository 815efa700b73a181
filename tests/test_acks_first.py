"""Acks first: work after an ack waits for the requests still waiting for theirs, briefly."""

from __future__ import annotations

import asyncio

from handlers.acks_first import AcksFirst


async def test_work_waits_until_the_requests_before_it_are_acked() -> None:
    gate, order = AcksFirst(), list[str]()
    acked = asyncio.Event()

    async def request() -> None:
        with gate.until_acked():
            await acked.wait()
            order.append("acked")

    async def work() -> None:
        await gate.turn(most=30)
        order.append("work")

    waiting = asyncio.create_task(request())
    await asyncio.sleep(0)
    working = asyncio.create_task(work())
    await asyncio.sleep(0.05)
    assert order == []
    acked.set()
    await asyncio.wait_for(asyncio.gather(waiting, working), 5)
    assert order == ["acked", "work"]


async def test_work_goes_on_after_its_turn_while_requests_keep_coming() -> None:
    gate = AcksFirst()
    with gate.until_acked():
        await asyncio.wait_for(gate.turn(most=0.05), 5)
        assert gate.waiting == 1


async def test_without_requests_waiting_work_does_not_wait() -> None:
    gate = AcksFirst()
    await asyncio.wait_for(gate.turn(most=3600), 1)
    with gate.until_acked():
        pass
    assert gate.waiting == 0
    await asyncio.wait_for(gate.turn(most=3600), 1)
