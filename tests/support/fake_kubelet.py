"""A stand-in kubelet for the test control plane: one fake Node that runs every pod it is given.

Run by scripts/start-kube.sh as `python tests/support/fake_kubelet.py --kubeconfig FILE`.
The Deployment, ReplicaSet and StatefulSet controllers stay the real ones; this only does
the kubelet's (and, with no kube-scheduler, the scheduler's) share, so that their pods
become Ready. Images decide how a pod fares, so a test can make a rollout fail for real:

- an image containing `unpullable` stays Pending, its container waiting with reason
  `ImagePullBackOff`;
- an image containing `crashloop` is Running but never ready, its container waiting with
  reason `CrashLoopBackOff` and a restart count that grows;
- any other image is Running and Ready at once; a pod that runs to completion (restart
  policy Never or OnFailure: a Job's) Succeeds at once, or with a `crashloop` image and
  policy Never, Fails with exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

NODE = "rollbot-fake-node"
POLL_SECONDS = 0.3
HEARTBEAT_SECONDS = 10.0
# Seconds between two restarts of a crash-looping container, as its restart count shows.
CRASH_PERIOD_SECONDS = 10

log = logging.getLogger("fake-kubelet")


def now() -> str:
    """The current time in the API's timestamp format."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_ip(uid: str) -> str:
    """A stable address for a pod, so the endpoints controllers have one to publish."""
    digest = hashlib.sha256(uid.encode()).digest()
    return f"10.244.{digest[0]}.{max(digest[1], 2)}"


@dataclass(frozen=True)
class Rules:
    """The image substrings that make a pod fail."""

    unpullable: str
    crashloop: str


def container_status(
    container: Any, started: str, age: float, rules: Rules, restart: str
) -> dict[str, Any]:
    """What a kubelet would report for one container of the given image and restart policy."""
    image = container.image or ""
    base = {"name": container.name, "image": image, "imageID": "", "started": False}
    if rules.unpullable in image:
        message = f'Back-off pulling image "{image}": ErrImagePull: not found'
        return base | {
            "ready": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": message}},
        }
    crashes = rules.crashloop in image
    if restart == "Never" or (restart == "OnFailure" and not crashes):
        # A run-to-completion container (a Job's, a helm hook's) ends at once.
        code, reason = (1, "Error") if crashes else (0, "Completed")
        return base | {
            "ready": False,
            "restartCount": 0,
            "imageID": f"fake://{image}",
            "containerID": f"fake://{container.name}",
            "state": {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": started,
                    "finishedAt": started,
                }
            },
        }
    if crashes:
        restarts = 1 + int(age) // CRASH_PERIOD_SECONDS
        return base | {
            "ready": False,
            "restartCount": restarts,
            "imageID": f"fake://{image}",
            "containerID": f"fake://{container.name}",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": started}},
        }
    return base | {
        "ready": True,
        "started": True,
        "restartCount": 0,
        "imageID": f"fake://{image}",
        "containerID": f"fake://{container.name}",
        "state": {"running": {"startedAt": started}},
    }


def desired_status(pod: Any, rules: Rules) -> dict[str, Any]:
    """The status a kubelet would give this pod now."""
    started = pod.status.start_time or pod.metadata.creation_timestamp
    age = (datetime.now(UTC) - started).total_seconds()
    stamp = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    restart = pod.spec.restart_policy or "Always"
    statuses = [container_status(c, stamp, age, rules, restart) for c in pod.spec.containers]
    ready = all(s["ready"] for s in statuses)
    pulled = all("ImagePullBackOff" not in str(s["state"]) for s in statuses)
    exits = [s["state"]["terminated"]["exitCode"] for s in statuses if "terminated" in s["state"]]
    if not pulled:
        phase = "Pending"
    elif exits and len(exits) == len(statuses):
        phase = "Failed" if any(exits) else "Succeeded"
    else:
        phase = "Running"
    init = [
        {
            "name": c.name,
            "image": c.image,
            "imageID": f"fake://{c.image}",
            "ready": True,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": stamp}},
        }
        for c in pod.spec.init_containers or []
    ]
    not_ready = {
        "reason": "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
    }
    conditions = [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "ContainersReady", "status": str(ready)} | ({} if ready else not_ready),
        {"type": "Ready", "status": str(ready)} | ({} if ready else not_ready),
    ]
    return {
        "phase": phase,
        "conditions": conditions,
        "containerStatuses": statuses,
        "initContainerStatuses": init,
        "hostIP": "127.0.0.1",
        "podIP": pod_ip(pod.metadata.uid) if pulled else None,
        "startTime": stamp,
    }


