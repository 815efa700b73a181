"""Reading a `kubernetes` target: the workload, its revisions, its pods and its autoscalers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.base import ProviderError, Refused
from providers.kube_api import Json, KubeApi
from providers.kube_preflight import autoscaler_lines
from providers.kube_revisions import (
    History,
    current_of,
    from_controller_revisions,
    from_replica_sets,
)
from providers.kube_rollout import stuck_pods

if TYPE_CHECKING:
    from providers.kubernetes import KubernetesSettings


class Workloads:
    """Reads the configured workload and what belongs to it, through one API client."""

    def __init__(self, api: KubeApi, settings: KubernetesSettings) -> None:
        self._api = api
        self._settings = settings

    async def read(self) -> tuple[Json, History]:
        """Read the workload and its revisions."""
        workload = await self.workload()
        apps, settings = await self._api.apps(), self._settings
        selector = selector_of(workload)
        if settings.kind == "Deployment":
            found = await self._api.read(
                f"listing the ReplicaSets of {self.what(workload)}",
                apps.list_namespaced_replica_set,
                settings.namespace,
                label_selector=selector,
            )
            revisions = from_replica_sets(workload, found.get("items") or [])
        else:
            found = await self._api.read(
                f"listing the ControllerRevisions of {self.what(workload)}",
                apps.list_namespaced_controller_revision,
                settings.namespace,
                label_selector=selector,
            )
            revisions = from_controller_revisions(workload, found.get("items") or [])
        current, revisions = current_of(settings.kind, workload, revisions)
        return workload, History(revisions, current, settings.container)

    async def workload(self) -> Json:
        settings = self._settings
        apps = await self._api.apps()
        kind = noun(settings.kind)
        if settings.name is not None:
            read = getattr(apps, f"read_namespaced_{kind}")
            return await self._api.read(
                f"reading {settings.kind} {settings.name} in namespace {settings.namespace}",
                read,
                settings.name,
                settings.namespace,
            )
        listed = await self._api.read(
            f"listing {settings.kind}s matching `{settings.selector}` in namespace "
            f"{settings.namespace}",
            getattr(apps, f"list_namespaced_{kind}"),
            settings.namespace,
            label_selector=settings.selector,
        )
        items = listed.get("items") or []
        if len(items) != 1:
            names = ", ".join(i["metadata"]["name"] for i in items) or "none"
            raise Refused(
                f"The selector `{settings.selector}` must match exactly one {settings.kind} in "
                f"namespace {settings.namespace}; it matches {len(items)} ({names})."
            )
        return dict(items[0])

    async def autoscalers(self, workload: Json) -> list[str] | None:
        """The HPAs that scale the workload, or None when they cannot be read."""
        autoscaling = await self._api.autoscaling()
        try:
            found = await self._api.read(
                f"listing HorizontalPodAutoscalers in namespace {self._settings.namespace}",
                autoscaling.list_namespaced_horizontal_pod_autoscaler,
                self._settings.namespace,
            )
        except ProviderError:
            return None
        return autoscaler_lines(
            self._settings.kind, workload["metadata"]["name"], found.get("items") or []
        )

    async def stuck(self, workload: Json, image: str | None) -> list[str]:
        core = await self._api.core()
        try:
            pods = await self._api.read(
                f"listing the pods of {self.what(workload)}",
                core.list_namespaced_pod,
                self._settings.namespace,
                label_selector=selector_of(workload),
            )
        except ProviderError:
            return []
        return stuck_pods(pods.get("items") or [], image)

    def label(self) -> str:
        return self._settings.name or f"matching `{self._settings.selector}`"

    def what(self, workload: Json) -> str:
        name = workload["metadata"]["name"]
        return f"{self._settings.kind} {name} in namespace {self._settings.namespace}"


def noun(kind: str) -> str:
    return {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}[
        kind
    ]


def selector_of(workload: Json) -> str:
    """The workload's matchLabels as a label selector string."""
    labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
