"""A simulated Kubernetes API server, for the playground's `web` service and the provider's tests.

`FakeKube` is an aiohttp server on 127.0.0.1 over plain HTTP, reached with a kubeconfig
(`write_kubeconfig`) whose user holds a bearer token. It is not a control plane: it
serves exactly the calls of the `kubernetes` provider (providers/kubernetes.py), as the
API's own JSON, over a simulated cluster (playground/kube_model.py) seeded with the
Deployment `web` in namespace `shop` at revisions v2.3.0, v2.3.1 and v2.4.0 (current,
3 replicas):

- GET of a Deployment, and the Deployments, ReplicaSets and pods of a namespace with a
  `labelSelector` (equality-based: `k=v`, `k==v`, `k!=v`, `k`, `!k`); the
  HorizontalPodAutoscalers and ControllerRevisions of a namespace (none);
- PATCH of a Deployment with `application/json-patch+json` (RFC 6902, applied by the
  `jsonpatch` library). Other patch types answer 415.

Documented behaviours it reproduces:

- a JSON patch whose `test` operation fails is not applied and answers 422 with a Status
  of reason Invalid whose cause says `testing value <path> failed` (kubernetes#68838);
  so does a template whose labels the selector does not match;
- a change of the spec bumps `metadata.generation`; every write, the controller's status
  writes included, bumps `metadata.resourceVersion`; the status's `observedGeneration`
  catches up when the controller has acted on the change;
- each template gets a ReplicaSet owned by the Deployment (ownerReferences with
  `controller: true` and the Deployment's uid) carrying the `deployment.kubernetes.io/revision`
  annotation; rolling back to an earlier template reuses its ReplicaSet, which takes the
  next revision number (`kubectl rollout history` then shows the old number gone);
- a pull secret that does not exist answers 404 (then the provider's preflight says the
  image was not checked); no objects answer 404 with a Status of reason NotFound, a
  missing or wrong token 401 Unauthorized.

Bad days, as knobs: `deploy_before_next_patch` (someone deploys between the provider's
read and its patch: the `test` fails), `forbid` (RBAC: 403 Forbidden with the API
server's message), `throttle` (429 TooManyRequests with Retry-After).
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonpatch
import jsonpointer
import yaml
from aiohttp import web

from playground.kube_model import Cluster
from playground.kube_objects import stamp

Json = dict[str, Any]
JSON_PATCH = "application/json-patch+json"
NAMESPACE, NAME = "shop", "web"
IMAGE = "registry.example/shop/web"
# (tag, change-cause, environment, days ago): the seeded revisions, oldest first.
SEED = (
    ("v2.3.0", "release v2.3.0: search filters", {"LOG_LEVEL": "info"}, 9),
    ("v2.3.1", "release v2.3.1: fix search paging", {"LOG_LEVEL": "info"}, 6),
    (
        "v2.4.0",
        "release v2.4.0: new checkout flow",
        {"LOG_LEVEL": "info", "CHECKOUT_V2": "on"},
        1,
    ),
)
USER = "system:serviceaccount:shop:rollbot"  # who the token is, as a 403 names it
GROUPS = {"deployments": "apps", "replicasets": "apps", "pods": "", "secrets": ""}
KINDS = {
    "deployments": "Deployment",
    "replicasets": "ReplicaSet",
    "controllerrevisions": "ControllerRevision",
    "pods": "Pod",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
}
API_VERSIONS = {"pods": "v1", "horizontalpodautoscalers": "autoscaling/v2"}


@dataclass
class Call:
    """One request the fake answered."""

    method: str
    path: str
    status: int


@dataclass
class _Throttle:
    times: int
    retry_after: int


class FakeKube:
    """The simulated API server: its URL, the token its kubeconfig holds, the cluster."""

    def __init__(self, step_seconds: float = 0.4) -> None:
        self.cluster = Cluster(step_seconds)
        self.token = f"kube-demo-{secrets.token_hex(16)}"
        self.calls: list[Call] = []
        # Knobs: see the module's docstring.
        self.deploy_before_next_patch: str | None = None  # an image
        self.forbid: set[tuple[str, str]] = set()  # (verb, resource)
        self._throttle: _Throttle | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        app = web.Application(middlewares=[self._middleware])
        apps = "/apis/apps/v1/namespaces/{ns}"
        app.router.add_get(f"{apps}/deployments", self._list("deployments"))
        app.router.add_get(f"{apps}/deployments/{{name}}", self._read_deployment)
        app.router.add_patch(f"{apps}/deployments/{{name}}", self._patch_deployment)
        app.router.add_get(f"{apps}/replicasets", self._list("replicasets"))
        app.router.add_get(f"{apps}/controllerrevisions", self._list("controllerrevisions"))
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self._list("pods"))
        app.router.add_get("/api/v1/namespaces/{ns}/secrets/{name}", self._read_secret)
        hpas = "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
        app.router.add_get(hpas, self._list("horizontalpodautoscalers"))
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True)

    # -- lifecycle and setup ---------------------------------------------------------------

    async def start(self) -> None:
        """Start accepting connections."""
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def close(self) -> None:
        """Stop the server and release its port."""
        if self._runner.server is not None:
            await self._runner.cleanup()
        self._sock.close()

    def seed(self) -> Json:
        """Deployment shop/web at v2.3.0, v2.3.1 and v2.4.0 (current), rolled out."""
        deployment: Json | None = None
        for tag, cause, env, days in SEED:
            if deployment is None:
                deployment = self.cluster.create(NAMESPACE, NAME, f"{IMAGE}:{tag}", 3, cause, env)
            else:
                self.cluster.deploy(deployment, f"{IMAGE}:{tag}", cause, env)
                self.cluster.advance(settle=True)
            newest = self.cluster.owned(deployment)[-1]
            newest["metadata"]["creationTimestamp"] = stamp(timedelta(days=days))
        assert deployment is not None
        return deployment

    def deployment(self, name: str = NAME, namespace: str = NAMESPACE) -> Json:
        """A Deployment as the cluster holds it now."""
        self.cluster.advance()
        return self.cluster.deployments[(namespace, name)]

    def serving(self) -> str | None:
        """The version most available pods of shop/web run."""
        return self.cluster.serving(NAMESPACE, NAME)

    def write_kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig for this server (owner-readable only: it holds the token)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "playground", "cluster": {"server": self.url}}],
            "users": [{"name": "rollbot", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "playground",
                    "context": {"cluster": "playground", "user": "rollbot", "namespace": NAMESPACE},
                }
            ],
            "current-context": "playground",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            yaml.safe_dump(config, file, sort_keys=False)
        return path

    def settings(self, kubeconfig: Path, **overrides: Any) -> Json:
        """Provider settings for shop/web through a kubeconfig, quick to poll."""
        return {
            "provider": "kubernetes",
            "namespace": NAMESPACE,
            "name": NAME,
            "kubeconfig": str(kubeconfig),
            "poll_interval_seconds": 0.5,
            "rollout_timeout_seconds": 60,
            "stuck_pod_seconds": 5,
            "api_timeout_seconds": 5,
            **overrides,
        }

    def throttle(self, times: int, retry_after: int = 1) -> None:
        """Answer the next `times` requests with 429 and Retry-After, as API priority does."""
        self._throttle = _Throttle(times, retry_after)

    # -- the API ------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await self._answer(request, handler)
        self.calls.append(Call(request.method, request.path, response.status))
        return response

    async def _answer(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return status(401, "Unauthorized", "Unauthorized")
        if self._throttle is not None and self._throttle.times > 0:
            self._throttle.times -= 1
            answer = status(429, "TooManyRequests", "Too many requests, please try again later.")
            answer.headers["Retry-After"] = str(self._throttle.retry_after)
            return answer
        if request.match_info.route.resource is None:
            return status(404, "NotFound", "the server could not find the requested resource")
        verb = {"GET": "get", "PATCH": "patch"}.get(request.method, request.method.lower())
        parts = request.path.strip("/").split("/")
        resource = parts[5] if parts[0] == "apis" else parts[4]
        if verb == "get" and "name" not in request.match_info:
            verb = "list"
        if (verb, resource) in self.forbid:
            return _forbidden(verb, resource, request.match_info)
        self.cluster.advance()
        return await handler(request)

    def _list(self, resource: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            namespace = request.match_info["ns"]
            try:
                wanted = selector(request.query.get("labelSelector", ""))
            except ValueError as exc:
                return status(400, "BadRequest", str(exc))
            items = {
                "deployments": list(self.cluster.deployments.values()),
                "replicasets": list(self.cluster.replica_sets.values()),
                "pods": self.cluster.pods(namespace),
            }.get(resource, [])
            chosen = [
                _bare(item)
                for item in items
                if item["metadata"]["namespace"] == namespace
                and wanted(item["metadata"].get("labels") or {})
            ]
            return _json(
                {
                    "kind": f"{KINDS[resource]}List",
                    "apiVersion": API_VERSIONS.get(resource, "apps/v1"),
                    "metadata": {"resourceVersion": self.cluster.list_version()},
                    "items": chosen,
                }
            )

        return handler

    async def _read_deployment(self, request: web.Request) -> web.Response:
        found = self.cluster.deployments.get((request.match_info["ns"], request.match_info["name"]))
        if found is None:
            return _not_found("deployments", request.match_info["name"])
        return _json(found)

    async def _read_secret(self, request: web.Request) -> web.Response:
        return _not_found("secrets", request.match_info["name"])

    async def _patch_deployment(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = self.cluster.deployments.get((request.match_info["ns"], name))
        if found is None:
            return _not_found("deployments", name)
        if request.content_type != JSON_PATCH:
            return status(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {JSON_PATCH} (the only patch type this simulated API applies)",
            )
        if self.deploy_before_next_patch is not None:
            image, self.deploy_before_next_patch = self.deploy_before_next_patch, None
            self.cluster.deploy(found, image, f"deploy {image}", {"LOG_LEVEL": "info"})
        try:
            operations = json.loads(await request.read())
            patched = jsonpatch.apply_patch(found, operations)
        except jsonpatch.JsonPatchTestFailed:
            failed = _failed_test(found, operations)
            return status(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
                causes=[f"testing value {failed} failed: test failed"],
            )
        except (ValueError, jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            return status(400, "BadRequest", str(exc))
        invalid = _invalid(patched)
        if invalid:
            return status(422, "Invalid", f'Deployment.apps "{name}" is invalid: {invalid}')
        spec_changed = patched["spec"] != found["spec"]
        found["metadata"]["annotations"] = patched["metadata"].get("annotations") or {}
        found["metadata"]["labels"] = patched["metadata"].get("labels") or {}
        found["spec"] = patched["spec"]  # a patch of the main resource ignores status
        if spec_changed:
            self.cluster.changed_spec(found)
        else:
            self.cluster.bump(found)
        return _json(found)


def selector(text: str) -> Callable[[Json], bool]:
    """An equality-based label selector as a test of labels; ValueError for what it cannot read."""
    wanted: list[tuple[str, str, str]] = []  # (key, operator, value)
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "!=" in part:
            key, value = part.split("!=", 1)
            wanted.append((key.strip(), "!=", value.strip()))
        elif "=" in part:
            key, value = part.replace("==", "=").split("=", 1)
            wanted.append((key.strip(), "=", value.strip()))
        elif part.startswith("!"):
            wanted.append((part[1:].strip(), "!", ""))
        elif " " not in part and "(" not in part:
            wanted.append((part, "exists", ""))
        else:
            raise ValueError(
                f"unable to parse requirement: {part!r} (set-based selectors are not simulated)"
            )
    return lambda labels: all(_holds(labels, *requirement) for requirement in wanted)


def _holds(labels: Json, key: str, operator: str, value: str) -> bool:
    if operator == "=":
        return labels.get(key) == value
    if operator == "!=":
        return labels.get(key) != value
    return (key in labels) == (operator == "exists")


def status(code: int, reason: str, message: str, causes: list[str] | None = None) -> web.Response:
    """A Status object, as the API server answers every failure."""
    body: Json = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if causes:
        body["details"] = {
            "causes": [{"reason": "UnexpectedServerResponse", "message": c} for c in causes]
        }
    return _json(body, code)


def _not_found(resource: str, name: str) -> web.Response:
    group = GROUPS.get(resource, "")
    qualified = f"{resource}.{group}" if group else resource
    return status(404, "NotFound", f'{qualified} "{name}" not found')


def _forbidden(verb: str, resource: str, match: Any) -> web.Response:
    group = GROUPS.get(resource, "")
    qualified = f"{resource}.{group}" if group else resource
    what = f'{qualified} "{match["name"]}"' if "name" in match else qualified
    return status(
        403,
        "Forbidden",
        f'{what} is forbidden: User "{USER}" cannot {verb} resource "{resource}" in API '
        f'group "{group}" in the namespace "{match["ns"]}"',
    )


def _failed_test(document: Json, operations: Any) -> str:
    """The path of the first `test` operation that does not hold."""
    for op in operations if isinstance(operations, list) else []:
        if isinstance(op, dict) and op.get("op") == "test":
            if jsonpointer.resolve_pointer(document, op.get("path", ""), None) != op.get("value"):
                return str(op.get("path"))
    return "?"


def _invalid(deployment: Json) -> str:
    """What the API server's validation refuses in a patched Deployment ("" when nothing)."""
    spec = deployment.get("spec") or {}
    wanted = (spec.get("selector") or {}).get("matchLabels") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return (
            f"spec.template.metadata.labels: Invalid value: {json.dumps(labels)}: "
            "`selector` does not match template `labels`"
        )
    if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
        return "spec.template.spec.containers: Required value"
    return ""


def _bare(item: Json) -> Json:
    """A list's item: the API leaves out each item's kind and apiVersion."""
    return {k: copy.deepcopy(v) for k, v in item.items() if k not in ("kind", "apiVersion")}


def _json(body: Json, code: int = 200) -> web.Response:
    return web.json_response(body, status=code)
