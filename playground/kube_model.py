"""The simulated cluster behind playground/kube_api.py: Deployments, ReplicaSets, pods, controller.

Objects are kept as the Kubernetes API's own JSON. Time moves in steps of `step_seconds`,
applied when someone looks (`advance`), so there is no background task. Each step the
simulated Deployment controller does what the real one does, in small:

- a Deployment whose `metadata.generation` is ahead of `status.observedGeneration` gets
  its new ReplicaSet: the one whose pod template equals the Deployment's (ignoring the
  `pod-template-hash` label) when there is one, as on a rollback, else a new one named
  `<deployment>-<hash>`; either way it takes the next revision number, its old number
  goes into `deployment.kubernetes.io/revision-history`, and the Deployment's
  `deployment.kubernetes.io/revision` follows;
- a rolling update with maxSurge 1 and maxUnavailable 0 (what 25% of 3 replicas rounds
  to): one new pod at a time, an old one removed once a new one is available;
- pods of an image whose tag contains `broken` never start: their container waits with
  reason ImagePullBackOff, the rollout stalls and, after `progressDeadlineSeconds`, the
  Progressing condition turns False with reason ProgressDeadlineExceeded.

Status writes bump `metadata.resourceVersion` and never `metadata.generation`, as a real
API server does.
"""

from __future__ import annotations

import copy
import hashlib
import time
import uuid
from typing import Any

from playground.kube_objects import SAFE, broken, condition, pod, stamp, suffix, template

Json = dict[str, Any]
REVISION = "deployment.kubernetes.io/revision"
HISTORY = "deployment.kubernetes.io/revision-history"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH = "pod-template-hash"
# The controller keeps these on the Deployment or the ReplicaSet only, never copies them.
NOT_COPIED = frozenset(
    {
        REVISION,
        HISTORY,
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "kubectl.kubernetes.io/last-applied-configuration",
    }
)


