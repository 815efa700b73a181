"""Restoring a database or Redis backup: find the target, plan it, run it under the lock.

A restore is offered first (`prepare`: the requester must be allowed to request rollbacks
of the service) and run on a second, explicit confirmation (`run`: by an approver). The
offer is recorded in the audit log under its id; the button that confirms it carries the
same fields, which must match that record. Exactly one decision (confirmed or cancelled)
is ever recorded for an offer, so one offer never runs twice.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

import structlog

from bot.commands import KINDS, Kind
from bot.engine import Engine, held_by
from bot.errors import Conflict, InvalidRequest, NotAllowed, Purpose, ReasonRequired, RollbotError
from bot.leases import renewing
from bot.models import AuditEntry, Lock
from bot.names import BACKUP_PATTERN, NAME_PATTERN
from bot.policy import People
from bot.pool import Target
from bot.store.base import LeaseGrant
from bot.text import SLACK_USER, escape, mention
from providers import BY_NAME, restorers
from providers.base import Outcome, Progress, ProviderError, state_or_unknown
from providers.capabilities import BackupListing, Restorable

log = structlog.get_logger(__name__)

RESTORE_ID_PATTERN = re.compile(r"restore-[0-9a-f]{8}")
MAX_LISTED = 20
# How long answering an offer (confirm or cancel) may hold its claim.
CLAIM_TTL = timedelta(seconds=60)

REQUESTED = "restore_requested"
CONFIRMED = "restore_confirmed"
CANCELLED = "restore_cancelled"
FINISHED = "restore_finished"
FAILED = "restore_failed"


def label(kind: Kind, service: str, environment: str, step: str) -> str:
    """Name a target for people: "shop/production database", "shop/production redis `cache`"."""
    named = "" if step in restorers(kind) else f" `{step}`"
    return f"{service}/{environment} {kind}{named}"


def new_restore_id() -> str:
    """Return a short, unguessable restore id."""
    return f"restore-{secrets.token_hex(4)}"


class RestoreFailed(RollbotError):
    """The restore ran and failed; the message says so and what state the target is in."""

    def __init__(self, message: str, target_state: str) -> None:
        super().__init__(message)
        self.target_state = target_state


@dataclass(frozen=True)
class RestoreTarget:
    """One database or Redis that can be restored: a step of a service environment's plan."""

    kind: Kind
    service: str
    environment: str
    index: int
    step: str

    @property
    def key(self) -> str:
        """Return the service+environment lock key."""
        return f"{self.service}/{self.environment}"

    @property
    def label(self) -> str:
        """Name the target for people, e.g. "shop/production database"."""
        return label(self.kind, self.service, self.environment, self.step)


