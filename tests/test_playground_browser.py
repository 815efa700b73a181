"""The playground in a real browser: Debian's Chromium driven by Playwright, a real bot behind it.

The page is served by `playground_app` over the FakeSlack a real `rollbot serve --http`
talks to; every click in the browser reaches the bot as a signed Slack request.
Screenshots go where `tests/support/browser.py` says; the test prints where.
"""

from __future__ import annotations

import re

import aiodocker
import pytest
from playwright.async_api import Browser, Locator, Page, expect
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.e2e_helpers import APPROVER, CHANNEL, REQUESTER, backend_config, running_image
from tests.support.bot import BOT_TOKEN, SIGNING_SECRET, StartBot
from tests.support.browser import LONG, become, screenshot_path, send
from tests.support.browser import open_page as open_as
from tests.support.compose_preflight import CURRENT_CHANGES, TARGET_CHANGES, build_once
from tests.support.docker import (
    ComposeContainer,
    ComposeContainerFactory,
    DemoImages,
    free_port,
    unique_project,
    wait_http,
)
from tests.support.playground import ServePlayground
from tests.support.slack import FakeSlack, SignedSlack


async def open_page(browser: Browser, url: str) -> Page:
    """Open the playground, Riya (the first person) chosen."""
    return await open_as(browser, url, "Riya")


async def request_and_confirm(page: Page) -> Locator:
    """As Riya, request backend v1.2.3 and confirm a critical bug; return the card."""
    await send(page, "/rollback backend v1.2.3")
    card = page.locator(".message", has=page.get_by_role("button", name="Confirm severity"))
    await expect(card).to_contain_text("v1.2.4")
    await card.get_by_label("Pick the issue type").select_option("critical_bug")
    await expect(card).to_contain_text("Severity:")
    await card.get_by_role("button", name="Confirm severity").click()
    card = page.locator(".message", has=page.get_by_role("button", name="Reject"))
    await expect(card).to_contain_text("Approval needed")
    return card


async def approve_as_sam(page: Page, card: Locator) -> None:
    """Switch to Sam and approve the card through Slack's confirmation dialog."""
    await become(page, "Sam")
    await card.get_by_role("button", name="Approve", exact=True).click()
    dialog = page.get_by_role("dialog", name="Approve rollback?")
    await expect(dialog).to_contain_text("Roll backend/production back to v1.2.3.")
    await dialog.get_by_role("button", name="Approve").click()