def differs(api: client.ApiClient, pod: Any, want: dict[str, Any]) -> bool:
    """Whether the pod's status lacks what `want` says (compared on what matters)."""
    have = api.sanitize_for_serialization(pod.status) or {}
    if have.get("phase") != want["phase"]:
        return True
    have_conditions = {c["type"]: c["status"] for c in have.get("conditions") or []}
    if have_conditions != {c["type"]: c["status"] for c in want["conditions"]}:
        return True

    def brief(statuses: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (s["name"], s.get("image"), s.get("ready"), s.get("restartCount"), str(s.get("state")))
            for s in statuses
        ]

    have_statuses = [
        s | {"state": {k: {"reason": v.get("reason")} for k, v in s["state"].items() if v}}
        for s in have.get("containerStatuses") or []
    ]
    want_statuses = [
        s | {"state": {k: {"reason": v.get("reason")} for k, v in s["state"].items()}}
        for s in want["containerStatuses"]
    ]
    return brief(have_statuses) != brief(want_statuses)


class FakeKubelet:
    """Registers the Node, keeps it alive, and runs the pods bound to it."""

    def __init__(self, api: client.ApiClient, rules: Rules) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.rules = rules
        self.last_heartbeat = 0.0

    async def register(self) -> None:
        """Create the Node (or keep the one an earlier run made)."""
        capacity = {"cpu": "32", "memory": "256Gi", "pods": "250"}
        node = client.V1Node(
            metadata=client.V1ObjectMeta(
                name=NODE, labels={"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}
            ),
            status=client.V1NodeStatus(capacity=capacity, allocatable=capacity),
        )
        try:
            await self.core.create_node(node)
        except ApiException as exc:
            if exc.status != 409:
                raise
        await self.heartbeat()

    async def heartbeat(self) -> None:
        """Report the Node Ready, or the node controller marks it lost and evicts its pods."""
        stamp = now()
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "fake kubelet is posting ready status",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
        body = {
            "status": {
                "conditions": [ready],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            }
        }
        await self.core.patch_node_status(NODE, body)
        self.last_heartbeat = time.monotonic()

    async def run(self) -> None:
        """Poll forever; each pass does what a kubelet would for each pod."""
        await self.register()
        log.info("node %s registered", NODE)
        while True:
            try:
                await self.sync()
            except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
                # A kubelet outlives a busy or restarting API server: try again shortly.
                log.warning("pass failed: %s", exc)
                await asyncio.sleep(1)
            await asyncio.sleep(POLL_SECONDS)

    async def sync(self) -> None:
        """One pass: the heartbeat when due, then every pod."""
        if time.monotonic() - self.last_heartbeat > HEARTBEAT_SECONDS:
            await self.heartbeat()
        pods = await self.core.list_pod_for_all_namespaces()
        for pod in pods.items:
            try:
                await self.handle(pod)
            except ApiException as exc:
                # The pod changed or went away meanwhile: the next pass sees it anew.
                if exc.status not in (404, 409, 422):
                    raise

    async def handle(self, pod: Any) -> None:
        """Bind, run or finish one pod."""
        name, namespace = pod.metadata.name, pod.metadata.namespace
        if pod.metadata.deletion_timestamp:
            # A kubelet confirms the deletion once the containers stopped; ours stop at once.
            await self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
            return
        if not pod.spec.node_name:
            binding = client.V1Binding(
                metadata=client.V1ObjectMeta(name=name),
                target=client.V1ObjectReference(api_version="v1", kind="Node", name=NODE),
            )
            await self.core.create_namespaced_pod_binding(
                name, namespace, binding, _preload_content=False
            )
            return
        if pod.spec.node_name != NODE or pod.status.phase in ("Succeeded", "Failed"):
            return
        want = desired_status(pod, self.rules)
        if differs(self.api, pod, want):
            for condition in want["conditions"]:
                condition["lastTransitionTime"] = now()
            # A merge patch replaces the lists whole; a strategic one would merge a container's
            # old `running` state into its new `waiting` one.
            await self.core.patch_namespaced_pod_status(
                name, namespace, {"status": want}, _content_type="application/merge-patch+json"
            )


async def main() -> None:
    """Parse the arguments and run the fake kubelet until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--unpullable", default="unpullable")
    parser.add_argument("--crashloop", default="crashloop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    api = await config.new_client_from_config(config_file=args.kubeconfig)
    async with api:
        await FakeKubelet(api, Rules(args.unpullable, args.crashloop)).run()


if __name__ == "__main__":
    asyncio.run(main())
