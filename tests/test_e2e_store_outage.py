"""PostgreSQL stopped and started again under a running `rollbot serve`.

The bot runs on a PostgreSQL server of the test's own (tests/support/pgserver.py), which
the test stops (fast shutdown: every connection is cut) and starts again.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import yaml

from bot.models import State
from bot.store.postgres import PostgresStore
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    backend_config,
    confirm,
    ephemeral_text,
    has_action,
    request_card,
    running_image,
    wait_card,
)
from tests.support.bot import (
    SIGNING_SECRET,
    RunningBot,
    bot_environment,
    check_log,
    launch,
    serve_http,
    wait_healthy,
)
from tests.support.docker import ComposeContainerFactory, free_port, unique_project
from tests.support.pgserver import PgServer
from tests.support.slack import FakeSlack, SignedSlack


async def health(url: str) -> tuple[int, dict[str, str]]:
    """What /readyz says: the store's and Slack's part in whether the replica is ready."""
    async with httpx.AsyncClient(timeout=3) as client:
        answer = await client.get(f"{url}/readyz")
        return answer.status_code, answer.json()


async def test_the_database_goes_away_and_comes_back_under_a_running_replica(
    pg_server: PgServer,
    fake_slack: FakeSlack,
    compose_container: ComposeContainerFactory,
    docker_host: str,
    tmp_path: Path,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    config_path = tmp_path / "rollbot.yaml"
    config_path.write_text(yaml.safe_dump(backend_config(container.project, container.port)))
    store_url = pg_server.url.replace("postgres@", "postgres:pw-never-logged@")
    env = bot_environment(config_path, f"{store_url}?connect_timeout=1", fake_slack)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "rollbot.log"
    process = launch(serve_http(port), env, log_path)
    store = PostgresStore(pg_server.url)
    try:
        await wait_healthy(url, process, log_path)
        await store.open()
        bot = RunningBot(
            process,
            url,
            SignedSlack(f"{url}/slack/events", SIGNING_SECRET, fake_slack),
            fake_slack,
            store,
            log_path,
            config_path,
        )
        assert await health(url) == (200, {"status": "ok", "store": "ok", "slack": "ok"})

        card = await request_card(bot, "backend v1.2.3")

        pg_server.stop()
        # A command: the answer is in the ack, private, within Slack's 3 seconds.
        status, body = await bot.slack.command("staging v1.2.3", channel=CHANNEL)
        assert status == 200
        answer = json.loads(body)
        assert answer["response_type"] == "ephemeral"
        assert "cannot reach its database" in answer["text"]
        assert "Nothing was changed" in answer["text"]
        # The help and a typo's usage need nothing of the database: answered as ever.
        status, body = await bot.slack.command("help", channel=CHANNEL)
        assert status == 200 and "/rollback list SERVICE" in json.loads(body)["text"]
        status, body = await bot.slack.command("backend v1.2.3 --force", channel=CHANNEL)
        assert status == 200 and "Unknown option '--force'" in json.loads(body)["text"]
        # A click on the card: acked, then answered privately through its response_url.
        status, _ = await bot.slack.select(
            card["channel"], card["ts"], ActionId.ISSUE_SELECT, "critical_bug", user=REQUESTER
        )
        assert status == 200
        await fake_slack.wait_for(lambda: "cannot reach its database" in ephemeral_text(fake_slack))
        code, said = await health(url)
        assert code == 503 and said["status"] == "unavailable" and "store" in said
        async with httpx.AsyncClient(timeout=3) as client:
            # Alive, not ready: nothing restarts a replica for its database's outage.
            assert (await client.get(f"{url}/healthz")).status_code == 200
            assert (await client.get(f"{url}/livez")).status_code == 200
        assert process.poll() is None  # it stays up

        pg_server.start()
        for _ in range(50):
            if (await health(url))[0] == 200:
                break
            await asyncio.sleep(0.2)
        assert await health(url) == (200, {"status": "ok", "store": "ok", "slack": "ok"})
        # Nothing of what was refused was written; the same card works now.
        (rb,) = await store.find()
        assert rb.state is State.REQUESTED and rb.issue is None
        await confirm(bot, card, "critical_bug")
        ready = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
        await bot.slack.click(ready["channel"], ready["ts"], ActionId.APPROVE, user=APPROVER)
        for _ in range(300):
            (rb,) = await store.find()
            if rb.state is State.SUCCEEDED:
                break
            await asyncio.sleep(0.1)
        assert rb.state is State.SUCCEEDED, rb
        image, _ = await running_image(docker_host, container.project)
        assert image.endswith(":v1.2.3")
    finally:
        await store.close()
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
    log = log_path.read_text()
    check_log(log)
    assert "pw-never-logged" not in log
    assert "store unreachable" in log