async def test_a_rollback_requested_and_approved_in_the_browser(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    docker_host: str,
    browser: Browser,
    serve_playground: ServePlayground,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    config = backend_config(container.project, container.port, approvers={"users": [APPROVER]})
    bot = await start_rollbot(config)
    page = await open_page(browser, await serve_playground(bot.fake, bot.slack))
    await expect(page.get_by_role("note")).to_contain_text("Real: backend (Docker containers)")

    card = await request_and_confirm(page)
    await approve_as_sam(page, card)

    # The internal notification is broadcast from the thread into the channel.
    channel = page.get_by_role("log", name="Messages")
    notification = channel.locator(".message", has_text="replied to a thread").filter(
        has_text="[RESOLVED]"
    )
    await expect(notification).to_contain_text("Rolled back to v1.2.3", timeout=LONG)
    replies = channel.get_by_role("button", name=re.compile(r"\d+ repl"))
    await expect(replies).to_have_count(1)
    await replies.click()
    thread = page.get_by_role("complementary", name="Thread")
    await expect(thread).to_contain_text("Verification passed", timeout=LONG)
    table = thread.locator("pre", has_text="backend health")
    await expect(table).to_contain_text(re.compile(r"check\s+type\s+result"))
    await expect(table).to_contain_text(re.compile(r"backend health\s+http\s+ok"))
    await table.scroll_into_view_if_needed()
    await page.screenshot(path=screenshot_path("playground.png"))

    # On a narrow screen the table wraps inside the thread instead of scrolling sideways.
    await page.set_viewport_size({"width": 900, "height": 1000})
    scroll, client = await table.evaluate("node => [node.scrollWidth, node.clientWidth]")
    assert scroll <= client, (scroll, client)
    await table.scroll_into_view_if_needed()
    await page.screenshot(path=screenshot_path("playground-narrow.png"))

    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3")
    assert '"version":"v1.2.3"' in await wait_http(f"{container.url}/health")

    # The finished card says at a glance what runs now, what ran before and how it ended.
    await page.set_viewport_size({"width": 1400, "height": 1000})
    card = channel.locator(".message", has=page.get_by_role("heading", name="Rollback backend"))
    fields = card.locator(".section-field")
    await expect(fields.filter(has_text="Running now")).to_have_text(
        re.compile(r"Running now\s*v1\.2\.3"), timeout=LONG
    )
    await expect(fields.filter(has_text="Before the rollback")).to_have_text(
        re.compile(r"Before the rollback\s*v1\.2\.4")
    )
    await expect(fields.filter(has_text="Status")).to_contain_text("succeeded")
    await expect(card).to_contain_text("Outcome: running v1.2.3")
    await card.scroll_into_view_if_needed()
    await page.screenshot(path=screenshot_path("playground-finished-card.png"))


@pytest.fixture(scope="module")
def configured_images(docker_host: str, demo_images: DemoImages) -> str:
    """Build backend v1.2.3 and v1.2.4 whose images differ in env names, port and command."""
    repository = "rollbot-test/configured"
    for tag, lines in (("v1.2.3", TARGET_CHANGES), ("v1.2.4", CURRENT_CHANGES)):
        build_once(
            docker_host, f"{repository}:{tag}", demo_images.ref(demo_images.backend, tag), lines
        )
    return repository


async def test_the_card_shows_the_preflight_before_anyone_approves(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    configured_images: str,
    browser: Browser,
    serve_playground: ServePlayground,
) -> None:
    container = await compose_container(
        unique_project(), "backend", "v1.2.4", repository=configured_images
    )
    bot = await start_rollbot(backend_config(container.project, container.port))
    page = await open_page(browser, await serve_playground(bot.fake, bot.slack))

    card = await request_and_confirm(page)
    preflight = card.locator(".block-section", has=page.locator("b", has_text="Preflight"))
    await expect(preflight).to_be_visible()
    await expect(preflight).to_contain_text(
        re.compile(r"Exactly: sha256:\w+ \(from rollbot-test/configured:v1\.2\.4\) → sha256:")
    )
    for check in ("image-present", "compose-file"):
        await expect(preflight.locator("code", has_text=check)).to_be_visible()
    await expect(preflight).to_contain_text(
        "✅ image-present rollbot-test/configured:v1.2.3 is on this host"
    )
    await expect(preflight).to_contain_text("⚠️ compose-file Could not check the compose file")
    await expect(preflight).to_contain_text("↳ env names added: FEATURE_X; removed: OLD_KEY")
    await expect(preflight).to_contain_text("↳ ports: 8080/tcp -> 8081/tcp")
    await expect(preflight).to_contain_text("↳ command: /bin/sh -c 'exec httpd")
    await expect(card.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    await card.evaluate("node => node.scrollIntoView({block: 'start'})")
    await page.screenshot(path=screenshot_path("playground-preflight.png"))


async def redeploy(
    docker_host: str,
    compose_container: ComposeContainerFactory,
    service: ComposeContainer,
    tag: str,
) -> None:
    """Replace what runs in the service's project with `tag`, as a pipeline would."""
    async with aiodocker.Docker(url=docker_host) as docker:
        (running,) = await docker.containers.list(
            filters={"label": [f"com.docker.compose.project={service.project}"]}
        )
        await running.delete(force=True)
    await compose_container(service.project, "backend", tag, port=service.port)


async def test_a_frozen_service_that_drifts_shows_an_alert_in_the_thread(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    docker_host: str,
    browser: Browser,
    serve_playground: ServePlayground,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    config = backend_config(container.project, container.port, approvers={"users": [APPROVER]})
    config["runtime"] |= {"freeze_watch_seconds": 0.5, "scheduler_tick_seconds": 0.2}
    bot = await start_rollbot(config)
    page = await open_page(browser, await serve_playground(bot.fake, bot.slack))
    await approve_as_sam(page, await request_and_confirm(page))

    channel = page.get_by_role("log", name="Messages")
    card = channel.locator(".message", has=page.locator(".block-header"))
    status = card.locator(".block-section", has_text="Freeze:")
    await expect(status).to_contain_text("🧊 Freeze: Frozen since", timeout=LONG)
    await expect(status).to_contain_text("v1.2.4 is kept out of backend/production")
    unfreeze = "/rollback unfreeze backend env=production"
    await expect(status.locator("code", has_text=unfreeze)).to_be_visible()

    # The pipeline deploys the bad version again behind rollbot's back.
    await redeploy(docker_host, compose_container, container, "v1.2.4")
    drift = "🚨 backend/production is frozen, but backend now runs v1.2.4: the bad version"
    broadcast = channel.locator(".message", has_text="replied to a thread")
    await expect(broadcast.filter(has_text="is frozen, but")).to_contain_text(drift, timeout=LONG)
    await channel.get_by_role("button", name=re.compile(r"\d+ repl")).click()
    thread = page.get_by_role("complementary", name="Thread")
    alert = thread.locator(".message", has_text="is frozen, but")
    await expect(alert).to_contain_text(drift)
    again = alert.get_by_role("button", name="Roll back again to v1.2.3")
    accept = alert.get_by_role("button", name="Unfreeze (accept this version)")
    await expect(again).to_be_visible()
    await expect(accept).to_be_visible()
    await status.evaluate("node => node.scrollIntoView({block: 'center'})")
    await alert.scroll_into_view_if_needed()
    await page.screenshot(path=screenshot_path("playground-freeze.png"))

    await accept.click()
    await expect(thread).to_contain_text("🔓 Unfrozen by @Sam", timeout=LONG)
    await expect(card).to_contain_text("Freeze: ended by @Sam")


async def test_errors_show_as_slack_shows_them(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    browser: Browser,
    serve_playground: ServePlayground,
    fake_slack: FakeSlack,
) -> None:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake_slack.base_url)
    with pytest.raises(SlackApiError) as refused:
        await client.api_call("rollbot.nonexistent")
    assert refused.value.response.data == {"ok": False, "error": "unknown_method"}

    container = await compose_container(unique_project(), "backend", "v1.2.4")
    bot = await start_rollbot(backend_config(container.project, container.port))
    page = await open_page(browser, await serve_playground(bot.fake, bot.slack))

    await send(page, "hello rollbot")
    await expect(page.get_by_role("alert")).to_contain_text("slash commands only")
    await send(page, "/deploy backend")
    await expect(page.get_by_role("alert")).to_contain_text("/deploy is not a valid command")

    # Slack refuses the card once: the bot tells the requester, and only them.
    fake_slack.fail_next("chat.postMessage", "channel_not_found", status=200)
    await send(page, "/rollback backend v1.2.3")
    refusal = page.locator(".message.ephemeral", has_text="I cannot see this channel")
    await expect(refusal).to_contain_text("Only visible to you", timeout=LONG)
    await expect(refusal).to_contain_text("/invite @rollbot")
    await page.screenshot(path=screenshot_path("playground-error.png"))
    await become(page, "Sam")
    await expect(page.get_by_role("log", name="Messages")).not_to_contain_text("cannot see")


async def test_a_private_answer_says_which_command_it_answers(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    browser: Browser,
    serve_playground: ServePlayground,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    bot = await start_rollbot(backend_config(container.project, container.port))
    page = await open_page(browser, await serve_playground(bot.fake, bot.slack))

    await send(page, "/rollback backend v9.9.9")
    answer = page.locator(".message.ephemeral", has_text="v9.9.9 of backend")
    await expect(answer).to_contain_text("Only visible to you", timeout=LONG)
    await expect(answer.locator("code").first).to_have_text("/rollback backend v9.9.9")
    await expect(answer).to_contain_text("is not available")
    # Nothing typed after /rollback: the help, which says what it answers too.
    await send(page, "/rollback")
    helped = page.locator(".message.ephemeral", has_text="/rollback list SERVICE")
    await expect(helped.locator("code").first).to_have_text("/rollback")
    await answer.scroll_into_view_if_needed()
    await page.screenshot(path=screenshot_path("playground-echo.png"))
    assert await bot.store.find() == []


async def test_break_glass_modal_checklist_and_incident_report(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    browser: Browser,
    serve_playground: ServePlayground,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    approvers = {"users": [APPROVER, REQUESTER]}  # break-glass is for approvers only
    bot = await start_rollbot(
        backend_config(container.project, container.port, approvers=approvers)
    )
    page = await open_page(browser, await serve_playground(bot.fake, bot.slack))
    await send(page, "/rollback backend v1.2.3")
    card = page.locator(".message", has=page.get_by_role("button", name="Confirm severity"))
    await card.get_by_label("Pick the issue type").select_option("security_vulnerability")
    await card.get_by_role("button", name="Confirm severity").click()
    await page.get_by_role("button", name="Approve", exact=True).click()
    await page.get_by_role("dialog", name="Approve rollback?").get_by_role("button").last.click()

    modal = page.get_by_role("dialog", name="Break-glass")
    await modal.get_by_role("textbox", name="Reason (recorded)").fill("abc")
    await modal.get_by_role("button", name="Submit").click()
    await expect(modal).to_contain_text("Must have at least 5 characters")
    await become(page, "Sam")  # the modal is Riya's: Sam's client shows none
    await expect(modal).to_be_hidden()
    await become(page, "Riya")
    await modal.get_by_role("textbox", name="Reason (recorded)").fill("Credentials leak")
    await modal.get_by_role("button", name="Submit").click()
    await expect(modal).to_be_hidden()

    channel = page.get_by_role("log", name="Messages")
    await expect(channel).to_contain_text("[RESOLVED]", timeout=LONG)
    await channel.get_by_role("button", name=re.compile(r"\d+ repl")).click()
    thread = page.get_by_role("complementary", name="Thread")
    checklist = thread.locator(".message", has_text="Rollback checklist")
    await become(page, "Sam")
    await checklist.get_by_role("checkbox", name="Notify team of rollback decision").check()
    await expect(checklist).to_contain_text("by @Sam")
    report = thread.locator(".file", has_text="Incident report")
    await report.get_by_role("button", name="View").click()
    viewer = page.get_by_role("dialog", name=re.compile("Incident report"))
    await expect(viewer).to_contain_text("Break-glass reason | Credentials leak")
    await page.keyboard.press("Escape")
    await expect(viewer).to_be_hidden()


async def test_block_kit_and_mrkdwn_render_as_slack_shows_them(
    fake_slack: FakeSlack, browser: Browser, serve_playground: ServePlayground
) -> None:
    # No bot listens: a click shows the person what Slack shows when the app is unreachable.
    nobody = SignedSlack(f"http://127.0.0.1:{free_port()}/slack/events", SIGNING_SECRET, fake_slack)
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake_slack.base_url)
    confirm = {
        "title": {"type": "plain_text", "text": "Really stop?"},
        "text": {"type": "plain_text", "text": "It stops the deploy."},
        "confirm": {"type": "plain_text", "text": "Stop it"},
        "deny": {"type": "plain_text", "text": "Keep going"},
    }
    option = {"text": {"type": "plain_text", "text": "Blue"}, "value": "blue"}
    other = {"text": {"type": "plain_text", "text": "Green"}, "value": "green"}
    await client.chat_postMessage(
        channel=CHANNEL,
        text="Deploy report",
        blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": "Deploy *report*"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*bold* _italic_ ~gone~ `x < y` <https://example.com|the docs> "
                    "<@U_APPROVER> <!subteam^S_ONCALL|@oncall> :white_check_mark:\n> quoted",
                },
                "fields": [{"type": "mrkdwn", "text": "*Service*\nbackend"}],
                "accessory": {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Stop"},
                    "action_id": "stop",
                    "style": "danger",
                    "confirm": confirm,
                },
            },
            {"type": "divider"},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "```a  b\n1  2```"}]},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "static_select",
                        "action_id": "colour",
                        "options": [option, other],
                        "initial_option": other,
                    },
                    {
                        "type": "checkboxes",
                        "action_id": "done",
                        "options": [option, other],
                        "initial_options": [option],
                    },
                ],
            },
        ],
    )
    await client.chat_postEphemeral(channel=CHANNEL, user=REQUESTER, text="Just for _Riya_")
    modal = {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Why?"},
        "close": {"type": "plain_text", "text": "Never mind"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "A modal for Sam"}}],
    }
    await client.views_open(trigger_id=fake_slack.new_trigger_id(APPROVER), view=modal)
    page = await open_page(browser, await serve_playground(fake_slack, nobody))

    card = page.locator(".message", has_text="Deploy *report*")
    section = card.locator(".block-section")
    for tag, text in (("b", "bold"), ("i", "italic"), ("s", "gone"), ("code", "x < y")):
        await expect(section.locator(tag).first).to_have_text(text)
    await expect(section.get_by_role("link", name="the docs")).to_have_attribute(
        "href", "https://example.com"
    )
    await expect(section).to_contain_text("@Sam @oncall ✅")
    await expect(section.locator("blockquote")).to_have_text("quoted")
    await expect(card.locator(".block-context pre")).to_have_text("a  b\n1  2")
    await expect(card.get_by_role("combobox")).to_have_value("green")
    await expect(card.get_by_role("checkbox", name="Blue")).to_be_checked()
    await expect(card.get_by_role("checkbox", name="Green")).not_to_be_checked()
    ephemeral = page.locator(".message.ephemeral", has_text="Just for Riya")
    await expect(ephemeral).to_contain_text("Only visible to you")
    await expect(page.get_by_role("dialog")).to_have_count(0)

    await become(page, "Sam")
    await expect(ephemeral).to_have_count(0)
    dialog = page.get_by_role("dialog", name="Why?")
    await dialog.get_by_role("button", name="Never mind").click()
    await expect(dialog).to_have_count(0)
    await card.get_by_role("button", name="Stop").click()
    await (
        page.get_by_role("dialog", name="Really stop?")
        .get_by_role("button", name="Stop it")
        .click()
    )
    notice = page.locator(".message.ephemeral", has_text="dispatch_failed")
    await expect(notice).to_contain_text("Slackbot")
    await become(page, "Riya")
    await expect(notice).to_have_count(0)


