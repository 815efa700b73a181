"""The `/rollback` slash command."""

from __future__ import annotations

from functools import cache, partial
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands import (
    USAGE,
    Backups,
    Cancel,
    Drill,
    Help,
    History,
    ListVersions,
    Report,
    RequestRollback,
    Restore,
    Status,
    Unfreeze,
    parse,
)
from bot.engine import Engine
from bot.errors import NotAllowed, UsageError
from bot.freezes import freeze_line
from bot.history import history_text
from bot.models import ACTIVE_STATES, OPEN_STATES, utcnow
from bot.render import render
from bot.restores import Restores
from bot.text import escape, mention, quote_user_text
from handlers.drill import run_drill
from handlers.errors import acked
from handlers.flow import advance, sweep
from handlers.incident_report import IncidentReports
from handlers.jobs import status_lines
from handlers.restores import offer_restore
from handlers.thread import SlackThread
from providers.base import Version


def register(
    app: AsyncApp, engine: Engine, thread: SlackThread, *, reports: IncidentReports | None = None
) -> None:
    """Register the slash command listener."""
    reports = reports or IncidentReports(thread)

    def at_once(command: dict[str, Any]) -> str | None:
        """The answer to help or to a command that does not parse: it needs nothing else."""
        try:
            asked = parse(command.get("text") or "")
        except UsageError as exc:
            return escape(exc.message)
        return help_text(engine) if isinstance(asked, Help) else None

    @app.command("/rollback")
    @partial(acked, at_once=at_once, echo=echo)
    async def on_rollback(
        command: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        user, channel = command["user_id"], command["channel_id"]
        match parse(command.get("text") or ""):
            case RequestRollback(service, version, environment, dry_run, bad_commit) as asked:
                await sweep(engine, thread)
                requested = await engine.request(
                    service=service,
                    version=version,
                    environment=environment,
                    user=user,
                    dry_run=dry_run,
                    channel_id=channel,
                    bad_commit=bad_commit,
                    detected_at=asked.detected_at(utcnow()),
                )
                target = engine.config.slack.incident_channel or channel
                try:
                    rb = await thread.post_card(requested, target)
                except Exception:
                    # Without a card nobody can act on it; don't let it block the service.
                    await engine.cancel(requested.id, user)
                    raise
                await thread.hooks.moved(rb)
                if rb.channel_id != channel:
                    await respond(
                        text=f"Rollback {rb.id} is in <#{rb.channel_id}>.",
                        response_type="ephemeral",
                    )
            case ListVersions(service, environment):
                env = engine.resolve(service, environment)
                await engine.check_read(service, env, user, "versions")
                env, versions = await engine.versions(service, env)
                await respond(text=versions_text(service, env, versions), response_type="ephemeral")
            case Backups(kind, service, environment):
                text = await Restores(engine).backups(kind, service, environment, user)
                await respond(text=text, response_type="ephemeral")
            case Restore(kind, service, backup, environment):
                # Closes expired and orphaned rollbacks, so they do not block the restore.
                await sweep(engine, thread)
                target = engine.config.slack.incident_channel or channel
                await offer_restore(
                    engine, client, target, user, kind, service, environment, backup
                )
                if target != channel:
                    await respond(
                        text=f"The restore is offered in <#{target}>.", response_type="ephemeral"
                    )
            case Status():
                await sweep(engine, thread)
                await respond(text=await status_text(engine, user), response_type="ephemeral")
            case Report(rollback_id):
                rb = await engine.get(rollback_id)
                await engine.check_read(rb.service, rb.environment, user, "report", rb.id)
                where = await reports.again(rollback_id)
                await respond(text=where, response_type="ephemeral")
            case History(service, environment):
                text = await history_text(engine, service, environment, user)
                await respond(text=text, response_type="ephemeral")
            case Drill(service, environment):
                # Closes expired and orphaned rollbacks, so they do not block the drill.
                await sweep(engine, thread)
                await run_drill(
                    engine,
                    thread,
                    channel=channel,
                    user=user,
                    service=service,
                    environment=environment,
                )
            case Unfreeze(service, environment):
                rb, said = await engine.unfreeze(service, environment, user)
                await thread.reply(rb, f":unlock: {escape(said)}")
                await thread.update_card(rb)
                await respond(text=said, response_type="ephemeral")
            case Cancel(rollback_id):
                rb = await engine.cancel(rollback_id, user)
                await advance(engine, thread, rb, user)
                await respond(text=f"Cancelled {rb.id}.", response_type="ephemeral")
            case Help():
                await respond(text=help_text(engine), response_type="ephemeral")


def answered_from_text(body: dict[str, Any]) -> bool:
    """True for a slash command answered from its own text alone: the help, or a typo."""
    if "command" not in body or "type" in body:
        return False  # an interaction, not a command
    try:
        return isinstance(parse(body.get("text") or ""), Help)
    except UsageError:
        return True


# Enough of a command to recognise it; the rest is cut with an ellipsis.
ECHO_LIMIT = 100


def echo(command: dict[str, Any]) -> str:
    """The line that opens a private answer: the command it answers, inert, in code."""
    typed = " ".join([command.get("command") or "/rollback", command.get("text") or ""])
    return f"`{quote_user_text(typed.strip(), ECHO_LIMIT)}`\n"


def help_text(engine: Engine) -> str:
    """The help: usage, and the services configured here."""
    return _help(", ".join(sorted(engine.config.services)))


@cache
def _help(services: str) -> str:
    return render("help.md.j2", usage=USAGE, services=services)


def versions_text(service: str, env: str, versions: list[Version]) -> str:
    """List versions newest first with their marks and the other names they answer to."""
    lines = [f"*Versions of {service}/{env}* (newest first):"]
    # All of them: a long list is answered in parts, never cut short silently.
    for v in versions:
        marks = [
            m for m, on in (("running", v.current), ("previous stable", v.previous_stable)) if on
        ]
        when = f" {v.created_at:%Y-%m-%d %H:%M}" if v.created_at else ""
        tail = f" ({', '.join(marks)})" if marks else ""
        also = f" — also `{escape('`, `'.join(v.aliases[:3]))}`" if v.aliases else ""
        lines.append(f"• `{escape(v.name)}`{when}{tail}{also}")
    return "\n".join(lines)


async def status_text(engine: Engine, user: str) -> str:
    """Describe rollbacks in flight, locks held, monitoring windows and escalations.

    Only services `user` may read are shown.
    """
    readable = await engine.access.readable(user)
    if not readable:
        raise await engine.refused(
            None,
            user,
            "status",
            NotAllowed(
                "You may not read rollbacks here: ask someone who may request or approve them."
            ),
        )
    found = await engine.rollbacks.find(states=OPEN_STATES | ACTIVE_STATES, limit=100)
    rollbacks = [rb for rb in found if (rb.service, rb.environment) in readable][:20]
    keys = {f"{service}/{env}" for service, env in readable}
    locks = [lock for lock in await engine.lease_table.locks() if lock.key in keys]
    scheduled = await status_lines(engine, readable)
    frozen = [
        rb
        for service, env in sorted(readable)
        if (rb := await engine.frozen(service, env)) is not None and rb.freeze is not None
    ]
    if not rollbacks and not locks and not scheduled and not frozen:
        return (
            "No rollbacks in flight, no locks held, no monitoring windows open and nothing frozen."
        )
    lines = ["*In flight:*"] if rollbacks else []
    for rb in rollbacks:
        lines.append(
            f"• `{rb.id}` {rb.service}/{rb.environment} → `{rb.shown_target}` "
            f"({rb.state.label}) by {mention(rb.requested_by)}"
        )
    if locks:
        lines.append("*Locks:*")
        lines += [
            f"• {lock.key} held by `{lock.rollback_id}` ({mention(lock.holder)}) "
            f"until {lock.expires_at:%H:%M} UTC"
            for lock in locks
        ]
    lines += scheduled
    if frozen:
        lines.append("*Frozen:*")
        lines += [f"• {escape(freeze_line(rb))}" for rb in frozen if rb.freeze is not None]
    return "\n".join(lines)