@dataclass(frozen=True)
class RestoreRequest:
    """What an offer is about; the confirm button carries it as JSON."""

    id: str
    kind: Kind
    service: str
    environment: str
    step: str
    backup: str
    requested_by: str

    @property
    def label(self) -> str:
        """Name the target for people."""
        return label(self.kind, self.service, self.environment, self.step)

    def to_json(self) -> str:
        """Serialise compactly, for a button value."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RestoreRequest:
        """Parse and validate a button value; raise InvalidRequest when it is not ours."""
        damaged = InvalidRequest("This restore button is damaged; ask for a new restore.")
        try:
            data = json.loads(text)
        except ValueError:
            raise damaged from None
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise damaged
        checks = {
            "id": RESTORE_ID_PATTERN,
            "service": NAME_PATTERN,
            "environment": NAME_PATTERN,
            "step": NAME_PATTERN,
            "backup": BACKUP_PATTERN,
            "requested_by": SLACK_USER,
        }
        for name, pattern in checks.items():
            if not isinstance(data[name], str) or not pattern.fullmatch(data[name]):
                raise damaged
        kind = KINDS.get(data["kind"]) if isinstance(data["kind"], str) else None
        if kind is None:
            raise damaged
        return cls(**{**data, "kind": kind})


@dataclass(frozen=True)
class RestorePlan:
    """A restore ready to be confirmed: the request, its target and what it will do."""

    request: RestoreRequest
    target: RestoreTarget
    backup: BackupListing
    summary: str
    text: str


class Restores:
    """Lists, plans and runs restores of the databases and Redis instances in the config."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- finding the target ------------------------------------------------------------

    def targets(self, kind: Kind) -> list[RestoreTarget]:
        """Return every step of that kind in every service environment."""
        found = []
        for service, svc in sorted(self.engine.config.services.items()):
            for environment, env in sorted(svc.environments.items()):
                for index, (step, settings) in enumerate(env.targets()):
                    if BY_NAME[settings.provider].restore_kind == kind:
                        found.append(RestoreTarget(kind, service, environment, index, step))
        return found

    def find(
        self, kind: Kind, name: str | None, environment: str | None, verb: str = "restore"
    ) -> RestoreTarget:
        """Return the one target a command means, or raise InvalidRequest listing candidates.

        `name` is a service, or the name of a step when a service has several of a kind;
        without env=ENV each service's default environment is meant (all of them when it
        has no default). The candidates are listed as `/rollback VERB ...` commands.
        """
        everywhere = [t for t in self.targets(kind) if name in (None, t.service, t.step)]
        config = self.engine.config
        if name is not None and not everywhere:
            if name not in config.services:
                known = ", ".join(sorted(config.services)) or "none"
                raise InvalidRequest(f"Unknown service '{name}'. Known services: {known}.")
            raise InvalidRequest(f"Service '{name}' has no {kind} that rollbot can restore.")
        candidates = [t for t in everywhere if self._meant(t, environment)]
        if len(candidates) == 1:
            return candidates[0]
        what = f"{kind} of {name}" if name else kind
        if not candidates:
            if not everywhere:
                raise InvalidRequest(f"No {kind} that rollbot can restore is configured.")
            where = f"in {environment}" if environment else "in the default environment"
            raise InvalidRequest(
                f"No {what} {where}; there is:\n" + self._commands(verb, everywhere)
            )
        raise InvalidRequest(
            f"More than one {what} matches; say which:\n" + self._commands(verb, candidates)
        )

    def _meant(self, target: RestoreTarget, environment: str | None) -> bool:
        if environment is not None:
            return target.environment == environment
        picked = self.engine.config.services[target.service].pick_environment(None)
        return picked is None or picked == target.environment

    def _commands(self, verb: str, targets: list[RestoreTarget]) -> str:
        """List the commands that name each target alone."""
        everything = self.targets(targets[0].kind) if targets else []
        return "\n".join(
            f"• `/rollback {verb} {t.kind} {_word(t, everything)} env={t.environment}`"
            for t in targets[:MAX_LISTED]
        )

    def exact(self, request: RestoreRequest) -> RestoreTarget:
        """Return the target a request names, still present in the config."""
        for target in self.targets(request.kind):
            if (target.service, target.environment, target.step) == (
                request.service,
                request.environment,
                request.step,
            ):
                return target
        raise InvalidRequest(
            f"{request.service}/{request.environment} no longer has the {request.kind} "
            f"`{request.step}` in the config; ask for a new restore."
        )

    # -- backups -----------------------------------------------------------------------

    async def _backups(self, target: RestoreTarget) -> list[BackupListing]:
        """Return the target's backups, newest first."""
        provider = self.engine.providers.step(target.service, target.environment, target.index)
        if not isinstance(provider, Restorable):
            raise InvalidRequest(f"{target.label} cannot be restored.")
        try:
            return await provider.backup_listing()
        except ProviderError as exc:
            raise InvalidRequest(
                f"Could not read the backups of {target.label}: {exc.message}"
            ) from exc

    async def backups(
        self, kind: Kind, name: str | None, environment: str | None, user: str
    ) -> str:
        """Describe the backups of the target a command means, newest first."""
        target = self.find(kind, name, environment, verb="backups")
        await self.engine.check_read(target.service, target.environment, user, "backups")
        found = await self._backups(target)
        folder = self._folder(target)
        if not found:
            takes = (
                "before every migration rollback and every restore"
                if kind == "database"
                else "before every clear"
            )
            return f"No backups of {target.label} yet (in {folder}). rollbot takes one {takes}."
        lines = [f"*Backups of {target.label}* in {folder}, newest first:"]
        for backup in found[:MAX_LISTED]:
            lines.append(f"• {escape(backup.describe())}")
        if len(found) > MAX_LISTED:
            lines.append(f"…and {len(found) - MAX_LISTED} older.")
        word = _word(target, self.targets(kind))
        default = "the latest pre-rollback one" if kind == "database" else "the newest"
        lines.append(
            f"Restore one with `/rollback restore {kind} {word} BACKUP "
            f"env={target.environment}` (without BACKUP: {default})."
        )
        return "\n".join(lines)

    def _folder(self, target: RestoreTarget) -> str:
        env = self.engine.config.environment(target.service, target.environment)
        settings = env.targets()[target.index][1]
        return str(getattr(settings, "backup_dir", "the backup folder"))

    def _pick(
        self, target: RestoreTarget, found: list[BackupListing], backup: str | None
    ) -> BackupListing:
        word = _word(target, self.targets(target.kind))
        listing = f"`/rollback backups {target.kind} {word} env={target.environment}`"
        if backup is not None:
            chosen = next((b for b in found if b.name == backup), None)
            if chosen is None:
                raise InvalidRequest(
                    f"No backup `{backup}` of {target.label}. See {listing} for those that exist."
                )
            return chosen
        if target.kind == "database":
            latest = next((b for b in found if b.pre_rollback), None)
            if latest is None:
                raise InvalidRequest(
                    f"No pre-rollback backup of {target.label} yet; name a backup (see {listing})."
                    if found
                    else f"No backups of {target.label} yet: there is nothing to restore."
                )
            return latest
        if not found:
            raise InvalidRequest(f"No backups of {target.label} yet: there is nothing to restore.")
        return found[0]

    # -- planning ----------------------------------------------------------------------

    async def prepare(
        self,
        kind: Kind,
        service: str | None,
        backup: str | None,
        environment: str | None,
        user: str,
    ) -> RestorePlan:
        """Check the requester, pick the backup and describe the restore; record the offer."""
        target = self.find(kind, service, environment)
        try:
            await self.engine.access.check_request(
                target.service, target.environment, user, "restores"
            )
            await self.engine.refuse_if_busy(target.service, target.environment)
        except (NotAllowed, Conflict) as exc:
            raise await self.engine.refused(None, user, REQUESTED, exc) from None
        chosen = self._pick(target, await self._backups(target), backup)
        request = RestoreRequest(
            id=new_restore_id(),
            kind=kind,
            service=target.service,
            environment=target.environment,
            step=target.step,
            backup=chosen.name,
            requested_by=user,
        )
        plan = await self._plan(request, target, chosen)
        await self._audit(request, user, REQUESTED)
        log.info(REQUESTED, restore_id=request.id, target=target.label, backup=chosen.name)
        return plan

    async def reload(self, request: RestoreRequest) -> RestorePlan:
        """Rebuild the plan of an offer from its button, checked against the recorded offer."""
        recorded = await self._recorded(request)
        if recorded is None:
            raise InvalidRequest(f"There is no restore offer {request.id}; ask for a new restore.")
        target = self.exact(request)
        chosen = self._pick(target, await self._backups(target), request.backup)
        return await self._plan(request, target, chosen)

    async def _plan(
        self, request: RestoreRequest, target: RestoreTarget, chosen: BackupListing
    ) -> RestorePlan:
        provider = self.engine.providers.step(target.service, target.environment, target.index)
        now = await state_or_unknown(provider.describe_state)
        summary = f"Restore {target.label} from backup {chosen.describe()}"
        if target.kind == "database":
            steps = [
                "The database as it is now is backed up first (pg_dump, a pre-restore backup), "
                "so this restore can be undone in turn.",
                f"pg_restore puts back `{chosen.name}` in one transaction: what the backup "
                "holds is dropped and re-created with the backup's rows; any error changes "
                "nothing.",
                "Tables created after the backup are left as they are.",
            ]
        else:
            steps = [
                f"Every key of `{chosen.name}` is put back with the TTL it had left when it "
                "was backed up (keys that had expired then are skipped).",
                "A key of the same name is overwritten; keys not in the backup are left alone.",
            ]
        access = self.engine.access
        policy = access.policy(target.service, target.environment)
        second = (
            " (a second person: the environment is protected)"
            if access.protected(target.service, target.environment)
            else ""
        )
        text = "\n".join(
            [
                f"*Restore {target.label}* from backup {escape(chosen.describe())}",
                f"Requested by {mention(request.requested_by)}. Now: {escape(now)}.",
                *(f"{i}. {step}" for i, step in enumerate(steps, 1)),
                f"Needs confirmation by {_people(policy.approvers)}{second}.",
            ]
        )
        return RestorePlan(request, target, chosen, summary, text)

    # -- deciding and running ----------------------------------------------------------

    async def may_confirm(self, target: RestoreTarget, user: str) -> bool:
        """Return True when the user is an approver of the target's service environment."""
        return await self.engine.access.approver(target.service, target.environment, user)

    async def cancel(self, request: RestoreRequest, user: str) -> None:
        """Withdraw an offer (its requester or an approver); nothing is changed."""
        if await self._recorded(request) is None:
            raise InvalidRequest(f"There is no restore offer {request.id}.")
        target = self.exact(request)
        if user != request.requested_by and not await self.may_confirm(target, user):
            raise NotAllowed(
                f"Only the requester or an approver of {target.key} can cancel this restore."
            )
        await self._decide(request, user, CANCELLED)

    async def run(
        self,
        plan: RestorePlan,
        user: str,
        progress: Progress,
        *,
        started: Callable[[], Awaitable[None]] | None = None,
        break_glass_reason: str | None = None,
    ) -> Outcome:
        """Run a confirmed restore under the service lease; `started` is called once it begins.

        Raises NotAllowed, ReasonRequired or Conflict with nothing changed, or RestoreFailed
        after it began.
        """
        target, request = plan.target, plan.request
        engine = self.engine
        reason = (break_glass_reason or "").strip() or None
        try:
            await engine.access.check_restore(
                target.service, target.environment, user, request.requested_by, reason is not None
            )
            await engine.refuse_if_busy(target.service, target.environment)
        except NotAllowed as exc:
            asks_glass = (
                user == request.requested_by
                and reason is None
                and await engine.access.approver(target.service, target.environment, user)
                and engine.access.policy(target.service, target.environment).break_glass.enabled
            )
            await engine.refused(request.id, user, CONFIRMED, exc)
            if asks_glass:
                raise ReasonRequired(
                    f"{exc.message} Give the break-glass reason to restore it yourself; it "
                    "is recorded and announced in the thread.",
                    purpose=Purpose.RESTORE_BREAK_GLASS,
                ) from None
            raise
        except Conflict as exc:
            raise await engine.refused(request.id, user, CONFIRMED, exc) from None
        ttl = timedelta(seconds=engine.config.runtime.lock_ttl_seconds)
        run_id = new_restore_id()
        grant = LeaseGrant(holder=user, owner=str(engine.owner), ttl=ttl)
        lease = await engine.lease_table.take_lease(target.key, run_id, grant)
        if lease.rollback_id != run_id:
            raise Conflict(
                f"{target.key} is locked by {held_by(lease)} until {lease.expires_at:%H:%M} UTC."
            )
        try:
            details = {"run": run_id} | ({"break_glass": reason} if reason else {})
            await self._decide(request, user, CONFIRMED, **details)
            if started is not None:
                await started()
            return await self._restore(plan, user, progress, lease, ttl)
        finally:
            await engine.lease_table.release_lease(target.key, run_id, lease.token)

    async def _restore(
        self, plan: RestorePlan, user: str, progress: Progress, lease: Lock, ttl: timedelta
    ) -> Outcome:
        target = plan.target
        provider = self.engine.providers.step(target.service, target.environment, target.index)
        # A restore may outlast the lease's TTL (a backup, then pg_restore): renew it.
        async with renewing(self.engine.lease_table, lease, ttl):
            return await self._restore_under_lease(plan, user, progress, provider)

    async def _restore_under_lease(
        self, plan: RestorePlan, user: str, progress: Progress, provider: Target
    ) -> Outcome:
        target, request = plan.target, plan.request
        try:
            with structlog.contextvars.bound_contextvars(restore_id=request.id):
                log.info("restore started", target=target.label, backup=request.backup, user=user)
                if isinstance(provider, Restorable):
                    outcome = await provider.restore(request.backup, progress)
                else:
                    raise InvalidRequest(f"{target.label} cannot be restored.")
        except ProviderError as exc:
            state = exc.target_state or await state_or_unknown(provider.describe_state)
            await self._audit(request, "rollbot", FAILED, error=exc.message, state=state)
            raise RestoreFailed(
                f"The restore of {target.label} from `{request.backup}` failed: {exc.message}",
                state,
            ) from exc
        except BaseException as exc:
            await self._audit(request, "rollbot", FAILED, error=type(exc).__name__)
            raise
        await self._audit(request, "rollbot", FINISHED, summary=outcome.summary)
        log.info("restore finished", restore_id=request.id, summary=outcome.summary)
        return outcome

    async def _decide(
        self, request: RestoreRequest, user: str, action: str, **details: str
    ) -> None:
        """Record the one decision an offer gets; refuse a second one, whoever sends it."""
        claim = new_restore_id()
        key = f"answer:{request.id}"
        grant = LeaseGrant(holder=user, owner=str(self.engine.owner), ttl=CLAIM_TTL)
        held = await self.engine.lease_table.take_lease(key, claim, grant)
        if held.rollback_id != claim:
            raise Conflict(f"{mention(held.holder)} is answering this restore offer right now.")
        try:
            for entry in await self.engine.records.audit_log(request.id):
                if entry.action in {CONFIRMED, CANCELLED}:
                    done = "confirmed" if entry.action == CONFIRMED else "cancelled"
                    raise Conflict(
                        f"This restore was already {done} by {mention(entry.actor)} at "
                        f"{entry.at:%H:%M} UTC."
                    )
            await self._audit(request, user, action, **details)
        finally:
            await self.engine.lease_table.release_lease(key, claim, held.token)

    async def _recorded(self, request: RestoreRequest) -> AuditEntry | None:
        """Return the offer's record when the request matches it field by field."""
        expected = _details(request)
        for entry in await self.engine.records.audit_log(request.id):
            if entry.action == REQUESTED and entry.details == expected:
                return entry
        return None

    async def _audit(self, request: RestoreRequest, actor: str, action: str, **extra: str) -> None:
        await self.engine.records.audit(
            AuditEntry(
                actor=actor,
                action=action,
                rollback_id=request.id,
                details={**_details(request), **extra},
            )
        )


def _details(request: RestoreRequest) -> dict[str, str]:
    return {
        "kind": request.kind,
        "service": request.service,
        "environment": request.environment,
        "step": request.step,
        "backup": request.backup,
        "requested_by": request.requested_by,
    }


def _word(target: RestoreTarget, everything: list[RestoreTarget]) -> str:
    """Return the word that names a target in a command: its service, or its step's name."""
    same_place = [t for t in everything if t.key == target.key]
    return target.service if len(same_place) == 1 else target.step


def _people(people: People) -> str:
    if people.anyone:
        return "anyone (the requester too)"
    names = [mention(u) for u in people.users] + [f"<!subteam^{g}>" for g in people.groups]
    return f"an approver ({', '.join(names)})"