async def test_the_person_chosen_is_remembered_across_a_reload(
    fake_slack: FakeSlack, browser: Browser, serve_playground: ServePlayground
) -> None:
    nobody = SignedSlack(f"http://127.0.0.1:{free_port()}/slack/events", SIGNING_SECRET, fake_slack)
    page = await open_page(browser, await serve_playground(fake_slack, nobody))
    await become(page, "Nico")
    await page.reload()
    await expect(page.get_by_role("radio", name=re.compile("Nico"))).to_be_checked()
    await expect(page.get_by_role("radio", name=re.compile("Riya"))).not_to_be_checked()
    await page.screenshot(path=screenshot_path("playground-remembered.png"))


async def test_the_readme_link_opens_the_readme(
    fake_slack: FakeSlack, browser: Browser, serve_playground: ServePlayground
) -> None:
    nobody = SignedSlack(f"http://127.0.0.1:{free_port()}/slack/events", SIGNING_SECRET, fake_slack)
    page = await open_page(browser, await serve_playground(fake_slack, nobody))
    async with page.expect_popup() as opening:
        await page.get_by_role("link", name="README").click()
    readme = await opening.value
    await expect(readme.locator("body")).to_contain_text("## Playground (make demo)")
    await expect(readme.locator("body")).to_contain_text("Reset")
    answer = await page.request.get(readme.url)
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    await readme.screenshot(path=screenshot_path("playground-readme.png"))
