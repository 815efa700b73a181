"""Kubernetes provider: roll a Deployment, StatefulSet or DaemonSet back to an earlier revision.

What `kubectl rollout undo --to-revision=N` does: the workload's pod template is set to
revision N's (a Deployment's from its ReplicaSet, minus the `pod-template-hash` label,
with the ReplicaSet's annotations; a StatefulSet's or DaemonSet's from its
ControllerRevision's patch), guarded by the resourceVersion read just before, so a
change made meanwhile is refused and not overwritten. The controller then rolls the pods
and a new revision appears. The rollout is followed by the workload's own status
(providers/kube_rollout.py); pods that cannot run are named with their reason.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from providers.argocd import Application, ArgoCd, ArgoCdSettings, describe, find_or_problem
from providers.base import (
    Conflicting,
    NotFound,
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
from providers.capabilities import FreezeRecord, Identity, PreflightReport
from providers.ecs_freeze import WatchOnlyFreeze
from providers.kube_api import JSON_PATCH, Json, KubeApi
from providers.kube_preflight import ImageCheck, changes, identity, rollout_checks
from providers.kube_revisions import (
    History,
    Revision,
)
from providers.kube_rollout import Rollout, not_rolling, rollout_of
from providers.kube_workload import Workloads, noun

log = structlog.get_logger(__name__)
ARGO_APP, ARGO_NAMESPACE = "argocd_application", "argocd_namespace"
# DNS-1123 names and a label selector's characters: nothing else reaches the API. Anchored:
# a pydantic pattern matches anywhere in the value otherwise.
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
SELECTOR = re.compile(r"^[A-Za-z0-9_./=!,() -]{1,500}$")
CONTAINER = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class KubernetesSettings(BaseModel):
    """Settings of a `kubernetes` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["kubernetes"]
    namespace: str = Field(pattern=NAME.pattern, description="Namespace of the workload.")
    kind: Literal["Deployment", "StatefulSet", "DaemonSet"] = "Deployment"
    name: str | None = Field(default=None, pattern=NAME.pattern, description="Workload name.")
    selector: str | None = Field(
        default=None,
        pattern=SELECTOR.pattern,
        description="Label selector that matches exactly one workload (instead of `name`).",
    )
    container: str | None = Field(
        default=None,
        pattern=CONTAINER.pattern,
        description="Container whose image tag names the version (default: the first).",
    )
    kubeconfig: Path | None = Field(
        default=None,
        description="kubeconfig file; without it the pod's service account (in-cluster), "
        "else ~/.kube/config.",
    )
    context: str | None = Field(default=None, description="kubeconfig context to use.")
    rollout_timeout_seconds: float = Field(
        default=600, gt=0, description="How long the rollout may take."
    )
    poll_interval_seconds: float = Field(
        default=2, gt=0, description="How often to read its status."
    )
    stuck_pod_seconds: float = Field(
        default=60,
        ge=0,
        description="Give up once a pod of the target stays in ImagePullBackOff, "
        "CrashLoopBackOff or the like this long.",
    )
    api_timeout_seconds: float = Field(default=15, gt=0, description="Timeout of one API call.")
    argocd: ArgoCdSettings | None = Field(
        default=None,
        description="The Argo CD Application managing the workload, when its tracking "
        "does not name it or it lives outside the `argocd` namespace.",
    )

    @model_validator(mode="after")
    def _one_way_to_find_it(self) -> KubernetesSettings:
        if (self.name is None) == (self.selector is None):
            raise ValueError("set exactly one of `name` and `selector`")
        return self


