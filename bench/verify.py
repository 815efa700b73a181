"""Verification runs its checks side by side: N http checks that each take D ms, in total.

Starts a local aiohttp server whose /slow answers 200 after D ms, and runs
`bot.verification.run_checks` over N http checks of it, several times. Prints the median
wall time of the whole verification, the same for one check alone (the baseline, measured
in the same run, turn by turn), their ratio (1.0: the checks overlap completely; N: they
run one after another) and the ideal.

    .venv/bin/python bench/verify.py [--checks 10] [--delay-ms 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import statistics
import sys
import time
from pathlib import Path

import structlog
from aiohttp import web

# Run as a script from anywhere: the repository root holds `bot`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.verification import HttpCheck, run_checks


async def serve(delay: float) -> tuple[web.AppRunner, str]:
    """A server whose /slow answers after `delay` seconds; return it and its URL."""

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/slow"


async def timed(url: str, count: int) -> float:
    """Seconds one verification of `count` checks of `url` takes; every check must pass."""
    checks = [
        HttpCheck(type="http", name=f"check {i}", url=url, timeout_seconds=5) for i in range(count)
    ]
    started = time.perf_counter()
    results = await run_checks(checks, deadline_seconds=0)
    seconds = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"a check failed: {failed[0].name}: {failed[0].detail}")
    return seconds


async def main(checks: int, delay_ms: int, rounds: int) -> None:
    runner, url = await serve(delay_ms / 1000)
    try:
        await timed(url, 1)  # warm-up: imports, the first connection
        alone, together = [], []
        for _ in range(rounds):
            alone.append(await timed(url, 1))
            together.append(await timed(url, checks))
    finally:
        await runner.cleanup()
    one, many = statistics.median(alone), statistics.median(together)
    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"machine: {platform.machine()}, {python}")
    print(f"{'verification':<28}{'median ms':>10}")
    print(f"{'1 check (baseline)':<28}{one * 1000:>10.0f}")
    print(f"{f'{checks} checks':<28}{many * 1000:>10.0f}")
    ratio = many / one
    print(f"ratio {checks} checks / 1 check: {ratio:.2f} (1.00: side by side; {checks}: in turn)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10)
    parser.add_argument("--delay-ms", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    # Each check's log line would bury the table.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        asyncio.run(main(args.checks, args.delay_ms, args.rounds))
    except KeyboardInterrupt:
        sys.exit(130)