class Cluster:
    """Deployments and their ReplicaSets and pods, advanced by a simulated controller."""

    def __init__(self, step_seconds: float = 0.4) -> None:
        self.step_seconds = step_seconds
        self.deployments: dict[tuple[str, str], Json] = {}
        self.replica_sets: dict[tuple[str, str], Json] = {}
        self._pods: dict[str, list[str]] = {}  # ReplicaSet uid -> its pod names, oldest first
        self._ready: dict[str, int] = {}  # ReplicaSet uid -> pods available
        self._progress_since: dict[str, float] = {}  # Deployment uid -> rollout started
        self._version = 1000  # the newest resourceVersion written
        self._last = time.monotonic()

    # -- what changes objects -----------------------------------------------------------------

    def bump(self, obj: Json) -> None:
        """Give an object a new resourceVersion, as every write does."""
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)

    def create(
        self, namespace: str, name: str, image: str, replicas: int, change_cause: str, env: Json
    ) -> Json:
        """Create a Deployment of one container, rolled out at once (the seed)."""
        labels = {"app": name}
        deployment = {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "creationTimestamp": stamp(),
                "labels": dict(labels),
                "annotations": {CHANGE_CAUSE: change_cause},
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": template(labels, name, image, env),
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                },
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            },
            "status": {},
        }
        self.bump(deployment)
        self.deployments[(namespace, name)] = deployment
        self.advance(settle=True)
        return deployment

    def deploy(self, deployment: Json, image: str, change_cause: str, env: Json) -> None:
        """Change the image and environment, as `kubectl set image` and a CI deploy do."""
        meta = deployment["metadata"]
        deployment["spec"]["template"] = template(
            deployment["spec"]["selector"]["matchLabels"], meta["name"], image, env
        )
        meta["annotations"] = {**meta.get("annotations", {}), CHANGE_CAUSE: change_cause}
        self.changed_spec(deployment)

    def changed_spec(self, deployment: Json) -> None:
        """Record a change of the spec: a new generation for the controller to act on."""
        deployment["metadata"]["generation"] += 1
        self.bump(deployment)
        self._last = time.monotonic()  # the controller's first step on it comes a step later

    def advance(self, settle: bool = False) -> None:
        """Run the controller's steps due by now (all of them, when settling the seed)."""
        now = time.monotonic()
        while settle or now - self._last >= self.step_seconds:
            self._last = now if settle else self._last + self.step_seconds
            if not any([self._step(d) for d in self.deployments.values()]):
                self._last = now  # nothing moves: no steps to catch up on
                return

    def list_version(self) -> str:
        """The resourceVersion a list answers with: the newest write's."""
        return str(self._version)

    # -- reads ----------------------------------------------------------------------------------

    def owned(self, deployment: Json) -> list[Json]:
        """The ReplicaSets the Deployment controls, oldest revision first."""
        uid = deployment["metadata"]["uid"]
        found = [
            rs
            for rs in self.replica_sets.values()
            if any(ref["uid"] == uid for ref in rs["metadata"]["ownerReferences"])
        ]
        return sorted(found, key=lambda rs: int(rs["metadata"]["annotations"][REVISION]))

    def pods(self, namespace: str) -> list[Json]:
        """The pods of every ReplicaSet in a namespace, as the kubelet reports them."""
        found = []
        for rs in self.replica_sets.values():
            if rs["metadata"]["namespace"] != namespace:
                continue
            ready = self._ready.get(rs["metadata"]["uid"], 0)
            for index, name in enumerate(self._pods.get(rs["metadata"]["uid"], [])):
                found.append(pod(rs, name, ready=index < ready))
        return found

    def serving(self, namespace: str, name: str) -> str | None:
        """The image tag most available pods of a Deployment run (None when none is)."""
        self.advance()
        deployment = self.deployments.get((namespace, name))
        if deployment is None:
            return None
        counted = [(self._ready.get(rs["metadata"]["uid"], 0), rs) for rs in self.owned(deployment)]
        ready, rs = max(counted, key=lambda pair: pair[0], default=(0, None))
        if not ready or rs is None:
            return None
        image = str(rs["spec"]["template"]["spec"]["containers"][0]["image"])
        return image.rsplit(":", 1)[-1]

    # -- the Deployment controller --------------------------------------------------------------

    def _step(self, deployment: Json) -> bool:
        """One step of the controller for one Deployment; whether anything changed."""
        before = copy.deepcopy((deployment["status"], deployment["metadata"].get("annotations")))
        new = self._new_replica_set(deployment)
        olds = [rs for rs in self.owned(deployment) if rs is not new]
        wanted = int(deployment["spec"]["replicas"])
        for rs in self.owned(deployment):  # pods started last step are up now, unless broken
            if not broken(rs):
                self._ready[rs["metadata"]["uid"]] = _replicas(rs)
            self._write_rs_status(rs)
        for rs in olds:  # old pods that never became available go first, as with the real one
            if _replicas(rs) > self._ready.get(rs["metadata"]["uid"], 0):
                self._scale(rs, self._ready.get(rs["metadata"]["uid"], 0))
        available = sum(self._ready.get(rs["metadata"]["uid"], 0) for rs in self.owned(deployment))
        running = [rs for rs in olds if _replicas(rs) > 0]
        if running and available > wanted:  # maxUnavailable 0: never below the wanted count
            self._scale(running[0], _replicas(running[0]) - 1)
        total = sum(_replicas(rs) for rs in self.owned(deployment))
        if _replicas(new) < wanted and total < wanted + 1:  # maxSurge 1
            self._scale(new, _replicas(new) + 1)
        elif _replicas(new) > wanted:
            self._scale(new, wanted)
        self._write_status(deployment, new)
        changed = before != (deployment["status"], deployment["metadata"].get("annotations"))
        if changed:
            self.bump(deployment)
        return changed

    def _new_replica_set(self, deployment: Json) -> Json:
        """The ReplicaSet of the Deployment's template: reused, or made with the next revision."""
        meta, spec = deployment["metadata"], deployment["spec"]
        owned = self.owned(deployment)
        found = next((rs for rs in owned if _unhashed(rs) == spec["template"]), None)
        if found is not None and meta["annotations"].get(REVISION) == _revision(found):
            return found
        top = max((int(_revision(rs)) for rs in owned), default=0)
        if found is None:
            found = self._make_replica_set(deployment)
        else:
            old = _revision(found)
            history = found["metadata"]["annotations"].get(HISTORY)
            found["metadata"]["annotations"][HISTORY] = f"{history},{old}" if history else old
        copied = {k: v for k, v in meta["annotations"].items() if k not in NOT_COPIED}
        found["metadata"]["annotations"].update(copied)
        found["metadata"]["annotations"][REVISION] = str(top + 1)
        self.bump(found)
        meta["annotations"][REVISION] = str(top + 1)
        self._progress_since[meta["uid"]] = time.monotonic()
        return found

    def _make_replica_set(self, deployment: Json) -> Json:
        meta, spec = deployment["metadata"], deployment["spec"]
        digest = hashlib.sha256(repr(spec["template"]).encode()).digest()
        pod_hash = "".join(SAFE[b % len(SAFE)] for b in digest[:10])
        labels = {**spec["selector"]["matchLabels"], HASH: pod_hash}
        rs_template = copy.deepcopy(spec["template"])
        rs_template["metadata"]["labels"] = {**rs_template["metadata"]["labels"], HASH: pod_hash}
        wanted = str(spec["replicas"])
        rs: Json = {
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "namespace": meta["namespace"],
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "creationTimestamp": stamp(),
                "labels": labels,
                "annotations": {
                    "deployment.kubernetes.io/desired-replicas": wanted,
                    "deployment.kubernetes.io/max-replicas": str(int(wanted) + 1),
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": dict(labels)},
                "template": rs_template,
            },
            "status": {"replicas": 0, "observedGeneration": 1},
        }
        self.replica_sets[(meta["namespace"], rs["metadata"]["name"])] = rs
        return rs

    def _scale(self, rs: Json, replicas: int) -> None:
        uid = rs["metadata"]["uid"]
        pods = self._pods.setdefault(uid, [])
        while len(pods) < replicas:
            pods.append(f"{rs['metadata']['name']}-{suffix()}")
        del pods[: len(pods) - replicas]  # the oldest go first
        self._ready[uid] = min(self._ready.get(uid, 0), replicas)
        rs["spec"]["replicas"] = replicas
        rs["metadata"]["generation"] += 1
        self._write_rs_status(rs)

    def _write_rs_status(self, rs: Json) -> None:
        """The ReplicaSet controller's status: its pods, and how many are available."""
        ready = self._ready.get(rs["metadata"]["uid"], 0)
        now = {
            "replicas": _replicas(rs),
            "fullyLabeledReplicas": _replicas(rs),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"],
        }
        if now != rs["status"]:
            rs["status"] = now
            self.bump(rs)

    def _write_status(self, deployment: Json, new: Json) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        owned = self.owned(deployment)
        wanted = int(spec["replicas"])
        total = sum(_replicas(rs) for rs in owned)
        available = sum(self._ready.get(rs["metadata"]["uid"], 0) for rs in owned)
        updated = _replicas(new)
        done = updated == wanted == total and self._ready.get(new["metadata"]["uid"]) == wanted
        since = self._progress_since.get(meta["uid"], time.monotonic())
        name = new["metadata"]["name"]
        if done:
            progressing = (
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{name}" has successfully progressed.',
            )
        elif time.monotonic() - since > int(spec["progressDeadlineSeconds"]):
            progressing = (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{name}" has timed out progressing.',
            )
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
        previous = {c["type"]: c for c in deployment["status"].get("conditions", [])}
        minimum = available >= wanted
        deployment["status"] = {
            "observedGeneration": meta["generation"],
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": max(total - available, 0),
            "conditions": [
                condition(
                    previous.get("Available"),
                    "Available",
                    "True" if minimum else "False",
                    "MinimumReplicasAvailable" if minimum else "MinimumReplicasUnavailable",
                    "Deployment has minimum availability."
                    if minimum
                    else "Deployment does not have minimum availability.",
                ),
                condition(previous.get("Progressing"), "Progressing", *progressing),
            ],
        }
        if not deployment["status"]["unavailableReplicas"]:
            del deployment["status"]["unavailableReplicas"]


def _unhashed(rs: Json) -> Json:
    found = copy.deepcopy(rs["spec"]["template"])
    found["metadata"]["labels"].pop(HASH, None)
    return found


def _revision(rs: Json) -> str:
    return str(rs["metadata"]["annotations"].get(REVISION, "0"))


def _replicas(rs: Json) -> int:
    return int(rs["spec"]["replicas"])
