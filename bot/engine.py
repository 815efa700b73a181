"""The rollback engine: the state machine of `bot/states.py`, free of Slack types.

A rollback changes state only through `Engine.apply`, which applies one entry of the
transition table: who may cause it is asked of `bot/access.py`, and the store writes the
state, the lock change (a fenced lease) and the audit record in one atomic step. So a
double click, a Slack retry or a second process can never move a rollback twice or run
it twice.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from bot.access import Access
from bot.config import PREVIOUS, RollbotConfig
from bot.decisions import Decisions, moved_on
from bot.directory import Directory
from bot.errors import (
    Busy,
    Conflict,
    InvalidRequest,
    NotAllowed,
    RollbotError,
)
from bot.events import Events, Moved
from bot.execution import Execution
from bot.freezes import Freezes
from bot.leases import Owner, this_process
from bot.models import (
    ACTIVE_STATES,
    OPEN_STATES,
    AuditEntry,
    Event,
    Lock,
    Rollback,
    State,
)
from bot.names import COMMIT_PATTERN, NAME_PATTERN, VERSION_PATTERN
from bot.planning import plan_first, plan_later, shown_names
from bot.policy import ApprovalPolicy
from bot.pool import ProviderPool
from bot.states import TRANSITIONS, LockChange, Trigger, Who
from bot.store.base import Applied, Change, LeaseGrant, OpenSlotTaken, Refusal, Store
from bot.store.roles import StoreRoles
from bot.takeover import Takeover
from bot.text import mention
from bot.tracing import current_trace_id
from providers.base import ProviderError, Version

log = structlog.get_logger(__name__)


def new_rollback_id() -> str:
    """Return a short, unguessable rollback id."""
    return f"rb-{secrets.token_hex(4)}"


def held_by(lock: Lock) -> str:
    """Say what holds a lock: "rollback rb-… of @ana", "restore restore-… of @ben"."""
    what = "restore" if lock.rollback_id.startswith("restore-") else "rollback"
    return f"{what} {lock.rollback_id} of {mention(lock.holder)}"


def busy(other: Rollback, message: str) -> Busy:
    """Refuse because `other` is open for the service; the answer can link to its card."""
    return Busy(message, other.channel_id, other.message_ts)


class Engine(Decisions, Execution, Freezes, Takeover, StoreRoles):
    """Drives rollbacks from request to verified result."""

    def __init__(
        self,
        config: RollbotConfig,
        store: Store,
        providers: ProviderPool,
        directory: Directory | None = None,
        clock: Callable[[], float] = time.monotonic,
        owner: Owner | None = None,
    ) -> None:
        super().__init__(clock)
        self.config = config
        self.store = store
        self.providers = providers
        self.access = Access(config, directory)
        self.owner = owner or this_process()
        # The leases this process holds, by rollback id: their tokens fence its writes.
        self.leases: dict[str, Lock] = {}
        # Where every transition is published: metrics and the Slack thread subscribe.
        self.events = Events()

    @property
    def directory(self) -> Directory:
        """Return where user groups are looked up."""
        return self.access.directory

    @directory.setter
    def directory(self, directory: Directory) -> None:
        self.access.directory = directory

    # -- lookups ---------------------------------------------------------------------

    def resolve(self, service: str, environment: str | None) -> str:
        """Return the environment meant, or raise InvalidRequest naming what exists."""
        if service not in self.config.services:
            known = ", ".join(sorted(self.config.services)) or "none"
            raise InvalidRequest(f"Unknown service '{service}'. Known services: {known}.")
        svc = self.config.services[service]
        env = svc.pick_environment(environment)
        if env is None:
            names = ", ".join(sorted(svc.environments))
            raise InvalidRequest(
                f"Service '{service}' has several environments; add env=ENV ({names})."
            )
        if env not in svc.environments:
            names = ", ".join(sorted(svc.environments))
            raise InvalidRequest(
                f"Service '{service}' has no environment '{env}'. Environments: {names}."
            )
        return env

    async def versions(self, service: str, environment: str | None) -> tuple[str, list[Version]]:
        """Return the environment and the versions a service can roll back to."""
        env = self.resolve(service, environment)
        provider = self.providers.get(service, env)
        try:
            return env, await provider.list_versions()
        except ProviderError as exc:
            raise InvalidRequest(
                f"Could not read versions of {service}/{env}: {exc.message}"
            ) from exc

    async def running(
        self, service: str, environment: str | None
    ) -> tuple[str, list[Version], str]:
        """Return the environment, its versions and the one running now."""
        env, versions = await self.versions(service, environment)
        current = next((v.name for v in versions if v.current), None)
        if current is None:
            raise InvalidRequest(f"Could not tell which version of {service}/{env} is running.")
        return env, versions, current

    def policy(self, rollback: Rollback) -> ApprovalPolicy:
        """Return the approval policy that governs a rollback."""
        return self.access.policy(rollback.service, rollback.environment)

    async def get(self, rollback_id: str) -> Rollback:
        """Return a rollback or raise InvalidRequest."""
        rollback = await self.store.get(rollback_id)
        if rollback is None:
            raise InvalidRequest(f"No rollback {rollback_id}.")
        return rollback

    # -- recording -------------------------------------------------------------------

    async def record(
        self, rollback: Rollback, actor: str, kind: str, text: str, **details: str
    ) -> None:
        """Add a timeline line and an audit record that are not a transition."""
        await self.store.add_event(
            Event(rollback_id=rollback.id, actor=actor, kind=kind, text=text)
        )
        await self.store.audit(
            AuditEntry(actor=actor, action=kind, rollback_id=rollback.id, details=details)
        )
        log.info(kind, rollback_id=rollback.id, user=actor, text=text)

    async def refused(
        self, rollback_id: str | None, actor: str, what: str, error: RollbotError
    ) -> RollbotError:
        """Audit a refusal and return the error to raise."""
        await self.store.audit(
            AuditEntry(
                actor=actor,
                action="refused",
                rollback_id=rollback_id,
                details={"what": what, "reason": error.message[:500]},
            )
        )
        log.info("refused", rollback_id=rollback_id, user=actor, what=what)
        return error

    async def check_read(
        self, service: str, environment: str, user: str, what: str, rollback_id: str | None = None
    ) -> None:
        """Raise NotAllowed (audited) unless `user` may read rollbacks of this environment."""
        try:
            await self.access.check_read(service, environment, user)
        except NotAllowed as exc:
            raise await self.refused(rollback_id, user, what, exc) from None

    async def allowed(self, trigger: Trigger, rollback: Rollback, user: str) -> None:
        """Raise NotAllowed (audited) unless `user` may cause `trigger` on this rollback."""
        entry = TRANSITIONS[trigger]
        await self.check(entry.who, rollback, user, entry.doing, trigger.value)

    async def check(self, who: Who, rollback: Rollback, user: str, doing: str, what: str) -> None:
        """Raise NotAllowed (audited) unless `user` is `who` for this rollback."""
        try:
            await self.access.check(who, rollback, user, doing)
        except NotAllowed as exc:
            raise await self.refused(rollback.id, user, what, exc) from None

    async def apply(
        self,
        rollback: Rollback,
        trigger: Trigger,
        actor: str,
        text: str | None,
        *,
        notes: list[tuple[str, str, str]] | None = None,
        details: dict[str, str] | None = None,
        **fields: object,
    ) -> Rollback:
        """Apply one entry of the transition table, or raise why it cannot be applied.

        `text` is the transition's timeline line (None: audit only); `notes` are further
        (actor, kind, text) lines recorded in the same atomic write, before it.
        """
        entry = TRANSITIONS[trigger]
        await self.allowed(trigger, rollback, actor)
        held = self.leases.get(rollback.id)
        token = held.token if held and entry.lock in {LockChange.KEEP, LockChange.RELEASE} else None
        if entry.lock is LockChange.KEEP and token is None:
            raise await self.refused(
                rollback.id,
                actor,
                trigger.value,
                Conflict(f"Rollback {rollback.id} is not running in this process."),
            )
        grant = None
        if entry.lock is LockChange.TAKE:
            ttl = timedelta(seconds=self.config.runtime.lock_ttl_seconds)
            grant = LeaseGrant(holder=rollback.requested_by, owner=str(self.owner), ttl=ttl)
        change = Change(
            rollback_id=rollback.id,
            sources=entry.sources,
            target=entry.target,
            lock=entry.lock,
            audit=[
                *(self._audit(rollback, who, kind, line) for who, kind, line in notes or []),
                self._audit(rollback, actor, entry.records, text, trigger, details),
            ],
            events=[
                Event(rollback_id=rollback.id, actor=who, kind=kind, text=line)
                for who, kind, line in [*(notes or []), (actor, entry.records, text)]
                if line is not None
            ],
            fields=dict(fields),
            token=token,
            grant=grant,
        )
        applied = await self.store.apply(change)
        if applied.rollback is None:
            raise await self.refused(rollback.id, actor, trigger.value, self._refusal(applied))
        if applied.lease is not None:
            self.leases[rollback.id] = applied.lease
        else:
            self.leases.pop(rollback.id, None)
        moved = applied.rollback
        log.info(
            entry.records,
            rollback_id=moved.id,
            service=moved.service,
            environment=moved.environment,
            user=actor,
            state=moved.state.value,
            text=text,
        )
        await self.events.publish(Moved(moved, applied.previous, trigger, actor))
        return moved

    @staticmethod
    def _audit(
        rollback: Rollback,
        actor: str,
        kind: str,
        text: str | None,
        trigger: Trigger | None = None,
        details: dict[str, str] | None = None,
    ) -> AuditEntry:
        extra = {"trigger": trigger.value} if trigger else {}
        return AuditEntry(
            actor=actor,
            action=kind,
            rollback_id=rollback.id,
            details={**extra, **({"text": text} if text else {}), **(details or {})},
        )

    @staticmethod
    def _refusal(applied: Applied) -> RollbotError:
        """Say why the store refused a transition."""
        current, blocker = applied.current, applied.blocker
        assert current is not None
        match applied.refusal:
            case Refusal.BUSY if isinstance(blocker, Lock):
                return Conflict(
                    f"{current.lock_key} is locked by {held_by(blocker)} until "
                    f"{blocker.expires_at:%H:%M} UTC; rollback {current.id} stays "
                    f"{current.state.label}."
                )
            case Refusal.TAKEN if isinstance(blocker, Rollback):
                return busy(
                    blocker,
                    f"{current.lock_key} already has rollback {blocker.id} by "
                    f"{mention(blocker.requested_by)} ({blocker.state.label}).",
                )
            case Refusal.FENCED:
                return Conflict(
                    f"Rollback {current.id} was taken over by another rollbot process; "
                    "this one stops here."
                )
        return moved_on(current)

    # -- the flow --------------------------------------------------------------------

    async def request(
        self,
        *,
        service: str,
        version: str | None,
        environment: str | None,
        user: str,
        dry_run: bool = False,
        channel_id: str | None = None,
        from_terminal: bool = False,
        bad_commit: str | None = None,
        detected_at: datetime | None = None,
    ) -> Rollback:
        """Create a rollback after checking the policy, the locks and the target version.

        A terminal operator (`cli:NAME`) is trusted as a requester: shell access to the
        bot's host is the stronger credential, and the terminal is the path for when Slack
        is down.
        """
        # The Slack parser checks these already; the terminal and any future caller
        # go through the same gate before anything reaches a provider.
        for what, value, pattern in (
            ("service", service, NAME_PATTERN),
            ("environment", environment, NAME_PATTERN),
            ("version", version, VERSION_PATTERN),
            ("commit", bad_commit, COMMIT_PATTERN),
        ):
            if value is not None and not pattern.fullmatch(value):
                raise InvalidRequest(f"{value[:40]!r} is not a valid {what}.")
        env = self.resolve(service, environment)
        if from_terminal and not user.startswith("cli:"):
            raise NotAllowed("Terminal requests are made as cli:NAME.")
        try:
            await self.access.check_request(service, env, user, "rollbacks")
            if not dry_run:
                await self.refuse_if_busy(service, env)
        except (NotAllowed, Conflict) as exc:
            raise await self.refused(None, user, "request", exc) from None
        env, versions, current = await self.running(service, env)
        if bad_commit is None:
            target = self._pick_target(service, env, version, current, versions)
        elif version is not None:
            raise InvalidRequest("Name either a version or a commit to revert, not both.")
        else:
            target = f"revert {bad_commit}"
        shown = shown_names(versions, {current: None, target: version})
        first = await plan_first(self.providers, service, env, current, target, bad_commit, shown)
        later = await plan_later(
            self.providers, service, env, self.config.environment(service, env).steps, target
        )
        rollback = Rollback(
            id=new_rollback_id(),
            service=service,
            environment=env,
            requested_by=user,
            current_version=current,
            target_version=target,
            dry_run=dry_run,
            plan=first.plan,
            warnings=first.warnings,
            steps=[first, *later],
            bad_commit=bad_commit,
            channel_id=channel_id,
            detected_at=detected_at,
            released_at=next((v.created_at for v in versions if v.current), None),
        )
        return await self.create(
            rollback, f"{service}/{env} {rollback.shown_current} → {rollback.shown_target}"
        )

    async def create(self, rollback: Rollback, what: str, **details: str) -> Rollback:
        """Store a new rollback in its open slot, with its request recorded, or refuse."""
        entry = TRANSITIONS[Trigger.REQUEST]
        if rollback.trace_id is None:
            rollback = rollback.model_copy(update={"trace_id": current_trace_id()})
        kind = "Drill" if rollback.drill else "Dry run" if rollback.dry_run else "Rollback"
        text = f"{kind} requested: {what}"
        details = {
            "current": rollback.current_version,
            "target": rollback.target_version,
            "dry_run": str(rollback.dry_run),
            **details,
        }
        audit = self._audit(rollback, rollback.requested_by, entry.records, text, None, details)
        event = Event(
            rollback_id=rollback.id, actor=rollback.requested_by, kind=entry.records, text=text
        )
        try:
            await self.store.create(rollback, audit, event)
        except OpenSlotTaken as taken:
            other = taken.other
            error = busy(
                other,
                f"{rollback.lock_key} already has rollback {other.id} by "
                f"{mention(other.requested_by)} ({other.state.label}); it was asked for first.",
            )
            raise await self.refused(None, rollback.requested_by, "request", error) from None
        log.info(entry.records, rollback_id=rollback.id, user=rollback.requested_by, text=text)
        await self.events.publish(Moved(rollback, None, Trigger.REQUEST, rollback.requested_by))
        return rollback

    async def refuse_if_busy(self, service: str, env: str) -> None:
        """Raise Conflict naming the holder when a service environment is taken."""
        found = await self.store.find(
            states=OPEN_STATES | ACTIVE_STATES, service=service, environment=env
        )
        open_ones = [rb for rb in found if not rb.dry_run]
        if open_ones:
            other = open_ones[0]
            advice = (
                f"Wait for it, or cancel it with `/rollback cancel {other.id}`."
                if other.state in OPEN_STATES - {State.APPROVED}
                else "It is running; wait for its result in its thread."
            )
            raise busy(
                other,
                f"{service}/{env} already has rollback {other.id} by "
                f"{mention(other.requested_by)} ({other.state.label}). {advice}",
            )
        for lock in await self.store.locks():
            if lock.key == f"{service}/{env}":
                raise Conflict(
                    f"{service}/{env} is locked by {held_by(lock)} until "
                    f"{lock.expires_at:%H:%M} UTC."
                )

    @staticmethod
    def _pick_target(
        service: str, env: str, version: str | None, current: str, versions: list[Version]
    ) -> str:
        names = [v.name for v in versions]
        shown = ", ".join(names[:10]) or "none"
        # `previous` means the previous stable version, unless a version is named so.
        if version == PREVIOUS and not any(v.answers_to(version) for v in versions):
            version = None
        if version is None:
            stable = next((v.name for v in versions if v.previous_stable), None)
            if stable is None:
                raise InvalidRequest(
                    f"{service}/{env} runs {current} and has no earlier version to roll back to."
                )
            return stable
        # Providers may accept other names for a version (a commit sha, a bare 1.2.3);
        # the card always shows the canonical one.
        found = next((v for v in versions if v.answers_to(version)), None)
        if found is None:
            raise InvalidRequest(
                f"Version {version} of {service}/{env} is not available. Available: {shown}."
            )
        if found.name == current:
            raise InvalidRequest(f"{service}/{env} already runs {version}.")
        return found.name
