"""Helm provider: roll a release back to an earlier revision, as `helm rollback RELEASE N` does.

Everything goes through the helm CLI (providers/helm_cli.py), run with an argument list:
`helm history` for the revisions, `helm get values --all` for what changes, and
`helm rollback RELEASE N --wait --timeout=Ts` for the rollback itself, which helm
records as a new revision ("Rollback to N"). Helm waits for the release's resources to
be ready; afterwards the history is read again to confirm the new revision is deployed.
A rollback is never run twice: a failed or stopped one is reported with helm's own
message and the release's state as read after it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    AuthRejected,
    Conflicting,
    NotFound,
    Outcome,
    Plan,
    Progress,
    ProviderError,
    Refused,
    RollbackFailed,
    TimedOut,
    Version,
    say,
    sentence,
    state_or_unknown,
)
from providers.capabilities import Identity, PreflightReport
from providers.ecs_freeze import WatchOnlyFreeze
from providers.helm_cli import HelmCli, HelmStopped, HelmTarget, shown
from providers.helm_history import History, Revision, parse
from providers.helm_preflight import busy, changes, checks, identity, missing_binary, undeployable

log = structlog.get_logger(__name__)
# Helm's release names (DNS-1123 subdomain, at most 53 characters) and namespace names.
RELEASE = r"^[a-z0-9]([-a-z0-9.]{0,51}[a-z0-9])?$"
NAMESPACE = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class HelmSettings(BaseModel):
    """Settings of a `helm` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["helm"]
    release: str = Field(pattern=RELEASE, description="Name of the Helm release.")
    namespace: str = Field(pattern=NAMESPACE, description="Namespace the release lives in.")
    kubeconfig: Path | None = Field(
        default=None,
        description="kubeconfig file helm uses; without it helm's own default ($KUBECONFIG, "
        "~/.kube/config, or the pod's service account in a cluster).",
    )
    context: str | None = Field(
        default=None, pattern=r"^[^\x00-\x1f]{1,253}$", description="kubeconfig context to use."
    )
    helm_binary: str = Field(
        default="helm",
        pattern=r"^[^\x00-\x1f]{1,4096}$",
        description="The helm program: a name looked up on PATH, or a path.",
    )
    timeout_seconds: float = Field(
        default=300, gt=0, description="`--timeout` of the rollback's wait for ready resources."
    )
    grace_seconds: float = Field(
        default=30,
        ge=0,
        description="How long past timeout_seconds helm may run before it is stopped.",
    )
    max_revisions: int = Field(
        default=20, ge=2, le=1000, description="How many revisions (`helm history --max`) to offer."
    )
    read_timeout_seconds: float = Field(
        default=60, gt=0, description="Deadline of one read (`helm history`, `helm get values`)."
    )

    def required_programs(self) -> dict[str, str]:
        """The program rollbot runs for this target, by its settings key."""
        return {"helm_binary": self.helm_binary}


