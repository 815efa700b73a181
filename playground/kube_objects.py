"""The JSON of the simulated cluster's objects: pod templates, pods, conditions, timestamps."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

Json = dict[str, Any]
BROKEN = "broken"  # in an image tag: its pods sit in ImagePullBackOff
SAFE = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of Kubernetes' generated name suffixes


def template(labels: Json, name: str, image: str, env: Json) -> Json:
    """A pod template of one container serving HTTP on 8080."""
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "containers": [
                {
                    "name": name,
                    "image": image,
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
    }


def pod(rs: Json, name: str, ready: bool) -> Json:
    container = rs["spec"]["template"]["spec"]["containers"][0]
    image = str(container["image"])
    if ready:
        state: Json = {"running": {"startedAt": stamp()}}
    elif broken(rs):
        state = {
            "waiting": {
                "reason": "ImagePullBackOff",
                "message": f'Back-off pulling image "{image}"',
            }
        }
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
    flag = "True" if ready else "False"
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": rs["metadata"]["namespace"],
            "labels": dict(rs["spec"]["template"]["metadata"]["labels"]),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs["metadata"]["name"],
                    "uid": rs["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": copy.deepcopy(rs["spec"]["template"]["spec"]),
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [
                {"type": "Ready", "status": flag},
                {"type": "ContainersReady", "status": flag},
            ],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": image,
                    "ready": ready,
                    "restartCount": 0,
                    "started": ready,
                    "state": state,
                }
            ],
        },
    }


def condition(previous: Json | None, kind: str, status: str, reason: str, message: str) -> Json:
    """A condition; its lastTransitionTime moves only when its status does."""
    before = previous or {}
    now = stamp()
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": before["lastUpdateTime"] if before.get("reason") == reason else now,
        "lastTransitionTime": before["lastTransitionTime"]
        if before.get("status") == status
        else now,
        "reason": reason,
        "message": message,
    }


def broken(rs: Json) -> bool:
    image = str(rs["spec"]["template"]["spec"]["containers"][0]["image"])
    return BROKEN in image.rsplit(":", 1)[-1]


def suffix() -> str:
    return "".join(SAFE[b % len(SAFE)] for b in uuid.uuid4().bytes[:5])


def stamp(ago: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) - ago).strftime("%Y-%m-%dT%H:%M:%SZ")
