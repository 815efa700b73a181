"""A bare slack-bolt AsyncApp that only acks: the baseline `bench/ack.py` weighs rollbot against.

It verifies signatures with the signing secret from SLACK_SIGNING_SECRET, as rollbot does,
and talks to the Slack API at SLACK_API_URL (the bench's FakeSlack) with SLACK_BOT_TOKEN.
`/rollback` and every block_actions click are acked and nothing else. aiohttp serves it
through Bolt's own adapter (`app.web_app()`), with `/healthz` for the start-up poll.

    python bench/bare_bolt.py --port PORT
"""

from __future__ import annotations

import argparse
import os
import re

from aiohttp import web
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient


def build() -> web.Application:
    """The Bolt app with its two ack-only listeners, as an aiohttp application."""
    token = os.environ["SLACK_BOT_TOKEN"]
    # Like rollbot, Bolt checks the token with auth.test (at the fake) before the first request.
    app = AsyncApp(
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        client=AsyncWebClient(token=token, base_url=os.environ["SLACK_API_URL"]),
    )

    @app.command("/rollback")
    async def command(ack: AsyncAck) -> None:
        await ack()

    @app.action(re.compile(".*"))
    async def click(ack: AsyncAck) -> None:
        await ack()

    web_app = app.web_app(path="/slack/events")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    web_app.router.add_get("/healthz", healthz)
    return web_app


def main() -> None:
    """Serve the app on 127.0.0.1 until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(build(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