class HelmProvider(WatchOnlyFreeze):
    """Roll a Helm release back to an earlier revision with `helm rollback`."""

    platform = "Helm"
    watch_only_because = (
        "Helm has no setting that keeps a revision out of a release: any `helm upgrade` that "
        "renders {bad} again, or a `helm rollback` to its revision, goes through"
    )

    def __init__(self, settings: HelmSettings) -> None:
        self._settings = settings
        self._target = HelmTarget(
            settings.helm_binary, settings.namespace, settings.kubeconfig, settings.context
        )
        self._cli = HelmCli(self._target, settings.read_timeout_seconds)

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the version name of the release's newest revision."""
        history = await self._history()
        return history.name(history.current)

    async def list_versions(self) -> list[Version]:
        """Return the release's revisions, newest first, current and previous stable marked."""
        return (await self._history()).versions()

    async def plan(self, target: str) -> Plan:
        """Describe the `helm rollback` command and the wait, changing nothing."""
        history = await self._history()
        revision = self._resolve(history, target)
        self._refuse_undeployable(revision)
        settings, current = self._settings, history.current
        command = shown(self._target, self._rollback_args(revision))
        steps = [
            f"Run `{command}`: helm applies the manifests of revision {revision.number} "
            f"({revision.what()}) to release {settings.release}, now at {history.line(current)}; "
            f'a new revision records it as "Rollback to {revision.number}".',
            f"Helm waits up to {settings.timeout_seconds:g} s for the release's resources to be "
            f"ready; rollbot stops helm after {self._deadline():g} s and never runs it twice.",
            f'Read `helm history` again: the newest revision must be deployed, "Rollback to '
            f'{revision.number}".',
        ]
        warnings = []
        why_busy = busy(settings.release, history)
        if why_busy:
            warnings.append(why_busy)
        elif current.status == "failed":
            warnings.append(
                f"The newest revision, {current.number}, failed ({current.first_line()}): the "
                "rollback replaces what it applied."
            )
        if current.chart != revision.chart:
            warnings.append(
                f"The chart goes back from {current.chart} to {revision.chart}: resources only "
                "the newer chart has are deleted."
            )
        return Plan(steps=steps, warnings=warnings)

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Run `helm rollback` once, then confirm in the history that it deployed."""
        started = time.monotonic()
        history = await self._history()
        revision = self._resolve(history, target)
        self._refuse_undeployable(revision)
        why_busy = busy(self._settings.release, history)
        if why_busy:
            raise Conflicting(why_busy, target_state=self._state_of(history))
        args = self._rollback_args(revision)
        await say(
            progress,
            f"Running `{shown(self._target, args)}`; helm waits up to "
            f"{self._settings.timeout_seconds:g} s for the resources to be ready…",
        )
        await self._run(args, revision)
        after = await self._history()
        newest, wanted = after.current, f"Rollback to {revision.number}"
        if newest.status != "deployed" or newest.description != wanted:
            raise RollbackFailed(
                f"helm rollback exited without an error, but the newest revision is "
                f"{after.line(newest)}, described as {newest.first_line()!r}, not deployed "
                f"with {wanted!r}. It is not run again: look at `helm history "
                f"{self._settings.release}` before trying again.",
                target_state=self._state_of(after),
            )
        log.info(
            "helm.rollback",
            revision=revision.number,
            new_revision=newest.number,
            seconds=round(time.monotonic() - started, 2),
        )
        return Outcome(
            summary=f"{self._what(True)} is at revision {newest.number}, deployed: {wanted!r} "
            f"({newest.what()}); helm waited for its resources to be ready."
        )

    async def describe_state(self) -> str:
        """Say which revision the release is at, with its status."""
        return self._state_of(await self._history())

    async def aclose(self) -> None:
        """Nothing to close: every helm command is its own process."""

    # -- Preflight and Describe -------------------------------------------------------------

    async def preflight(self, target: str) -> PreflightReport:
        """Check that helm is there, the release is idle and the revision deployable."""
        try:
            binary = self._cli.binary()
        except Refused as exc:
            exact = f"{self._settings.release}: not read ({exc.message})"
            return PreflightReport(
                current=None,
                target=Identity(version=target, exact=exact),
                checks=[missing_binary(exc.message)],
            )
        history = await self._history()
        revision = self._resolve(history, target)
        name = self._settings.release
        now, then = await self._values(history.current), await self._values(revision)
        return PreflightReport(
            current=identity(name, history.current, history.name(history.current)),
            target=identity(name, revision, history.name(revision)),
            checks=checks(name, history, revision, f"{binary} ({await self._cli.version()})"),
            changes=changes(history.current, revision, now, then),
        )

    async def identity_now(self) -> Identity:
        """Return the release's newest revision, exactly."""
        history = await self._history()
        current = history.current
        return identity(self._settings.release, current, history.name(current))

    # -- helm -------------------------------------------------------------------------------

    async def _history(self) -> History:
        settings = self._settings
        rows = await self._cli.read_json(
            f"reading the history of release {settings.release} in namespace {settings.namespace}",
            ["history", settings.release, "--max", str(settings.max_revisions)],
        )
        revisions = parse(rows)
        if not revisions:
            raise NotFound(f"{self._what(True)} has no revisions (helm history lists none).")
        return History(revisions)

    async def _values(self, revision: Revision) -> Any:
        release = self._settings.release
        return await self._cli.read_json(
            f"reading the values of release {release} revision {revision.number}",
            ["get", "values", release, "--revision", str(revision.number), "--all"],
        )

    def _rollback_args(self, revision: Revision) -> list[str]:
        return [
            "rollback",
            self._settings.release,
            str(revision.number),
            # Alone, it works on helm 3 (a flag) and helm 4 (its `watcher` strategy).
            "--wait",
            f"--timeout={self._settings.timeout_seconds:g}s",
        ]

    async def _run(self, args: list[str], revision: Revision) -> None:
        """Run the rollback once; a failure is said with helm's message and the state after."""
        what = f"helm rollback {self._settings.release} {revision.number}"
        try:
            await self._cli.run_once(what, args, self._deadline())
        except HelmStopped as exc:
            raise TimedOut(
                f"{sentence(exc.message)} It is not run again: look at the release before "
                "trying again.",
                target_state=await self._state(),
            ) from exc
        except (AuthRejected, NotFound, Conflicting) as exc:
            # Refused before it changed anything.
            exc.target_state = await self._state()
            raise
        except ProviderError as exc:
            raise RollbackFailed(
                f"{sentence(exc.message)} It is not run again: fix the cause, or roll back to "
                "another revision.",
                target_state=await self._state(),
            ) from exc

    def _resolve(self, history: History, target: str) -> Revision:
        revision = history.find(target)
        if revision is None:
            raise NotFound(
                f"No revision `{target}` of {self._what()} among the newest "
                f"{self._settings.max_revisions}; available: {history.available()}."
            )
        if revision is history.current:
            raise Refused(f"{self._what(True)} is already at {history.line(revision)}.")
        return revision

    def _refuse_undeployable(self, revision: Revision) -> None:
        why = undeployable(revision)
        if why:
            raise Refused(why, target_state=f"{self._what(True)} unchanged")

    def _state_of(self, history: History) -> str:
        current = history.current
        said = f": {current.first_line()}" if current.first_line() else ""
        return (
            f"{self._what(True)} is at revision {current.number} ({current.status}{said}; "
            f"{current.what()})"
        )

    async def _state(self) -> str:
        return await state_or_unknown(self.describe_state)

    def _deadline(self) -> float:
        return self._settings.timeout_seconds + self._settings.grace_seconds

    def _what(self, start: bool = False) -> str:
        word = "Release" if start else "release"
        return f"{word} {self._settings.release} in namespace {self._settings.namespace}"
