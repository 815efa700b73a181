"""AWS Lambda alias provider: point an alias back at an earlier published version.

Versions are the function's published versions (`providers.lambda_versions` says how
they are named). The rollback is one UpdateAlias call that sets the version and clears
any additional version weights, guarded by the alias's RevisionId so that a change made
since rollbot read the alias makes Lambda refuse it (nothing is overwritten). It is
never sent twice: after a lost answer the alias is read back. Then the alias is read
again and the target's State must be Active.

Lambda has no setting that keeps a version from being pointed at again: the freeze is
watch only.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Literal

import structlog
from pydantic import Field, field_validator

from providers.aws import AwsApi, AwsSettings
from providers.base import (
    Conflicting,
    Outcome,
    Plan,
    Progress,
    ProviderError,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
    Version,
    say,
    state_or_unknown,
)
from providers.capabilities import Identity, PreflightReport, Verdict
from providers.ecs_freeze import WatchOnlyFreeze
from providers.lambda_preflight import alias_identity, report, split_text, state_check
from providers.lambda_versions import Alias, Catalog, FunctionVersion
from providers.preflight_lines import one_line

log = structlog.get_logger(__name__)

Json = dict[str, Any]
# `checkout`, or its ARN without a qualifier (the alias is its own setting).
FUNCTION = re.compile(
    r"[A-Za-z0-9_-]{1,64}|arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}"
)
ALIAS = re.compile(r"(?!^[0-9]+$)[A-Za-z0-9_-]{1,128}")
NO_SETTING = (
    "Lambda has no setting that keeps a published version from being pointed at again "
    "(UpdateAlias takes any version, and a pipeline publishes and moves the alias itself); "
    "version {bad} stays published"
)


class LambdaAliasSettings(AwsSettings):
    """Settings of a `lambda_alias` target."""

    provider: Literal["lambda_alias"]
    function: str = Field(description="Function name or ARN (without a qualifier).")
    alias: str = Field(description="The alias to move, e.g. live.")
    max_versions: int = Field(
        default=20,
        ge=1,
        le=100,
        description="How many of the newest published versions are offered.",
    )

    @field_validator("function")
    @classmethod
    def _function(cls, value: str) -> str:
        if not FUNCTION.fullmatch(value):
            raise ValueError(
                "must be a function name or an unqualified function ARN; name the alias in "
                "`alias`, not in the ARN"
            )
        return value

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        if not ALIAS.fullmatch(value):
            raise ValueError("must be an alias name (letters, digits, - and _; not a number)")
        return value


class LambdaAliasProvider(WatchOnlyFreeze):
    """Roll a Lambda alias back by pointing it at an earlier published version."""

    watch_only_because = NO_SETTING
    platform = "Lambda"

    def __init__(self, settings: LambdaAliasSettings) -> None:
        self._settings = settings
        self._aws = AwsApi("lambda", settings)
        self._name = settings.function.rpartition(":function:")[2]

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return what the alias runs: its version, or `7+8` while it splits traffic."""
        return (await self._alias()).running

    async def list_versions(self) -> list[Version]:
        """Return the newest published versions, newest first, current and previous marked."""
        catalog = await self._catalog()
        alias = catalog.alias
        previous = catalog.previous()
        versions = []
        if alias.split or catalog.find(alias.version) is None:
            versions.append(
                Version(
                    name=alias.running,
                    current=True,
                    detail=f"alias `{alias.name}`: {alias.traffic()}",
                )
            )
        serving = {alias.version, *alias.weights}
        offered = [
            v
            for i, v in enumerate(catalog.versions)
            if i < self._settings.max_versions or str(v.number) in serving
        ]
        for v in offered:
            versions.append(
                Version(
                    name=str(v.number),
                    created_at=v.last_modified,
                    current=not alias.split and str(v.number) == alias.version,
                    previous_stable=previous is not None and v.number == previous.number,
                    detail=_detail(v),
                    aliases=catalog.aliases_of(v),
                )
            )
        return versions

    async def plan(self, target: str) -> Plan:
        """Describe the UpdateAlias call and the checks after it, changing nothing."""
        catalog = await self._catalog()
        version = self._resolve(catalog, target)
        alias = catalog.alias
        steps = [
            f"Call lambda:UpdateAlias on alias `{alias.name}` of `{self._name}` with "
            f"FunctionVersion {version.number} and no additional version weights, guarded by "
            "its RevisionId (Lambda refuses the call if the alias changed since it was read); "
            f"it sends traffic to {alias.traffic()} now.",
            f"Read the alias back: it must send 100 % to version {version.number}, and "
            f"version {version.number} must be Active.",
        ]
        warnings = [split_text(alias, version)] if alias.split else []
        return Plan(steps=steps, warnings=warnings)

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Point the alias at the target version, 100 %, and check that it does."""
        started = time.monotonic()
        catalog = await self._catalog()
        version = self._resolve(catalog, target)
        check = state_check(self._name, await self._config(str(version.number)))
        if check.verdict is not Verdict.PASS:
            raise Refused(check.why, target_state=self._state(catalog.alias))
        await self._update_alias(catalog, version)
        await say(
            progress,
            f"Alias `{catalog.alias.name}` set to version {version.number}; reading it back…",
        )
        alias = await self._verify(catalog, version)
        log.info(
            "lambda.rollback",
            function=self._name,
            version=version.number,
            seconds=round(time.monotonic() - started, 2),
        )
        return Outcome(
            summary=f"Alias `{alias.name}` of `{self._name}` now sends 100 % of traffic to "
            f"{catalog.label(version)}, which is Active.",
            notes=[f"It sent traffic to {catalog.alias.traffic()} before."],
        )

    async def describe_state(self) -> str:
        """Say where the alias sends its traffic: `alias live → version 7 (90 %), …`."""
        return self._state(await self._alias())

    # -- Preflight and Describe -------------------------------------------------------------

    async def preflight(self, target: str) -> PreflightReport:
        """Check that the target version is Active and say what changes, changing nothing."""
        catalog = await self._catalog()
        version = self._resolve(catalog, target)
        configs = await self._configs(catalog)
        target_config = await self._config(str(version.number))
        return report(catalog, version, target_config, configs)

    async def identity_now(self) -> Identity:
        """Return the versions the alias runs with their code's SHA-256 (and shares)."""
        # Only the alias and the versions it serves matter: no need to list every version.
        catalog = Catalog(self._name, await self._alias(), [])
        return alias_identity(catalog, await self._configs(catalog))

    async def aclose(self) -> None:
        """Close the Lambda client."""
        await self._aws.aclose()

    # -- reads ------------------------------------------------------------------------------

    async def _alias(self) -> Alias:
        settings = self._settings
        answer = await self._aws.read(
            f"reading alias `{settings.alias}` of `{self._name}`",
            lambda c: c.get_alias(FunctionName=settings.function, Name=settings.alias),
        )
        return Alias.of(answer)

    async def _published(self) -> list[FunctionVersion]:
        """Return every published version (not $LATEST), newest first."""
        function = self._settings.function

        def list_all(client: Any) -> list[Json]:
            pages = client.get_paginator("list_versions_by_function").paginate(
                FunctionName=function
            )
            return [v for page in pages for v in page.get("Versions") or []]

        answer = await self._aws.read(f"listing the versions of `{self._name}`", list_all)
        published = [FunctionVersion.of(v) for v in answer if str(v.get("Version")).isdigit()]
        return sorted(published, key=lambda v: v.number, reverse=True)

    async def _catalog(self) -> Catalog:
        """Read the alias and every published version."""
        alias, published = await asyncio.gather(self._alias(), self._published())
        return Catalog(self._name, alias, published)

    async def _config(self, qualifier: str) -> Json:
        function = self._settings.function
        answer: Json = await self._aws.read(
            f"reading version {qualifier} of `{self._name}`",
            lambda c: c.get_function_configuration(FunctionName=function, Qualifier=qualifier),
        )
        return answer

    async def _configs(self, catalog: Catalog) -> dict[str, Json]:
        """Read the configuration of each version the alias sends traffic to."""
        numbers = [v for v, _ in catalog.alias.shares()]
        answers = await asyncio.gather(*(self._config(n) for n in numbers))
        return dict(zip(numbers, answers, strict=True))

    def _resolve(self, catalog: Catalog, target: str) -> FunctionVersion:
        version = catalog.resolve(target)
        alias = catalog.alias
        if str(version.number) == alias.version and not alias.split:
            raise Refused(
                f"Alias `{alias.name}` already sends all traffic to version {alias.version}."
            )
        return version

    # -- rollback ---------------------------------------------------------------------------

    async def _update_alias(self, catalog: Catalog, version: FunctionVersion) -> None:
        """Send UpdateAlias once, guarded by the RevisionId read; never resend it."""
        settings, alias = self._settings, catalog.alias
        what = f"updating alias `{alias.name}` of `{self._name}` to version {version.number}"
        try:
            await self._aws.call(
                what,
                lambda c: c.update_alias(
                    FunctionName=settings.function,
                    Name=alias.name,
                    FunctionVersion=str(version.number),
                    RoutingConfig={"AdditionalVersionWeights": {}},
                    RevisionId=alias.revision_id,
                ),
            )
        except Conflicting as exc:
            if "PreconditionFailed" not in exc.message:
                exc.target_state = exc.target_state or await self._state_or_unknown()
                raise
            now = await self._state_or_unknown()
            raise Conflicting(
                f"Alias `{alias.name}` of `{self._name}` changed since rollbot read it "
                f"({self._state(alias)}); Lambda refused the update (PreconditionFailed) and "
                "nothing was overwritten. Look at the new state, then request the rollback "
                "again if it is still needed.",
                target_state=now,
            ) from exc
        except (TimedOut, Transient) as exc:
            # The request may have been applied: read the alias before saying anything.
            try:
                read_back = await self._alias()
            except ProviderError as again:
                raise type(exc)(
                    f"{exc.message} It may or may not have been applied.",
                    target_state=f"unknown ({again.message})",
                ) from exc
            if not _serves_only(read_back, version):
                raise type(exc)(
                    f"{exc.message} It was not applied.", target_state=self._state(read_back)
                ) from exc
            log.info("lambda.update_applied_without_answer", version=version.number)
        except ProviderError as exc:
            exc.target_state = exc.target_state or await self._state_or_unknown()
            raise

    async def _verify(self, catalog: Catalog, version: FunctionVersion) -> Alias:
        """Read the alias and the version back; raise RollbackFailed unless both are right."""
        try:
            alias = await self._alias()
            config = await self._config(str(version.number))
        except ProviderError as exc:
            raise RollbackFailed(
                f"Lambda accepted the update to version {version.number}, but rollbot could not "
                f"read it back: {exc.message}",
                target_state=await self._state_or_unknown(),
            ) from exc
        if not _serves_only(alias, version):
            raise RollbackFailed(
                f"Lambda accepted the update, but alias `{alias.name}` does not send 100 % to "
                f"version {version.number}.",
                target_state=self._state(alias),
            )
        check = state_check(self._name, config)
        if check.verdict is not Verdict.PASS:
            raise RollbackFailed(check.why, target_state=self._state(alias))
        return alias

    def _state(self, alias: Alias) -> str:
        return f"alias `{alias.name}` of `{self._name}` → {alias.traffic()}"

    async def _state_or_unknown(self) -> str:
        return await state_or_unknown(self.describe_state)


def _serves_only(alias: Alias, version: FunctionVersion) -> bool:
    return alias.version == str(version.number) and not alias.split


def _detail(version: FunctionVersion) -> str:
    said = f'"{one_line(version.description, 80)}", ' if version.description else ""
    modified = (
        f", last modified {version.last_modified:%Y-%m-%d %H:%M} UTC"
        if version.last_modified
        else ""
    )
    return f"{said}sha256 {version.code_sha256}{modified}"
