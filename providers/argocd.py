"""Argo CD: an Application's automated sync undoes a manual rollback seconds later; pause it.

Argo CD tracks the resources it manages with the annotation
`argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<namespace>/<name>` (annotation
tracking, the default since v2.x's `application.resourceTrackingMethod`) or the label
`app.kubernetes.io/instance: <app>` (label tracking); a configured application name wins.
With `spec.syncPolicy.automated` set (and `selfHeal` on) it applies what git says again as
soon as the live state differs: the rolled-back template would be replaced by the bad one.

So before the rollback patches anything, the Application's `spec.syncPolicy.automated`
block is removed with a JSON merge patch (the way `argocd app set --sync-policy none`
leaves it, understood by every Argo CD version, unlike v3's `automated.enabled: false`),
guarded by the resourceVersion read, and what it held is written into the annotation
`rollbot.dev/paused-automated` of the Application, so any replica can put it back. The
pause stays after a successful rollback as its freeze; unfreezing restores the block
exactly and removes the annotation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from providers.base import NotFound, ProviderError
from providers.capabilities import PreflightCheck, Verdict
from providers.kube_api import MERGE_PATCH, Json, KubeApi

TRACKING = "argocd.argoproj.io/tracking-id"
INSTANCE = "app.kubernetes.io/instance"
PAUSED = "rollbot.dev/paused-automated"
NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"


class ArgoCdSettings(BaseModel):
    """Where the Argo CD Application managing the workload is, and what to do with it."""

    model_config = ConfigDict(extra="forbid")

    application: str | None = Field(
        default=None,
        pattern=NAME,
        description="Application name (default: read from the workload's tracking).",
    )
    namespace: str = Field(
        default="argocd", pattern=NAME, description="Namespace of the Applications."
    )
    keep_paused: bool = Field(
        default=True,
        description="Keep automated sync paused after a successful rollback (the freeze); "
        "false resumes it at once, which re-applies git unless git was fixed first.",
    )


@dataclass(frozen=True)
class Application:
    """An Application that manages the workload, as read."""

    name: str
    namespace: str
    automated: Json | None  # spec.syncPolicy.automated now (None: no automated sync)
    paused: Json | None  # what rollbot saved when it paused it, if it did
    resource_version: str

    @property
    def label(self) -> str:
        return f"Argo CD Application {self.namespace}/{self.name}"


def application_of(workload: Json, settings: ArgoCdSettings | None) -> str | None:
    """The name of the Application managing the workload, if one does."""
    if settings is not None and settings.application:
        return settings.application
    meta = workload.get("metadata") or {}
    tracking = str((meta.get("annotations") or {}).get(TRACKING) or "")
    if tracking:
        return tracking.split(":", 1)[0] or None
    return (meta.get("labels") or {}).get(INSTANCE) or None


def describe(automated: Json | None) -> str:
    """Say which automated sync options are on, e.g. "prune, selfHeal"."""
    if automated is None:
        return "off"
    on = [key for key in ("prune", "selfHeal", "allowEmpty") if automated.get(key)]
    return ", ".join(on) or "on"


class ArgoCd:
    """Reads, pauses and resumes the automated sync of the Application of a workload."""

    def __init__(self, api: KubeApi, settings: ArgoCdSettings | None) -> None:
        self._api = api
        self._settings = settings

    @property
    def keep_paused(self) -> bool:
        return self._settings is None or self._settings.keep_paused

    async def find(self, workload: Json) -> Application | None:
        """The Application managing the workload; None when none does."""
        name = application_of(workload, self._settings)
        if name is None:
            return None
        return await self.read(name, self._namespace())

    async def read(self, name: str, namespace: str) -> Application:
        custom = await self._api.custom()
        found = await self._api.read(
            f"reading Argo CD Application {namespace}/{name}",
            custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
        )
        meta = found.get("metadata") or {}
        saved = (meta.get("annotations") or {}).get(PAUSED)
        automated = ((found.get("spec") or {}).get("syncPolicy") or {}).get("automated")
        return Application(
            name=name,
            namespace=namespace,
            automated=automated if isinstance(automated, dict) else None,
            paused=json.loads(saved) if saved else None,
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    def check(self, app: Application | None, problem: str = "") -> PreflightCheck:
        """The `argocd-sync` check: pass, or warn that rollbot pauses the automated sync."""
        name = "argocd-sync"
        if problem:
            return PreflightCheck(name, Verdict.FAIL, problem)
        if app is None:
            return PreflightCheck(name, Verdict.PASS, "No Argo CD Application manages it.")
        if app.paused is not None:
            was = describe(app.paused)
            why = f"{app.label}: automated sync already paused by rollbot (was {was})."
            return PreflightCheck(name, Verdict.PASS, why)
        if app.automated is None:
            why = f"{app.label} manages it without automated sync: nothing will undo the rollback."
            return PreflightCheck(name, Verdict.PASS, why)
        after = "and keeps it paused until unfreeze" if self.keep_paused else "and resumes it after"
        why = (
            f"{app.label} syncs it automatically ({describe(app.automated)}): rollbot pauses "
            f"that before the rollback {after}."
        )
        return PreflightCheck(name, Verdict.WARN, why)

    async def pause(self, app: Application) -> str | None:
        """Remove the automated sync, saving it on the Application; say what was done."""
        if app.automated is None:
            return None
        annotation = json.dumps(app.automated, sort_keys=True)
        body = {
            "metadata": {
                "resourceVersion": app.resource_version,
                "annotations": {PAUSED: annotation},
            },
            "spec": {"syncPolicy": {"automated": None}},
        }
        await self._patch(app, body, "pausing the automated sync of")
        was = describe(app.automated)
        return f"{app.label}: automated sync paused (was {was}) so it does not undo the rollback"

    async def resume(self, name: str, namespace: str) -> str:
        """Put the saved automated sync back and drop the annotation; fail closed on a change."""
        app = await self.read(name, namespace)
        if app.paused is None:
            return f"{app.label}: nothing to resume (rollbot did not pause it, or it was resumed)"
        if app.automated is not None:
            # Someone turned it back on: that choice stands; only the note goes.
            await self._patch(app, {"metadata": {"annotations": {PAUSED: None}}}, "updating")
            return f"{app.label}: automated sync was turned back on by someone since; left as it is"
        body = {
            "metadata": {"resourceVersion": app.resource_version, "annotations": {PAUSED: None}},
            "spec": {"syncPolicy": {"automated": app.paused}},
        }
        await self._patch(app, body, "resuming the automated sync of")
        return f"{app.label}: automated sync resumed ({describe(app.paused)}), as before the freeze"

    async def _patch(self, app: Application, body: Json, doing: str) -> None:
        custom = await self._api.custom()
        await self._api.call(
            f"{doing} {app.label}",
            custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            app.namespace,
            PLURAL,
            app.name,
            body,
            _content_type=MERGE_PATCH,
        )

    def _namespace(self) -> str:
        return self._settings.namespace if self._settings is not None else "argocd"


async def find_or_problem(argo: ArgoCd, workload: Json) -> tuple[Application | None, str]:
    """The managing Application, or why it could not be read (fail closed: it may auto-sync)."""
    try:
        return await argo.find(workload), ""
    except NotFound as exc:
        return (
            None,
            f"The workload names an Argo CD Application that cannot be found ({exc.message}).",
        )
    except ProviderError as exc:
        return None, (
            f"Could not read the Argo CD Application that manages it ({exc.message}): its "
            "automated sync might undo the rollback."
        )
