"""The demo's Reset, in a browser: everything back as it started, and old cards harmless.

The demo runs as `python -m playground.demo` does for a newcomer (a process of its own, the
real backend on the test's Docker engine); Chromium drives its page.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiodocker
import httpx
import pytest
import yaml
from playwright.async_api import Browser, Locator, Page, expect

from playground.stage import stop_bot
from tests.e2e_helpers import running_image
from tests.support.browser import LONG, become, open_page, screenshot_path, send
from tests.support.demo import Demo, StartDemo
from tests.support.docker import free_port

BEN = "U_BEN"


def served(data: Path) -> dict[str, str]:
    """What each service of the demo's config serves now, from its own health check."""
    config = yaml.safe_load((data / "rollbot.yaml").read_text())
    versions = {}
    for name, service in config["services"].items():
        (check,) = service["environments"]["production"]["checks"]
        versions[name] = httpx.get(check["url"], timeout=5.0).json()["version"]
    return versions


def backend_project(data: Path) -> str:
    """The compose project of the demo's real backend, as its config names it."""
    config = yaml.safe_load((data / "rollbot.yaml").read_text())
    return str(config["services"]["backend"]["environments"]["production"]["provider"]["project"])


def release_refs(data: Path) -> str:
    """Every branch and tag of the demo's release repository, with its commit."""
    return subprocess.run(
        ["git", "ls-remote", str(data / "release.git")],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


async def containers(docker_host: str, project: str) -> list[str]:
    """The names of every container (running or not) of a compose project."""
    async with aiodocker.Docker(url=docker_host) as docker:
        found = await docker.containers.list(
            all=True, filters={"label": [f"com.docker.compose.project={project}"]}
        )
        return [name for c in found for name in c["Names"]]


def card_of(page: Page, service: str) -> Locator:
    """The card of a rollback of `service` in the channel."""
    header = page.locator(".block-header", has_text=f"Rollback {service}/production")
    return page.get_by_role("log", name="Messages").locator(".message", has=header)


async def request(page: Page, service: str, version: str) -> Locator:
    """As Ana, request a rollback and confirm a critical bug; return the card awaiting approval."""
    await become(page, "Ana")
    await send(page, f"/rollback {service} {version}")
    card = card_of(page, service)
    await card.get_by_label("Pick the issue type").select_option("critical_bug")
    await card.get_by_role("button", name="Confirm severity").click()
    await expect(card.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    return card


async def roll_back(page: Page, service: str, version: str) -> Locator:
    """Request as Ana, approve as Ben, and wait until the card says it is done."""
    card = await request(page, service, version)
    await become(page, "Ben")
    await card.get_by_role("button", name="Approve", exact=True).click()
    await page.get_by_role("dialog", name="Approve rollback?").get_by_role("button").last.click()
    await expect(card).to_contain_text(f"Outcome: running {version}", timeout=LONG)
    return card


async def rollback_id(card: Locator) -> str:
    """The id a card names its rollback by."""
    found = re.search(r"rb-[0-9a-f]{8}", await card.inner_text())
    assert found, await card.inner_text()
    return found.group(0)


def history(page: Page) -> Locator:
    """The answer to /rollback history, which only the person who asked sees."""
    return page.locator(".message.ephemeral", has_text="backend")


async def button_of(card: Locator, name: str) -> dict[str, str]:
    """What a click on a card's button sends the playground: the message and the action."""
    button = card.get_by_role("button", name=name, exact=True)
    return {
        "ts": str(await card.get_attribute("data-ts")),
        "action_id": str(await button.get_attribute("data-action-id")),
    }


async def click_as_ben(page: Page, button: dict[str, str]) -> tuple[int, str]:
    """Send what a page still showing an old card sends when Ben clicks its button."""
    answer: list[Any] = await page.evaluate(
        """async ([user, button]) => {
            const config = await (await fetch("/api/config")).json();
            const response = await fetch("/api/click", {
                method: "POST",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({user, channel: config.channel, ...button}),
            });
            return [response.status, (await response.json()).error];
        }""",
        [BEN, button],
    )
    return int(answer[0]), str(answer[1])


async def start(start_demo: StartDemo, docker_host: str, tmp_path: Path) -> tuple[Demo, Path]:
    port = free_port()
    demo = start_demo({"DOCKER_HOST": docker_host, "TMPDIR": str(tmp_path)}, "--port", str(port))
    return demo, Path(demo.shown(r"Data folder: (\S+) \(removed at exit\)"))


@pytest.mark.timeout(360)
async def test_reset_puts_every_service_back_and_old_cards_do_nothing(
    start_demo: StartDemo, docker_host: str, browser: Browser, tmp_path: Path
) -> None:
    demo, data = await start(start_demo, docker_host, tmp_path)
    url = demo.shown(r"open (http://127\.0\.0\.1:\d+)")
    first, refs, project = served(data), release_refs(data), backend_project(data)
    files = sorted(path.name for path in data.iterdir())
    assert first["backend"] == "v1.2.4"
    page = await open_page(browser, url, "Ana")

    backend = await roll_back(page, "backend", "v1.2.3")
    await roll_back(page, "web", "v2.3.1")
    await roll_back(page, "release", "v1.2.3")
    pending = await request(page, "frontend", "v1.2.3")
    image, _ = await running_image(docker_host, project)
    assert image == "rollbot-demo/backend:v1.2.3"
    assert served(data)["web"] == "v2.3.1"
    assert release_refs(data) != refs
    old = [await button_of(backend, "Unfreeze"), await button_of(pending, "Approve")]
    rollback = await rollback_id(backend)
    await send(page, "/rollback history backend")
    await expect(history(page)).to_contain_text(rollback, timeout=LONG)

    reset = page.get_by_role("button", name="Reset")
    await reset.click()
    dialog = page.get_by_role("dialog", name="Reset the playground?")
    await expect(dialog).to_contain_text("every service back on the version it started with")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    await expect(backend).to_be_visible()

    await reset.click()
    await dialog.get_by_role("button", name="Reset").click()
    status = page.get_by_role("status")
    await expect(status).to_have_text("Resetting…")
    await expect(reset).to_be_disabled()
    await page.screenshot(path=screenshot_path("playground-resetting.png"))
    await expect(status).to_contain_text(re.compile(r"Reset done in \d+(\.\d)? s"), timeout=LONG)
    await expect(reset).to_be_enabled()
    channel = page.get_by_role("log", name="Messages")
    await expect(channel.locator(".message")).to_have_count(0)
    await expect(page.get_by_role("radio", name=re.compile("Ana"))).to_be_checked()
    await page.screenshot(path=screenshot_path("playground-reset.png"))

    # Every service serves what it served at start; the backend is a new real container.
    assert served(data) == first
    assert release_refs(data) == refs
    assert sorted(path.name for path in data.iterdir()) == files
    assert await containers(docker_host, project) == []
    image, _ = await running_image(docker_host, backend_project(data))
    assert image == "rollbot-demo/backend:v1.2.4"

    # A page still showing the old cards: their buttons are refused and nothing happens.
    for button in old:
        status_code, error = await click_as_ben(page, button)
        assert status_code == 409
        assert "no longer in the channel" in error
    await asyncio.sleep(1.0)
    await expect(channel.locator(".message")).to_have_count(0)
    assert served(data) == first
    await send(page, "/rollback history backend")
    await expect(history(page)).to_have_count(1, timeout=LONG)
    await expect(history(page)).not_to_contain_text(rollback)

    # The bot starts over too: no freeze, no lock, and a new rollback goes through.
    await roll_back(page, "backend", "v1.2.3")
    image, _ = await running_image(docker_host, backend_project(data))
    assert image == "rollbot-demo/backend:v1.2.3"
    await expect(channel).not_to_contain_text("is frozen, but")
    new_project = backend_project(data)
    assert demo.stop(signal.SIGINT) == 0
    assert await containers(docker_host, new_project) == []


async def test_the_page_says_what_is_real_here(
    start_demo: StartDemo, docker_host: str, browser: Browser, tmp_path: Path
) -> None:
    demo, data = await start(start_demo, docker_host, tmp_path)
    page = await open_page(browser, demo.shown(r"open (http://127\.0\.0\.1:\d+)"), "Ana")

    note = page.get_by_role("note")
    await expect(note).to_contain_text("What is real here")
    about = note.locator("p")
    project = backend_project(data)
    real = about.locator(".about-real")
    await expect(real).to_contain_text(f"backend (Docker container {project}-backend-1")
    await expect(real).to_contain_text(f"release (git repository {data / 'release.git'}")
    simulated = about.locator(".about-simulated")
    await expect(simulated).to_contain_text("frontend (fake Vercel API on 127.0.0.1:")
    await expect(simulated).to_contain_text("worker (fake Railway API on 127.0.0.1:")
    await expect(simulated).to_contain_text(
        "web (Kubernetes Deployment shop/web, simulated API on 127.0.0.1:"
    )
    await expect(about.locator(".about-remarks")).to_contain_text(
        f"backend: real, a container on the Docker engine at {docker_host}"
    )
    await expect(about).to_contain_text(
        re.compile(r"The bot is the real rollbot \(rollbot serve --http, pid \d+\)")
    )
    await expect(about).to_contain_text("talking to a local stand-in for Slack")
    await page.screenshot(path=screenshot_path("playground-what-is-real.png"))

    # Folded away, it stays folded on the next visit; its title stays in view.
    await note.get_by_text("What is real here").click()
    await expect(about).to_be_hidden()
    await page.reload()
    await expect(page.get_by_role("note").get_by_text("What is real here")).to_be_visible()
    await expect(page.get_by_role("note").locator("p")).to_be_hidden()
    assert demo.stop(signal.SIGINT) == 0
    assert await containers(docker_host, project) == []


# A bot that ignores SIGTERM while a program it started (a git push, say) still runs.
STUCK_BOT = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.DEVNULL
)
print(child.pid, flush=True)
time.sleep(60)
"""


async def test_a_bot_killed_at_reset_takes_the_programs_it_started_with_it() -> None:
    bot = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STUCK_BOT, stdout=asyncio.subprocess.PIPE, start_new_session=True
    )
    assert bot.stdout is not None
    child = int(await bot.stdout.readline())

    await stop_bot(bot, grace=0.2)

    assert bot.returncode == -signal.SIGKILL
    for _ in range(50):  # the child, reparented, is reaped by init shortly after
        if not Path(f"/proc/{child}").exists() or "Z" in _state(child):
            break
        await asyncio.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
