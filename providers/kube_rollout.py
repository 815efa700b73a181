"""Whether a workload's rollout is done, by its own status, as `kubectl rollout status` reads it.

A Deployment is done when the controller observed the change, every replica is updated,
no old one is left and the updated ones are available; it has failed when its
Progressing condition says ProgressDeadlineExceeded. A StatefulSet is done when its
ready and updated replicas reach the desired count and its current revision is the
update revision; a DaemonSet when every scheduled pod is updated and available.

Pods that cannot run are named with their reason (ImagePullBackOff, CrashLoopBackOff…):
the provider gives up early when one stays so, instead of waiting out the deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.images import ImageRef

Json = dict[str, Any]
# Waiting reasons that do not go away on their own: the pod will not run this template.
STUCK = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class Rollout:
    """Where a rollout stands: done, failed (with why), or still going (with how far)."""

    done: bool
    text: str
    failed: str | None = None


def rollout_of(kind: str, workload: Json) -> Rollout:
    """Read a workload's rollout from its spec and status."""
    meta, spec, status = (
        workload["metadata"],
        workload.get("spec") or {},
        workload.get("status") or {},
    )
    if int(meta.get("generation") or 0) > int(status.get("observedGeneration") or 0):
        return Rollout(False, "waiting for the controller to see the change")
    if kind == "Deployment":
        return _deployment(spec, status)
    if kind == "StatefulSet":
        return _stateful_set(spec, status)
    return _daemon_set(status)


def _deployment(spec: Json, status: Json) -> Rollout:
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            why = f"its progress deadline of {spec.get('progressDeadlineSeconds', 600)} s passed"
            return Rollout(False, str(condition.get("message") or why), failed=why)
    wanted = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < wanted:
        return Rollout(False, f"{updated} of {wanted} replicas updated")
    if total > updated:
        return Rollout(False, f"{total - updated} old replica(s) still terminating")
    if available < updated:
        return Rollout(False, f"{available} of {updated} updated replicas available")
    return Rollout(True, f"{updated} of {wanted} replicas updated and available")


def _stateful_set(spec: Json, status: Json) -> Rollout:
    wanted = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    if ready < wanted:
        return Rollout(False, f"{ready} of {wanted} pods ready")
    partition = int(
        ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition") or 0
    )
    if partition and updated < wanted - partition:
        return Rollout(False, f"{updated} of {wanted - partition} pods above the partition updated")
    if not partition and status.get("updateRevision") != status.get("currentRevision"):
        return Rollout(False, f"{updated} of {wanted} pods updated")
    return Rollout(True, f"{wanted} of {wanted} pods updated and ready")


def _daemon_set(status: Json) -> Rollout:
    wanted = int(status.get("desiredNumberScheduled") or 0)
    updated = int(status.get("updatedNumberScheduled") or 0)
    available = int(status.get("numberAvailable") or 0)
    if updated < wanted:
        return Rollout(False, f"{updated} of {wanted} scheduled pods updated")
    if available < wanted:
        return Rollout(False, f"{available} of {wanted} updated pods available")
    return Rollout(True, f"{wanted} of {wanted} pods updated and available")


def stuck_pods(pods: list[Json], image: str | None) -> list[str]:
    """Name each pod running `image` whose container cannot run, with its reason."""
    found = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            running = str(container.get("image") or "")
            # The kubelet may report `nginx:1` as `docker.io/library/nginx:1`.
            if image is not None and running and ImageRef.parse(running) != ImageRef.parse(image):
                continue
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK:
                message = str(waiting.get("message") or "").strip()
                detail = f": {message[:200]}" if message else ""
                found.append(f"pod {pod['metadata']['name']} is {waiting['reason']}{detail}")
    return sorted(found)


def not_rolling(kind: str, workload: Json) -> str | None:
    """Why a rollback of this workload would not roll its pods, if it would not."""
    spec = workload.get("spec") or {}
    name = workload["metadata"]["name"]
    if kind == "Deployment" and spec.get("paused"):
        return (
            f"Deployment {name} is paused: Kubernetes does not roll back a paused Deployment. "
            f"Resume it (`kubectl rollout resume deployment/{name}`) and try again."
        )
    strategy = (spec.get("updateStrategy") or {}).get("type")
    if kind in ("StatefulSet", "DaemonSet") and strategy == "OnDelete":
        return (
            f"{kind} {name} uses the OnDelete update strategy: its pods change only when "
            "someone deletes them, so a rollback would change the template and no pod."
        )
    return None
