"""Who may do what: the one place that decides, for Slack handlers, the engine and the CLI.

Roles come from the service environment's approval policy (inherited key by key from
the top level): requesters, approvers and readers, each users and Slack user groups.
Empty requesters mean anyone in the workspace may ask; empty approvers mean anyone but
the requester, which a protected environment never allows (the config is refused). When a
rule cannot be decided, the answer is no.
"""

from __future__ import annotations

from bot.config import RollbotConfig
from bot.directory import Directory, NoDirectory
from bot.errors import NotAllowed
from bot.models import Rollback
from bot.policy import ApprovalPolicy, People
from bot.states import Who
from bot.text import mention

# Actors that are rollbot itself (its engine, its policy) and the terminal's operators.
ROLLBOT_ACTORS = frozenset({"rollbot", "policy"})
OPERATOR_PREFIX = "cli:"


class Access:
    """Answers "may this person do this?" for every command, button and transition."""

    def __init__(self, config: RollbotConfig, directory: Directory | None = None) -> None:
        self.config = config
        self.directory: Directory = directory or NoDirectory()

    def policy(self, service: str, environment: str) -> ApprovalPolicy:
        """Return the approval policy of one service environment.

        A rollback recorded under a service or environment the config no longer has falls
        under the top-level policy.
        """
        if environment not in getattr(self.config.services.get(service), "environments", {}):
            return self.config.approval
        return self.config.policy_for(service, environment)

    def protected(self, service: str, environment: str) -> bool:
        """Return True for a protected environment (and one the config no longer has)."""
        if environment not in getattr(self.config.services.get(service), "environments", {}):
            return True
        return self.config.is_protected(service, environment)

    async def member(self, people: People, user: str) -> bool:
        """Return True when the user is listed, directly or through a group."""
        if user in people.users:
            return True
        for group in people.groups:
            if user in await self.directory.members(group):
                return True
        return False

    # -- roles -------------------------------------------------------------------------

    async def requester(self, service: str, environment: str, user: str) -> bool:
        """Return True for someone who may request rollbacks of a service environment."""
        people = self.policy(service, environment).requesters
        return people.anyone or await self.member(people, user)

    async def approver(self, service: str, environment: str, user: str) -> bool:
        """Return True for someone who may approve there (the requester too, for break-glass)."""
        people = self.policy(service, environment).approvers
        if people.anyone:
            # The config refuses a protected environment without approvers; fail closed
            # should one get here anyway.
            return not self.protected(service, environment)
        return await self.member(people, user)

    async def reader(self, service: str, environment: str, user: str) -> bool:
        """Return True for someone who may read status, history and reports."""
        readers = self.policy(service, environment).readers
        return (
            await self.requester(service, environment, user)
            or await self.approver(service, environment, user)
            or (not readers.anyone and await self.member(readers, user))
        )

    async def participant(self, rollback: Rollback, user: str) -> bool:
        """Return True for its requester and anyone who may request or approve there."""
        service, env = rollback.service, rollback.environment
        return (
            user == rollback.requested_by
            or await self.requester(service, env, user)
            or await self.approver(service, env, user)
        )

    async def may(self, who: Who, rollback: Rollback, user: str) -> bool:
        """Return True when `user` is `who` for this rollback."""
        service, env = rollback.service, rollback.environment
        match who:
            case Who.ROLLBOT:
                return user in ROLLBOT_ACTORS
            case Who.OPERATOR:
                return user.startswith(OPERATOR_PREFIX)
            case Who.REQUESTER:
                return await self.requester(service, env, user)
            case Who.APPROVER:
                return user != rollback.requested_by and await self.approver(service, env, user)
            case Who.REQUESTER_OR_APPROVER:
                return user == rollback.requested_by or await self.approver(service, env, user)
            case Who.BREAK_GLASS:
                return (
                    user == rollback.requested_by
                    and self.break_glass_allowed(rollback)
                    and await self.approver(service, env, user)
                )
        return False

    def break_glass_allowed(self, rollback: Rollback) -> bool:
        """Return True when the policy lets a requester approve their own rollback."""
        glass = self.policy(rollback.service, rollback.environment).break_glass
        return glass.enabled and rollback.severity in {s.value for s in glass.severities}

    # -- checks that raise NotAllowed with the reason ------------------------------------

    async def check(self, who: Who, rollback: Rollback, user: str, doing: str) -> None:
        """Raise NotAllowed unless `user` is `who` for this rollback; `doing` names the act."""
        if await self.may(who, rollback, user):
            return
        where = f"{rollback.service}/{rollback.environment}"
        match who:
            case Who.APPROVER if user == rollback.requested_by:
                why = "You requested this rollback, so someone else must " + doing + "."
            case Who.APPROVER:
                why = f"You are not an approver for {where}."
            case Who.REQUESTER_OR_APPROVER:
                why = f"Only the requester or an approver can {doing}."
            case Who.REQUESTER:
                why = f"You are not allowed to {doing} of {where}."
            case Who.BREAK_GLASS:
                why = self.break_glass_refusal(rollback)
            case _:
                why = f"Only {who.value} can {doing}."
        raise NotAllowed(why)

    def break_glass_refusal(self, rollback: Rollback) -> str:
        """Say why the requester may not approve their own rollback."""
        glass = self.policy(rollback.service, rollback.environment).break_glass
        severities = ", ".join(s.value for s in glass.severities)
        when = f"only for {severities} severity" if glass.enabled else "never"
        return (
            "You requested this rollback, so someone else must approve it "
            f"(self-approval is allowed {when}, and only for approvers)."
        )

    async def check_request(self, service: str, environment: str, user: str, what: str) -> None:
        """Raise NotAllowed unless `user` may request `what` (rollbacks, restores)."""
        if user.startswith(OPERATOR_PREFIX) or await self.requester(service, environment, user):
            return
        raise NotAllowed(f"You are not allowed to request {what} of {service}/{environment}.")

    async def check_read(self, service: str, environment: str, user: str) -> None:
        """Raise NotAllowed unless `user` may read status, history and reports there."""
        if not await self.reader(service, environment, user):
            raise NotAllowed(
                f"You may not read rollbacks of {service}/{environment}: ask someone who may "
                "request or approve them."
            )

    async def readable(self, user: str) -> set[tuple[str, str]]:
        """Return the (service, environment) pairs whose rollbacks `user` may read."""
        return {
            (service, env)
            for service, svc in self.config.services.items()
            for env in svc.environments
            if await self.reader(service, env, user)
        }

    async def check_drill(self, service: str, environment: str, user: str) -> None:
        """Raise NotAllowed for a protected environment or someone who may not request."""
        if self.protected(service, environment):
            raise NotAllowed(
                f"Drills never run in a protected environment: {service}/{environment} is "
                "protected. Drill in staging (or another unprotected environment) with env=ENV."
            )
        if not await self.requester(service, environment, user):
            raise NotAllowed(f"You are not allowed to run drills of {service}/{environment}.")

    async def check_restore(
        self, service: str, environment: str, user: str, requested_by: str, break_glass: bool
    ) -> None:
        """Raise NotAllowed unless `user` may confirm a restore that `requested_by` asked for.

        An approver confirms. In a protected environment that is a second person, unless the
        requester, an approver themself, confirms by break-glass with a recorded reason.
        """
        where = f"{service}/{environment}"
        if not await self.approver(service, environment, user):
            raise NotAllowed(f"Only an approver of {where} can confirm this restore.")
        if user != requested_by or not self.protected(service, environment):
            return
        glass = self.policy(service, environment).break_glass
        if break_glass and glass.enabled:
            return
        how = (
            "or confirm it yourself by break-glass, with a reason that is recorded and announced"
            if glass.enabled
            else "(break-glass is off here)"
        )
        raise NotAllowed(
            f"{where} is protected: a second approver must confirm the restore "
            f"{mention(requested_by)} asked for, {how}."
        )