class KubernetesProvider(WatchOnlyFreeze):
    """Roll a workload back to an earlier revision, like `kubectl rollout undo`."""

    watch_only_because = (
        "Kubernetes has no setting that keeps a pod template out of a workload: any apply "
        "with {bad} goes through"
    )
    platform = "Kubernetes"

    def __init__(self, settings: KubernetesSettings) -> None:
        self._settings = settings
        self._api = KubeApi(settings.kubeconfig, settings.context, settings.api_timeout_seconds)
        self._images = ImageCheck(self._api, settings.namespace, settings.api_timeout_seconds)
        self._argo = ArgoCd(self._api, settings.argocd)
        self._reads = Workloads(self._api, settings)

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the version name of the revision the workload's template is at."""
        _, history = await self._reads.read()
        return history.name(history.current)

    async def list_versions(self) -> list[Version]:
        """Return the workload's revisions, newest first, current and previous marked."""
        _, history = await self._reads.read()
        return history.versions()

    async def plan(self, target: str) -> Plan:
        """Describe the patch of the pod template and the wait, changing nothing."""
        workload, history = await self._reads.read()
        revision = self._resolve(history, target)
        self._refuse_stuck(workload)
        settings, kind, name = self._settings, self._settings.kind, workload["metadata"]["name"]
        app = await self._argo_or_refuse(workload)
        steps = (
            []
            if app is None or app.automated is None
            else [
                f"Pause the automated sync of {app.label} ({describe(app.automated)}), so it does "
                "not apply the bad version again; "
                + (
                    "it stays paused until unfreeze."
                    if self._argo.keep_paused
                    else "resume it after."
                )
            ]
        )
        steps += [
            f"Set the pod template of {kind} {name} in namespace {settings.namespace} to revision "
            f"{revision.number}'s ({revision.source}: {revision.image(settings.container)}), as "
            f"`kubectl rollout undo --to-revision={revision.number}` does; it is at revision "
            f"{history.current.number} ({history.current.image(settings.container)}) now.",
            f"The {kind} controller rolls the pods; a new revision records it.",
            f"Follow the rollout every {settings.poll_interval_seconds:g} s for up to "
            f"{settings.rollout_timeout_seconds:g} s until every replica is updated and "
            "available; stop on ProgressDeadlineExceeded or a pod stuck "
            f"{settings.stuck_pod_seconds:g} s in ImagePullBackOff, CrashLoopBackOff or the like.",
        ]
        warnings = await self._reads.autoscalers(workload) or []
        rollout = rollout_of(kind, workload)
        if not rollout.done:
            warnings.append(f"A rollout is in progress ({rollout.text}): the rollback replaces it.")
        return Plan(steps=steps, warnings=warnings)

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Patch the template back to the target revision and follow the rollout."""
        started = time.monotonic()
        workload, history = await self._reads.read()
        revision = self._resolve(history, target)
        self._refuse_stuck(workload)
        app = await self._argo_or_refuse(workload)
        paused = await self._argo.pause(app) if app is not None else None
        if paused:
            await say(progress, f"{paused}.")
        try:
            await self._patch(workload, revision)
        except ProviderError as exc:
            if paused and app is not None:
                # Nothing changed on the workload: Argo CD may go on as before.
                resumed = await state_or_unknown(lambda: self._argo.resume(app.name, app.namespace))
                exc.message = f"{exc.message} {resumed}."
            raise
        image = revision.image(self._settings.container)
        await say(
            progress,
            f"{self._reads.what(workload)} set to revision {revision.number} ({image}); "
            "following the rollout…",
        )
        try:
            rollout = await self._follow(workload, revision, progress)
        except ProviderError as exc:
            if paused and app is not None:
                # The workload changed: Argo CD resumed now would apply git over it at once.
                exc.message += (
                    f" {app.label} stays paused; resume its automated sync in Argo CD once "
                    "the workload is where it should be."
                )
            raise
        log.info(
            "kubernetes.rollback",
            revision=revision.number,
            seconds=round(time.monotonic() - started, 2),
        )
        notes = []
        if paused and app is not None and not self._argo.keep_paused:
            notes.append(await self._argo.resume(app.name, app.namespace))
        return Outcome(
            summary=f"{self._reads.what(workload)} runs {image} (revision {revision.number}'s "
            f"template): {rollout.text}.",
            notes=notes,
        )

    async def describe_state(self) -> str:
        """Say which revision the workload is at and how its rollout stands."""
        workload, history = await self._reads.read()
        rollout = rollout_of(self._settings.kind, workload)
        state = (
            "done"
            if rollout.done
            else f"failed: {rollout.failed}"
            if rollout.failed
            else "in progress"
        )
        return (
            f"{self._reads.what(workload)} is at revision {history.current.number} "
            f"({history.current.image(self._settings.container)}); rollout {state} ({rollout.text})"
        )

    async def aclose(self) -> None:
        """Close the API client."""
        await self._api.aclose()

    # -- Preflight and Describe -------------------------------------------------------------

    async def preflight(self, target: str) -> PreflightReport:
        """Check that the target revision can roll and run, and say what changes."""
        workload, history = await self._reads.read()
        revision = self._resolve(history, target)
        kind, name = self._settings.kind, workload["metadata"]["name"]
        image_check, digests = await self._images.check(revision.template)
        digest = digests.get(revision.image(self._settings.container) or "", "")
        app, problem = await find_or_problem(self._argo, workload)
        return PreflightReport(
            current=identity(kind, name, history, history.current),
            target=identity(kind, name, history, revision, digest),
            checks=[
                *rollout_checks(kind, workload, await self._reads.autoscalers(workload)),
                image_check,
                self._argo.check(app, problem),
            ],
            changes=changes(history.current, revision),
        )

    async def identity_now(self) -> Identity:
        """Return the revision the workload's template is at now."""
        workload, history = await self._reads.read()
        return identity(self._settings.kind, workload["metadata"]["name"], history, history.current)

    # -- Freeze -----------------------------------------------------------------------------

    async def freeze(self, bad: str, good: str) -> FreezeRecord:
        """Keep Argo CD's automated sync paused where the rollback paused it; else watch."""
        workload = await self._reads.workload()
        app = await self._argo.find(workload)
        if app is None or app.paused is None:
            return await super().freeze(bad, good)
        return FreezeRecord(
            action=f"{app.label}: automated sync kept paused (was {describe(app.paused)}), so "
            f"it does not apply {bad} again; unfreezing resumes it",
            saved={ARGO_APP: app.name, ARGO_NAMESPACE: app.namespace},
        )

    async def unfreeze(self, record: FreezeRecord) -> str:
        """Resume the Argo CD automated sync the freeze kept paused, exactly as it was."""
        if ARGO_APP not in record.saved:
            return await super().unfreeze(record)
        return await self._argo.resume(record.saved[ARGO_APP], record.saved[ARGO_NAMESPACE])

    async def _argo_or_refuse(self, workload: Json) -> Application | None:
        app, problem = await find_or_problem(self._argo, workload)
        if problem:
            raise Refused(problem, target_state=f"{self._reads.what(workload)} unchanged")
        return app

    # -- reads ------------------------------------------------------------------------------

    def _resolve(self, history: History, target: str) -> Revision:
        revision = history.find(target)
        if revision is None:
            raise NotFound(
                f"No revision `{target}` of {self._settings.kind} {self._reads.label()}; "
                f"available: {history.available()}."
            )
        if revision is history.current:
            raise Refused(
                f"{self._settings.kind} {self._reads.label()} is already at revision "
                f"{revision.number} ({history.name(revision)})."
            )
        return revision

    def _refuse_stuck(self, workload: Json) -> None:
        why = not_rolling(self._settings.kind, workload)
        if why:
            raise Refused(why, target_state=f"{self._reads.what(workload)} unchanged")

    # -- rollback ---------------------------------------------------------------------------

    async def _patch(self, workload: Json, revision: Revision) -> None:
        """Set the template to the revision's, once, guarded by the resourceVersion read."""
        apps, settings = await self._api.apps(), self._settings
        meta = workload["metadata"]
        what = f"setting {self._reads.what(workload)} to revision {revision.number}"
        patch = getattr(apps, f"patch_namespaced_{noun(settings.kind)}")
        # The generation changes with the spec only (a deploy, a scale), not with the
        # controller's status writes: a change made meanwhile fails the test, nothing else.
        body: list[Json] = [
            {"op": "test", "path": "/metadata/generation", "value": meta["generation"]},
            {"op": "replace", "path": "/spec/template", "value": revision.template},
        ]
        if settings.kind == "Deployment":
            # The ReplicaSet's annotations (its change-cause) go back with its template, as
            # with kubectl; unlike kubectl, the workload's others (Argo CD's tracking) stay.
            annotations = {**(meta.get("annotations") or {}), **revision.annotations}
            body.append({"op": "replace", "path": "/metadata/annotations", "value": annotations})
        try:
            await self._api.call(
                what, patch, meta["name"], settings.namespace, body, _content_type=JSON_PATCH
            )
        except (TimedOut, Transient) as exc:
            # The request may have landed: read what the workload holds before saying.
            if await self._holds(revision):
                log.info("kubernetes.patch_applied_without_answer", revision=revision.number)
                return
            raise type(exc)(
                f"{exc.message} It was not applied.", target_state=await self._state()
            ) from exc
        except ProviderError as exc:
            now = await self._reads.workload()
            if now["metadata"].get("generation") != meta["generation"]:
                raise Conflicting(
                    f"{self._reads.what(workload)} changed since rollbot read it (someone "
                    "deployed or scaled it): nothing was changed. Look at what runs and "
                    "request again.",
                    target_state=await self._state(),
                ) from exc
            exc.target_state = exc.target_state or await self._state()
            raise

    async def _holds(self, revision: Revision) -> bool:
        try:
            _, history = await self._reads.read()
        except ProviderError:
            return False
        return (
            history.current.image(self._settings.container)
            == revision.image(self._settings.container)
            and history.current.template == revision.template
        )

    async def _follow(self, before: Json, revision: Revision, progress: Progress) -> Rollout:
        """Read the rollout until it is done; raise when it fails, sticks or times out."""
        settings = self._settings
        deadline = time.monotonic() + settings.rollout_timeout_seconds
        image = revision.image(settings.container)
        said, stuck_since = "", None
        while True:
            workload = await self._reads.workload()
            rollout = rollout_of(settings.kind, workload)
            if rollout.done:
                return rollout
            stuck = await self._reads.stuck(workload, image)
            stuck_since = (stuck_since or time.monotonic()) if stuck else None
            if rollout.failed or (
                stuck_since is not None
                and time.monotonic() - stuck_since >= settings.stuck_pod_seconds
            ):
                why = rollout.failed or "pods of the target cannot run"
                raise RollbackFailed(
                    f"The rollout of {self._reads.what(workload)} to revision "
                    f"{revision.number} failed: {why}. "
                    f"{'; '.join(stuck) + '.' if stuck else ''} The template stays at "
                    f"revision {revision.number}'s; fix the cause or roll back to another "
                    "revision.",
                    target_state=await self._state(),
                )
            if time.monotonic() >= deadline:
                raise TimedOut(
                    f"The rollout of {self._reads.what(workload)} did not finish within "
                    f"{settings.rollout_timeout_seconds:g} s ({rollout.text}). "
                    + ("; ".join(stuck) + "." if stuck else ""),
                    target_state=await self._state(),
                )
            if rollout.text != said:
                said = rollout.text
                await say(progress, f"Rollout: {rollout.text}.")
            await asyncio.sleep(settings.poll_interval_seconds)

    async def _state(self) -> str:
        return await state_or_unknown(self.describe_state)
