"""A freeze that turns one on/off platform setting off, and unfreezing that puts it back.

Railway's automatic deployments and Vercel's auto-assignment of production domains are both
one boolean: this module holds what is the same for them. The setting is read (a read:
retried), written once (a rate-limited write was refused before it was applied, so it is
sent again after Retry-After; an unanswered one is read back, never resent), and its value
before the freeze is kept as the string "true" or "false" in `FreezeRecord.saved`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from providers.base import ProviderError, RateLimited, Refused, TimedOut, Transient, sentence
from providers.capabilities import FreezeRecord
from providers.retry import backoff

log = structlog.get_logger(__name__)

WRITE_ATTEMPTS = 4


@dataclass(frozen=True)
class Setting:
    """The setting as the platform shows it now."""

    on: bool
    # False when the platform shows that someone else changed it last.
    ours: bool = True
    # True when the platform shows that rollbot turned it off (where it records who did).
    marked: bool = False


@dataclass(frozen=True)
class Switch:
    """How to read and write one setting of one target, and how to name it."""

    key: str  # its name in FreezeRecord.saved, the platform's own field name
    label: str  # "Railway service api, environment production: auto-deploys"
    off_text: str  # "disabled"
    on_text: str  # "re-enabled"
    read: Callable[[], Awaitable[Setting]]
    write: Callable[[bool], Awaitable[None]]


class Freezer:
    """Freeze and unfreeze one switch; a second freeze of the same bad version changes nothing."""

    def __init__(self, switch: Switch) -> None:
        self._switch = switch
        self._records: dict[str, FreezeRecord] = {}

    async def freeze(self, bad: str) -> FreezeRecord:
        """Turn the setting off, recording whether it was on."""
        switch = self._switch
        now = await switch.read()
        known = self._records.get(bad)
        if known is not None and not now.on and now.ours:
            return known
        if not now.on and not now.marked:
            record = FreezeRecord(
                action=f"{switch.label} already off; left as it was",
                saved={switch.key: "false"},
            )
        else:
            if now.on:
                await self._write_once(False)
            record = FreezeRecord(
                action=f"{switch.label} {switch.off_text} (bad version {bad})",
                saved={switch.key: "true"},
            )
        self._records[bad] = record
        log.info("freeze", setting=switch.key, was=record.saved[switch.key], bad=bad)
        return record

    async def unfreeze(self, record: FreezeRecord) -> str:
        """Put the setting back as it was before the freeze, unless someone changed it since."""
        switch = self._switch
        saved = record.saved.get(switch.key)
        if saved not in ("true", "false"):
            raise Refused(
                f"This freeze record holds no {switch.key}: it was not made for "
                f"{switch.label}; nothing was restored."
            )
        now = await switch.read()
        if saved == "false":
            state = "on" if now.on else "off"
            return f"The freeze did not change {switch.label}; nothing to restore (now {state})."
        if now.on or not now.ours:
            who = "turned back on" if now.on else "changed by someone else"
            raise Refused(
                f"{switch.label} changed since the freeze ({who}): rollbot restores nothing "
                "over that change. Check the setting by hand."
            )
        await self._write_once(True)
        self._records = {k: v for k, v in self._records.items() if v != record}
        log.info("unfreeze", setting=switch.key)
        return f"{switch.label} {switch.on_text}, as before the freeze."

    async def _write_once(self, value: bool) -> None:
        """Write the setting: resent only after a rate limit; an unanswered write is read back."""
        switch = self._switch
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                await switch.write(value)
                return
            except RateLimited as exc:
                if attempt == WRITE_ATTEMPTS:
                    raise
                await asyncio.sleep(backoff(attempt, exc))
            except (Transient, TimedOut) as exc:
                await self._landed_anyway(value, exc)
                return

    async def _landed_anyway(self, value: bool, error: ProviderError) -> None:
        """After a lost answer, read the setting back; never send the write again."""
        switch = self._switch
        try:
            now = await switch.read()
        except ProviderError as exc:
            raise type(error)(
                f"{sentence(error.message)} It was not sent again, and whether it took is "
                f"unknown ({exc.message}): check {switch.label} by hand."
            ) from error
        if now.on == value:
            log.warning("freeze.write_answer_lost_but_applied", setting=switch.key)
            return
        raise type(error)(
            f"{sentence(error.message)} {switch.label} did not change, and the change was "
            "not sent again."
        ) from error
