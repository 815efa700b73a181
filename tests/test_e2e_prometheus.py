"""End to end: a rollback whose health URL says ok while the error rate stays high."""

from __future__ import annotations

import html

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import APPROVER, backend_config, ready_to_approve, thread_text
from tests.support.bot import StartBot
from tests.support.docker import ComposeContainerFactory, unique_project
from tests.support.prometheus import ERROR_RATIO, ErrorRateApp, wait_for_ratio


async def test_a_high_error_rate_fails_verification_though_health_says_ok(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    prometheus_url: str,
    error_rate_app: ErrorRateApp,
) -> None:
    error_rate_app.set_ratio(60, 40)
    await wait_for_ratio(prometheus_url, lambda v: abs(v - 0.4) < 1e-6)
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    config = backend_config(container.project, container.port)
    config["runtime"]["verify_deadline_seconds"] = 3
    checks = config["services"]["backend"]["environments"]["production"]["checks"]
    checks.append(
        {
            "name": "error rate",
            "type": "prometheus",
            "url": prometheus_url,
            "query": ERROR_RATIO,
            "op": "<",
            "threshold": 0.05,
        }
    )
    bot = await start_rollbot(config)

    card = await ready_to_approve(bot, "backend v1.2.3", "critical_bug")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "Verification failed" in thread_text(bot.fake, card))

    # Slack shows the escaped entities as the characters they stand for.
    thread = html.unescape(thread_text(bot.fake, card))
    table = thread[thread.index("Verification failed") :]
    health = next(line for line in table.splitlines() if line.startswith("backend health"))
    assert " ok " in health
    rate = next(line for line in table.splitlines() if line.startswith("error rate"))
    assert " FAIL " in rate
    # The value, the threshold and the query, as the on-call reads them.
    assert "0.4 is not < 0.05: sum(rate(test_http_requests_total" in rate
    assert "error rate: graph" in thread

    await bot.fake.wait_for(lambda: "What to do next" in thread_text(bot.fake, card))
    (rb,) = await bot.store.find()
    assert rb.state is State.FAILED
    assert "Verification failed: error rate" in (rb.error or "")
