"""The playground's own controls, beside the Slack it imitates: what is real here, and the README.

The facts the page states come from the running demo (`Services`, which playground/stage.py
builds from the world it started), so the page never calls a service real that is not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from playground.slack_api import Json, UserActions

README = Path(__file__).resolve().parents[1] / "README.md"
KINDS = ("real", "simulated")


@dataclass(frozen=True)
class Services:
    """What the page says about the demo: a note per service ("real: ..." or "simulated: ...")."""

    notes: dict[str, str]
    remarks: tuple[str, ...] = ()  # which services are real here, or left out, and why
    bot: str = ""  # how the bot runs, when the playground started it
    slack: str = ""  # the fake Slack Web API the bot calls


class ResetFailed(Exception):
    """The demo could not start over; the message says why."""


# Starts the demo over; returns what delivers the page's actions to the new bot.
Reset = Callable[[], Awaitable[UserActions]]


def _kind(label: str) -> str:
    """Whether a note says its service is real or simulated."""
    first = label.strip().lower()
    return next((k for k in KINDS if first.startswith(k)), "other")


def about(services: Services) -> Json:
    """What is real here, grouped for the page's paragraph; each note without its kind."""
    groups: dict[str, list[Json]] = {"real": [], "simulated": [], "other": []}
    for service, label in services.notes.items():
        found = _kind(label)
        text = label.strip()[len(found) :].lstrip(" :") if found != "other" else label
        groups[found].append({"service": service, "text": text})
    remarks = list(services.remarks)
    return {**groups, "remarks": remarks, "bot": services.bot, "slack": services.slack}


async def readme(request: web.Request) -> web.StreamResponse:
    """The project's README.md as plain text: it reads well so, and needs no network."""
    if not README.is_file():
        raise web.HTTPNotFound(text=f"{README} is not there: read README.md in the repository.")
    return web.Response(text=README.read_text(encoding="utf-8"), content_type="text/plain")
