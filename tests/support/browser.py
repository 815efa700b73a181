"""Debian's Chromium driven by Playwright, for the playground's browser tests.

Screenshots are written to $ROLLBOT_TEST_ARTIFACTS, or to artifacts/ at the repository root
(git-ignored); `screenshot_path` prints where.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Error, Page, async_playwright, expect

CHROMIUM = Path("/usr/bin/chromium")
# Headless in a container: no sandbox (no user namespaces), no GPU, nothing fetched at start.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(
    os.environ.get("ROLLBOT_TEST_ARTIFACTS") or Path(__file__).parents[2] / "artifacts"
)
LONG = 60_000  # ms: a rollback replaces a container and verifies it


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless; the test fails (never skips) when it cannot start."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh does)")
    async with async_playwright() as playwright:
        try:
            started = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS
            )
        except Error as exc:
            pytest.fail(f"Chromium at {CHROMIUM} did not start: {exc}")
        try:
            yield started
        finally:
            await started.close()


async def open_page(browser: Browser, url: str, first: str) -> Page:
    """Open the playground in a new browser context, once it shows `first` as "you are"."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    await page.goto(url)
    await expect(page.get_by_role("radio", name=re.compile(first))).to_be_checked()
    return page


async def send(page: Page, text: str) -> None:
    """Type `text` in the composer and press Enter."""
    await page.get_by_role("textbox", name="Message").fill(text)
    await page.get_by_role("textbox", name="Message").press("Enter")


async def become(page: Page, name: str) -> None:
    """Switch "you are" to the person named `name`."""
    await page.get_by_role("radio", name=re.compile(name)).click()
    await expect(page.get_by_role("radio", name=re.compile(name))).to_be_checked()


def screenshot_path(name: str) -> Path:
    """Where a screenshot called `name` goes; the path is printed for the person running tests."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    print(f"playground screenshot: {path}")
    return path
