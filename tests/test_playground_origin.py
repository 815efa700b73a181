"""The playground acts only for its own page: other origins and non-JSON bodies are refused."""

from __future__ import annotations

import httpx

from tests.e2e_helpers import CHANNEL, REQUESTER, backend_config
from tests.support.bot import StartBot
from tests.support.docker import free_port, unique_project
from tests.support.playground import ServePlayground

HELP = {"user": REQUESTER, "channel": CHANNEL, "text": "/rollback help"}


async def test_only_the_page_itself_or_a_tool_may_act(
    start_rollbot: StartBot, serve_playground: ServePlayground
) -> None:
    bot = await start_rollbot(backend_config(unique_project(), 9))
    url = await serve_playground(bot.fake, bot.slack)
    port = httpx.URL(url).port
    refused = [
        {"Origin": "http://evil.example"},
        {"Origin": f"http://127.0.0.1:{free_port()}"},  # the same machine, another server
        {"Origin": f"https://127.0.0.1:{port}"},
        {"Origin": "null"},  # a sandboxed frame, a file:// page
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of 127.0.0.1 is the same site
    ]
    allowed = [
        {"Origin": f"http://127.0.0.1:{port}"},
        {"Origin": f"http://localhost:{port}"},
        {"Sec-Fetch-Site": "same-origin"},
        {},  # curl, scripts and tests name no origin
    ]

    async with httpx.AsyncClient(base_url=url) as client:
        refusals = [await client.post("/api/command", json=HELP, headers=h) for h in refused]
        for path in ("/api/click", "/api/view/close", "/api/reset"):
            refusals.append(await client.post(path, json={}, headers=refused[0]))
        not_json = await client.post(
            "/api/command", content=str(HELP), headers={"Content-Type": "text/plain"}
        )
        assert [r.status_code for r in refusals] == [403] * len(refusals)
        assert not_json.status_code == 415
        assert bot.slack.sent == []

        answers = [await client.post("/api/command", json=HELP, headers=h) for h in allowed]
        reading = await client.get("/api/config", headers=refused[0])

    assert [a.status_code for a in answers] == [200] * len(allowed)
    assert reading.status_code == 200
    assert len(bot.slack.sent) == len(allowed)
    await bot.fake.wait_for(
        lambda: (
            sum("/rollback list SERVICE" in body.get("text", "") for _, body in bot.fake.responses)
            == len(allowed)
        )
    )
