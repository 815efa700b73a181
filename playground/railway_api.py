"""A local fake of Railway's public GraphQL API (v2), for the railway provider's tests.

`FakeRailway` is an aiohttp server on 127.0.0.1 that executes the queries it receives
against a real GraphQL schema (graphql-core) holding the part of Railway's schema rollbot
uses: `deployments(input: DeploymentListInput!, first: Int)`, `deployment(id)`,
`deploymentRollback(id: String!): Boolean!`, the `Deployment` type and the
`DeploymentStatus` enum, and a service instance's automatic deployments
(`serviceInstanceAutoDeployStatus` and `serviceInstanceAutoDeployUpdate`). So a query
with an unknown field, a missing variable or a wrong type fails here the way it fails at
Railway.

It answers like Railway does: errors as HTTP 200 with `errors: [{message, locations, path}]`
and `data: null`, "Not Authorized" for a missing or wrong token (a project token must come
in `Project-Access-Token` and only sees its own environment; an account token comes in
`Authorization: Bearer`), HTTP 429 with Retry-After and the `X-RateLimit-Limit`,
`X-RateLimit-Remaining` and `X-RateLimit-Reset` headers Railway's public API reference
documents ("Rate Limits", docs.railway.com/reference/public-api). Where Railway's docs
are silent, it chose: unknown project, service, environment and deployment ids answer
"<Kind> not found"; a document that does not parse or validate answers HTTP 400.

`deploymentRollback` creates a deployment from the target's image and meta that walks
through `rollback_statuses`, one step every `step_seconds` (QUEUED -> BUILDING -> DEPLOYING
-> SUCCESS by default); when it reaches SUCCESS the deployment served before becomes
REMOVED, as Railway's docs say. A new deployment that fails (CRASHED before going live)
leaves the old one serving. Knobs: `fail` (HTTP errors), `fail_graphql` (GraphQL errors),
`delay` (slow answers), `rollback_statuses`/`step_seconds`, `rollback_answer`,
`lose_rollback_answer` (the rollback is applied, its answer replaced by an error),
`auto_deploy` (whether pushes deploy the service), `lose_update_answer` (the auto-deploy
change is applied, its answer replaced by an error).

The schema and the token scopes are in `playground/railway_schema.py`, the deployments and
their statuses over time in `playground/railway_model.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from inspect import isawaitable
from typing import Any

from aiohttp import web
from graphql import GraphQLError, GraphQLResolveInfo, execute, parse, validate

from playground.railway_model import LIVE, FakeDeployment, advance, ordered
from playground.railway_schema import SCHEMA, Context, Scope, authorize, root_fields

Json = dict[str, Any]

ENDPOINT_PATH = "/graphql/v2"
SUCCEEDS = ("QUEUED", "BUILDING", "DEPLOYING", "SUCCESS")
CRASHES = ("QUEUED", "BUILDING", "DEPLOYING", "CRASHED")
NEVER_READY = ("QUEUED", "BUILDING", "DEPLOYING")
IMAGE = "ghcr.io/acme/api"


@dataclass(frozen=True)
class Call:
    """One request the fake received: its root fields, variables and answer."""

    fields: tuple[str, ...]
    variables: Json
    status: int
    errors: tuple[str, ...] = ()
    at: float = 0.0  # time.monotonic() when it was answered


@dataclass
class _Failure:
    status: int
    times: int
    field: str | None
    retry_after: float | None = None
    message: str | None = None


class FakeRailway:
    """Railway's GraphQL API with one project, one service and one environment in memory."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{ENDPOINT_PATH}"
        self.project_id = str(uuid.uuid4())
        self.service_id = str(uuid.uuid4())
        self.environment_id = str(uuid.uuid4())
        self.token = f"rw-project-{secrets.token_hex(16)}"
        self.account_token = f"rw-account-{secrets.token_hex(16)}"
        self.deployments: list[FakeDeployment] = []
        self.calls: list[Call] = []
        self.delay = 0.0
        self.rollback_statuses: tuple[str, ...] = SUCCEEDS
        self.step_seconds = 0.3
        self.rollback_answer = True
        # A status to answer deploymentRollback with after applying it (a lost answer).
        self.lose_rollback_answer: int | None = None
        self.auto_deploy = True
        self.lose_update_answer: int | None = None
        self._failures: list[_Failure] = []
        self._graphql_failures: list[_Failure] = []
        app = web.Application()
        app.router.add_post(ENDPOINT_PATH, self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start accepting connections."""
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def close(self) -> None:
        """Stop the server and release its port."""
        if self._runner.server is not None:
            await self._runner.cleanup()
        self._sock.close()

    # -- state ------------------------------------------------------------------------------

    def add(
        self,
        tag: str,
        status: str,
        *,
        age: timedelta,
        can_rollback: bool = True,
        message: str | None = None,
    ) -> FakeDeployment:
        """Add a deployment of the service built from commit and image `tag`."""
        deployment = FakeDeployment(
            id=str(uuid.uuid4()),
            project_id=self.project_id,
            service_id=self.service_id,
            environment_id=self.environment_id,
            status=status,
            created_at=datetime.now(UTC) - age,
            can_rollback=can_rollback,
            meta={
                "commitHash": commit_of(tag),
                "commitMessage": message or f"Release {tag}",
                "branch": "main",
                "image": f"{IMAGE}:{tag}",
                "reason": "deploy",
            },
        )
        self.deployments.append(deployment)
        return deployment

    def seed(self) -> None:
        """Hold the history the tests start from: v1.2.4 serves, v1.2.3 before it."""
        self.add("v1.1.0", "REMOVED", age=timedelta(days=120), can_rollback=False)
        self.add("v1.2.2", "REMOVED", age=timedelta(days=2))
        self.add("v1.2.3", "REMOVED", age=timedelta(days=1), message="Fix login\n\nDetails")
        self.add("v1.2.4-rc1", "FAILED", age=timedelta(hours=2), can_rollback=False)
        self.add("v1.2.4", "SUCCESS", age=timedelta(hours=1), message="Add export button")

    def by_tag(self, tag: str) -> FakeDeployment:
        """Return the oldest deployment of an image tag (the seeded one)."""
        return next(d for d in ordered(self.deployments, newest_first=False) if d.tag == tag)

    def serving(self) -> FakeDeployment | None:
        """Return the deployment that serves now."""
        advance(self.deployments)
        return next((d for d in ordered(self.deployments) if d.status in LIVE), None)

    def newest(self) -> FakeDeployment:
        """Return the newest deployment."""
        advance(self.deployments)
        return ordered(self.deployments)[0]

    def dump(self) -> str:
        """Describe what the fake holds and received, for assertion messages."""
        rows = [
            {"id": d.id, "status": d.status, "tag": d.tag, "canRollback": d.can_rollback}
            for d in ordered(self.deployments)
        ]
        calls = [(c.fields, c.status, c.errors) for c in self.calls[-20:]]
        return json.dumps({"deployments": rows, "calls": calls}, indent=1)

    def count(self, root_field: str) -> int:
        """Return how many requests asked for a root field (answered or failed)."""
        return sum(root_field in c.fields for c in self.calls)

    # -- knobs ------------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        field: str | None = None,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` requests (for `field`, or any) with this HTTP status."""
        self._failures.append(_Failure(status, times, field, retry_after, message))

    def fail_graphql(self, message: str, *, times: int = 1, field: str | None = None) -> None:
        """Answer the next `times` requests (for `field`, or any) with a GraphQL error."""
        self._graphql_failures.append(_Failure(200, times, field, message=message))

    # -- HTTP -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            body = await request.json()
            query = str(body["query"])
            variables = body.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return self._answer((), {}, 400, {"errors": [{"message": "Bad request body"}]})
        try:
            document = parse(query)
        except GraphQLError as exc:
            return self._answer((), variables, 400, {"errors": [exc.formatted]})
        fields = root_fields(document, body.get("operationName"))
        failure = _take(self._failures, fields)
        if failure is not None:
            return self._failed(fields, variables, failure)
        problems = validate(SCHEMA, document)
        if problems:
            return self._answer(fields, variables, 400, {"errors": [p.formatted for p in problems]})
        injected = _take(self._graphql_failures, fields)
        if injected is not None:
            error = {"message": injected.message, "path": list(fields[:1])}
            return self._answer(fields, variables, 200, {"data": None, "errors": [error]})
        advance(self.deployments)
        result = execute(
            SCHEMA,
            document,
            root_value=_Root(self),
            context_value=Context(self._scope(request)),
            variable_values=variables,
            operation_name=body.get("operationName"),
        )
        if isawaitable(result):
            result = await result
        payload: Json = {"data": result.data}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        for field, lose in (
            ("deploymentRollback", self.lose_rollback_answer),
            ("serviceInstanceAutoDeployUpdate", self.lose_update_answer),
        ):
            if lose and field in fields:
                lost = {"errors": [{"message": "Bad Gateway"}]}
                return self._answer(fields, variables, lose, lost)
        return self._answer(fields, variables, 200, payload)

    def _answer(
        self,
        fields: tuple[str, ...],
        variables: Json,
        status: int,
        payload: Json,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        errors = tuple(str(e.get("message")) for e in payload.get("errors") or [])
        self.calls.append(Call(fields, variables, status, errors, time.monotonic()))
        return web.json_response(payload, status=status, headers=headers)

    def _failed(self, fields: tuple[str, ...], variables: Json, failure: _Failure) -> web.Response:
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
        if failure.status == 429:
            reset = int(time.time() + (failure.retry_after or 1))
            headers.update(
                {
                    "X-RateLimit-Limit": "1000",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset),
                }
            )
        default = {401: "Not Authorized", 429: "Too Many Requests"}.get(failure.status)
        message = failure.message or default or f"HTTP {failure.status}"
        payload = {"errors": [{"message": message}]}
        return self._answer(fields, variables, failure.status, payload, headers)

    def _scope(self, request: web.Request) -> Scope | None:
        """Return what the request's token may see, or None when it carries no valid one."""
        project_token = request.headers.get("Project-Access-Token")
        if project_token is not None:
            if secrets.compare_digest(project_token, self.token):
                return Scope(self.project_id, self.environment_id)
            return None
        bearer = request.headers.get("Authorization", "")
        if secrets.compare_digest(bearer, f"Bearer {self.account_token}"):
            return Scope()
        return None

    # -- resolvers of the root fields ------------------------------------------------------

    def _resolve_deployments(
        self, info: GraphQLResolveInfo, input: Json, first: int | None = None, **_: Any
    ) -> Json:
        """Resolve `deployments`: the filtered deployments, newest first."""
        context: Context = info.context
        project, environment = input.get("projectId"), input.get("environmentId")
        authorize(context, project, environment)
        self._require_known(input)
        if first is not None and first < 0:
            raise GraphQLError("first must be a non-negative integer")
        found = [
            d
            for d in ordered(self.deployments)
            if all(
                value is None or getattr(d, attribute) == value
                for attribute, value in (
                    ("project_id", project),
                    ("environment_id", environment),
                    ("service_id", input.get("serviceId")),
                )
            )
        ]
        found = found[:first] if first is not None else found
        return {
            "edges": [{"cursor": d.id, "node": d.node()} for d in found],
            "pageInfo": {
                "hasNextPage": False,
                "hasPreviousPage": False,
                "startCursor": found[0].id if found else None,
                "endCursor": found[-1].id if found else None,
            },
        }

    def _resolve_deployment(self, info: GraphQLResolveInfo, id: str) -> Json:
        """Resolve `deployment(id)`."""
        return self._deployment_for(info.context, id).node()

    def _resolve_rollback(self, info: GraphQLResolveInfo, id: str) -> bool:
        """Resolve `deploymentRollback`: start a new deployment from the target's image."""
        target = self._deployment_for(info.context, id)
        if not target.can_rollback:
            raise GraphQLError("Deployment cannot be rolled back")
        if not self.rollback_answer:
            return False
        self.deployments.append(
            FakeDeployment.rollback_of(target, self.rollback_statuses, self.step_seconds)
        )
        return True

    def _resolve_auto_deploy(
        self, info: GraphQLResolveInfo, projectId: str, environmentId: str, serviceId: str
    ) -> Json:
        """Resolve `serviceInstanceAutoDeployStatus`: whether pushes deploy the service."""
        authorize(info.context, projectId, environmentId)
        self._require_known(
            {"projectId": projectId, "environmentId": environmentId, "serviceId": serviceId}
        )
        return self._auto_deploy_status()

    def _resolve_auto_deploy_update(self, info: GraphQLResolveInfo, input: Json) -> Json:
        """Resolve `serviceInstanceAutoDeployUpdate`: turn automatic deployments on or off."""
        context: Context = info.context
        authorize(context, input["projectId"], input["environmentId"])
        self._require_known(input)
        assert context.scope is not None
        if context.scope.project_id is not None:
            raise GraphQLError("Bad Access")
        self.auto_deploy = bool(input["enabled"])
        return self._auto_deploy_status()

    def _auto_deploy_status(self) -> Json:
        return {"enabled": self.auto_deploy, "canEnable": True, "reason": None}

    # -- internals --------------------------------------------------------------------------

    def _deployment_for(self, context: Context, deployment_id: str) -> FakeDeployment:
        if context.scope is None:
            raise GraphQLError("Not Authorized")
        found = next((d for d in self.deployments if d.id == deployment_id), None)
        if found is None:
            raise GraphQLError("Deployment not found")
        authorize(context, found.project_id, found.environment_id)
        return found

    def _require_known(self, input: Json) -> None:
        for key, known, kind in (
            ("projectId", self.project_id, "Project"),
            ("environmentId", self.environment_id, "Environment"),
            ("serviceId", self.service_id, "Service"),
        ):
            if input.get(key) is not None and input[key] != known:
                raise GraphQLError(f"{kind} not found")


class _Root:
    """The root value: graphql-core resolves each root field with the attribute of its name."""

    def __init__(self, fake: FakeRailway) -> None:
        self.deployments = fake._resolve_deployments
        self.deployment = fake._resolve_deployment
        self.deploymentRollback = fake._resolve_rollback
        self.serviceInstanceAutoDeployStatus = fake._resolve_auto_deploy
        self.serviceInstanceAutoDeployUpdate = fake._resolve_auto_deploy_update


def commit_of(tag: str) -> str:
    """Return the (made-up) commit hash a tag was built from."""
    return hashlib.sha1(tag.encode(), usedforsecurity=False).hexdigest()


def _take(failures: list[_Failure], fields: tuple[str, ...]) -> _Failure | None:
    """Use up one matching failure, if any."""
    for failure in failures:
        if failure.field is None or failure.field in fields:
            failure.times -= 1
            if failure.times <= 0:
                failures.remove(failure)
            return failure
    return None
