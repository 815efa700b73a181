"""A stand-in AWS endpoint in front of moto: AWS's bad days and the states moto cannot reach.

ECS and ELBv2 calls are a POST to `/`; the operation is in the `X-Amz-Target` header (ECS's
JSON protocol) or the `Action=` form field (ELBv2's query protocol). Lambda's REST-JSON
protocol names the operation by method and path (``PUT /2015-03-31/functions/F/aliases/A``
is UpdateAlias): `LAMBDA_ROUTES` maps them back to operation names. So `tests.support.faults`'
`FaultProxy`, which picks requests by path, cannot single out one operation, and its JSON
bodies are not AWS errors: botocore would read them as code "401" or "500". This endpoint
picks calls by operation and answers in the shapes AWS documents for each protocol:

- errors as ``{"__type": code, "message": ...}`` with ``x-amzn-ErrorType`` (JSON), an
  ``<ErrorResponse><Error><Type/><Code/><Message/>`` document (query) or Lambda's
  ``{"Type": "User", "message": ...}`` with ``x-amzn-ErrorType`` and the HTTP status of
  each error in the Lambda API reference (REST), with AWS's own
  codes: ``UnrecognizedClientException``/``InvalidClientTokenId`` for a bad key,
  ``AccessDeniedException``/``AccessDenied`` naming the IAM action for a missing
  permission, ``ThrottlingException``/``Throttling`` "Rate exceeded" (AWS's only
  throttling shape, HTTP 400, no Retry-After), ``ClusterNotFoundException``,
  ``ListenerNotFound``, ``ConflictException``/``ResourceInUse``, ``ServerException``/
  ``InternalFailure`` with HTTP 500; for Lambda ``TooManyRequestsException`` (HTTP 429
  with ``Retry-After`` and ``Reason: CallerRateLimitExceeded``), ``AccessDeniedException``
  (403) naming ``lambda:<Operation>``, ``ResourceNotFoundException`` (404),
  ``ResourceConflictException`` (409) and ``ServiceException`` (500);
- a CDN or proxy's HTML 502 page, a request held past the client's timeout, and a
  connection closed with no answer, as `FaultProxy` sends them;
- an accepted change that did not stick (an empty success), and a change applied whose
  answer is lost on the way back (the connection drops after moto applied it).

moto reports every registered target `healthy` and has no health checks, and its ECS
deployments never fail, roll back or log events. So a test can script
`DescribeTargetHealth` (per target group, one answer per call, the last one repeating;
states and reasons as in the ELBv2 API reference's TargetHealth: ``initial``/
``Elb.RegistrationInProgress``, ``unhealthy``/``Target.ResponseCodeMismatch``,
``unused``/``Target.NotInUse``, ...) and edit `DescribeServices` answers (deployments
with ``rolloutState`` FAILED and "ECS deployment circuit breaker: rolling back to
deploymentId ecs-svc/..." reasons, service events), as AWS answers on such a day.

moto accepts and ignores UpdateAlias's ``RevisionId`` and never changes an alias's
RevisionId. Lambda documents that every change of an alias gives it a new RevisionId and
that UpdateAlias with a stale one fails with HTTP 412 ``PreconditionFailedException``
("The RevisionId provided does not match the latest RevisionId ..."). The stand-in
reproduces that: the RevisionId it shows is a digest of the alias's version, routing and
description (so any change, even one made on moto directly, gives a new one), and it
refuses an UpdateAlias whose RevisionId differs from the alias's as moto holds it then.
`before(action, change)` makes a change just before a call goes on (a concurrent edit),
and `edit(action, ...)` edits a call's JSON answer (a version's ``State: Failed``, which
moto never reports).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from tests.support.faults import CLOUDFLARE_502, Fault

Json = dict[str, Any]
JSON_TYPE = "application/x-amz-json-1.1"
_FUNCTION = r"/2015-03-31/functions/[^/]+"
# Lambda's REST operations: (method, path pattern, operation name).
LAMBDA_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), name)
    for method, pattern, name in (
        ("POST", r"/2015-03-31/functions/?", "CreateFunction"),
        ("GET", rf"{_FUNCTION}/aliases/[^/]+", "GetAlias"),
        ("PUT", rf"{_FUNCTION}/aliases/[^/]+", "UpdateAlias"),
        ("GET", rf"{_FUNCTION}/aliases/?", "ListAliases"),
        ("POST", rf"{_FUNCTION}/aliases/?", "CreateAlias"),
        ("GET", rf"{_FUNCTION}/versions/?", "ListVersionsByFunction"),
        ("POST", rf"{_FUNCTION}/versions/?", "PublishVersion"),
        ("GET", rf"{_FUNCTION}/configuration/?", "GetFunctionConfiguration"),
        ("PUT", rf"{_FUNCTION}/configuration/?", "UpdateFunctionConfiguration"),
        ("PUT", rf"{_FUNCTION}/code/?", "UpdateFunctionCode"),
        ("GET", rf"{_FUNCTION}/?", "GetFunction"),
    )
)
ALIAS_ANSWERS = frozenset({"GetAlias", "UpdateAlias", "CreateAlias"})


class Protocol(StrEnum):
    """How a service's calls name their operation and shape their errors."""

    JSON = "json"  # ECS: X-Amz-Target
    QUERY = "query"  # ELBv2: Action=
    REST = "rest"  # Lambda: method and path


def lambda_action(method: str, path: str) -> str | None:
    """Name the Lambda operation a REST request calls, or None when it is not Lambda's."""
    return next(
        (name for m, pattern, name in LAMBDA_ROUTES if m == method and pattern.fullmatch(path)),
        None,
    )


def alias_revision(alias: Json) -> str:
    """A RevisionId that changes whenever the alias's version, routing or description does."""
    seen = {k: alias.get(k) for k in ("FunctionVersion", "RoutingConfig", "Description")}
    digest = hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


ELBV2_NS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
ACCOUNT = "123456789012"
# (state, reason, description) of one target, as describe_target_health reports it.
Health = tuple[str, str | None, str | None]
# Target states and reasons as the ELBv2 API reference's TargetHealth lists them.
HEALTHY: Health = ("healthy", None, None)
INITIAL: Health = ("initial", "Elb.RegistrationInProgress", "Target registration is in progress")
MISMATCH: Health = (
    "unhealthy",
    "Target.ResponseCodeMismatch",
    "Health checks failed with these codes: [502]",
)
TIMED_OUT: Health = ("unhealthy", "Target.Timeout", "Request timed out")
NOT_IN_USE: Health = (
    "unused",
    "Target.NotInUse",
    "Target group is not configured to receive traffic from the load balancer",
)


@dataclass
class Rule:
    """Answer `action` (None: any) with `fault` or `error`, after letting `after` through."""

    action: str | None
    fault: Fault | None = None
    error: tuple[int, str, str] | None = None
    delay: float = 0.0
    times: int | None = None
    after: int = 0
    lose_answer: bool = False

    def applies(self, action: str) -> bool:
        """Return True (and count it) when this rule answers the call."""
        if self.action is not None and self.action != action:
            return False
        if self.after > 0:
            self.after -= 1
            return False
        if self.times is not None:
            if self.times <= 0:
                return False
            self.times -= 1
        return True


class AwsStandIn:
    """Listens on 127.0.0.1 and passes calls on to moto unless a rule or a script answers."""

    def __init__(self, upstream: str, *, hang_seconds: float = 5.0) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self.server = TestServer(app, host="127.0.0.1")
        self.upstream = upstream
        self.hang_seconds = hang_seconds
        self.actions: list[str] = []  # every operation that reached the endpoint, in order
        self.intercepted: list[str] = []  # the ones a rule answered
        self._rules: list[Rule] = []
        self._health: dict[str, list[list[Health]]] = {}
        self._service_edits: list[Callable[[Json], None]] = []
        self._edits: dict[str, list[Callable[[Json], None]]] = {}
        self._before: dict[str, list[Callable[[], object]]] = {}

    @property
    def endpoint_url(self) -> str:
        """The URL to give a provider as `endpoint_url`."""
        return str(self.server.make_url("")).rstrip("/")

    @property
    def requests(self) -> int:
        """How many calls reached the endpoint."""
        return len(self.actions)

    def inject(
        self, fault: Fault, *, action: str | None = None, times: int | None = 1, after: int = 0
    ) -> None:
        """Answer `action` with `fault` in AWS's shape, `times` times, after `after` calls."""
        self._rules.append(Rule(action, fault=fault, times=times, after=after))

    def fail(
        self,
        status: int,
        code: str,
        message: str,
        *,
        action: str | None = None,
        delay: float = 0.0,
        times: int | None = None,
    ) -> None:
        """Answer `action` with this AWS error (after `delay` seconds)."""
        self._rules.append(Rule(action, error=(status, code, message), delay=delay, times=times))

    def swallow(self, action: str) -> None:
        """Accept `action` with an empty success and change nothing."""
        self._rules.append(Rule(action))

    def lose_answer(self, action: str, *, times: int | None = 1) -> None:
        """Let moto apply `action`, then drop the connection before the answer gets back."""
        self._rules.append(Rule(action, times=times, lose_answer=True))

    def target_health(self, target_group_arn: str, *answers: list[Health]) -> None:
        """Script describe_target_health of a group: one answer per call, the last repeats."""
        self._health[target_group_arn] = list(answers)

    def edit_services(self, edit: Callable[[Json], None]) -> None:
        """Change each service in describe_services answers in place (deployments, events)."""
        self._service_edits.append(edit)

    def edit(self, action: str, edit: Callable[[Json], None]) -> None:
        """Change the JSON answers of `action` in place (e.g. a Lambda version's State)."""
        self._edits.setdefault(action, []).append(edit)

    def before(self, action: str, change: Callable[[], object]) -> None:
        """Run `change` (once, in a thread) just before the next `action` call goes on."""
        self._before.setdefault(action, []).append(change)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        action, protocol = self._operation(request, body)
        self.actions.append(action)
        rule = next((r for r in self._rules if r.applies(action)), None)
        if rule is not None and not rule.lose_answer:
            self.intercepted.append(action)
            return await self._ruled(request, rule, action, protocol)
        for change in self._before.pop(action, []):
            await asyncio.to_thread(change)
        if action == "DescribeTargetHealth":
            arn = (parse_qs(body.decode()).get("TargetGroupArn") or [""])[0]
            if arn in self._health:
                return await self._scripted_health(request, body, arn)
        if action == "UpdateAlias" and (stale := await self._stale_revision(request, body)):
            self.intercepted.append(action)
            return error_response(412, "PreconditionFailedException", stale, protocol=protocol)
        status, payload, content_type = await self._forward(request, body)
        if rule is not None:
            self.intercepted.append(action)
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("the answer was lost on its way back")
        if 200 <= status < 300:  # moto answers GetAlias with 201
            payload = self._edited(action, payload)
        return web.Response(status=status, body=payload, headers={"Content-Type": content_type})

    @staticmethod
    def _operation(request: web.Request, body: bytes) -> tuple[str, Protocol]:
        if request.content_type == JSON_TYPE:
            return request.headers.get("X-Amz-Target", "").rpartition(".")[2], Protocol.JSON
        lambda_name = lambda_action(request.method, request.path)
        if lambda_name is not None:
            return lambda_name, Protocol.REST
        return (parse_qs(body.decode()).get("Action") or [""])[0], Protocol.QUERY

    def _edited(self, action: str, payload: bytes) -> bytes:
        """Apply the service edits, the answer edits and Lambda's alias RevisionIds."""
        edits = self._edits.get(action, [])
        services = action == "DescribeServices" and bool(self._service_edits)
        if not (edits or services or action in ALIAS_ANSWERS):
            return payload
        answer = json.loads(payload)
        for service in answer.get("services") or [] if services else []:
            for edit_service in self._service_edits:
                edit_service(service)
        for edit in edits:
            edit(answer)
        if action in ALIAS_ANSWERS:
            answer["RevisionId"] = alias_revision(answer)
        return json.dumps(answer).encode()

    async def _stale_revision(self, request: web.Request, body: bytes) -> str | None:
        """Return Lambda's refusal when UpdateAlias's RevisionId is not the alias's now."""
        sent = (json.loads(body or b"{}") or {}).get("RevisionId")
        if not sent:
            return None
        async with (
            ClientSession() as session,
            session.get(self.upstream + request.path, headers=_signed_headers(request)) as got,
        ):
            if got.status >= 300:
                return None  # moto answers the update with its own error
            alias = await got.json(content_type=None)
        if alias_revision(alias) == sent:
            return None
        return (
            "The Revision Id provided does not match the latest Revision Id. Call the "
            "GetAlias API to retrieve the latest Revision Id"
        )

    async def _ruled(
        self, request: web.Request, rule: Rule, action: str, protocol: Protocol
    ) -> web.StreamResponse:
        if rule.delay:
            await asyncio.sleep(rule.delay)
        if rule.fault is Fault.TIMEOUT:
            await asyncio.sleep(self.hang_seconds)
            return web.Response(status=504, text="held too long")
        if rule.fault is Fault.RESET:
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("the stand-in reset the connection")
        if rule.fault is Fault.BAD_GATEWAY_HTML:
            return web.Response(status=502, text=CLOUDFLARE_502, content_type="text/html")
        error = rule.error
        if rule.fault is not None:
            error = aws_error(rule.fault, action, protocol)
        if error is None:
            if protocol is Protocol.JSON:
                return web.json_response({}, content_type=JSON_TYPE)
            if protocol is Protocol.REST:
                return web.json_response({})
            return web.Response(
                text=f"<{action}Response><{action}Result/></{action}Response>",
                content_type="text/xml",
            )
        return error_response(*error, protocol=protocol)

    async def _scripted_health(
        self, request: web.Request, body: bytes, arn: str
    ) -> web.StreamResponse:
        """Answer with moto's registered targets, each in the scripted state."""
        status, payload, _ = await self._forward(request, body)
        if status != 200:
            return web.Response(status=status, body=payload, content_type="text/xml")
        targets = re.findall(rb"<Target>.*?</Target>", payload, flags=re.S)
        script = self._health[arn]
        states = script.pop(0) if len(script) > 1 else script[0]
        members = "".join(
            f"<member>{target.decode()}<TargetHealth>{_health_xml(health)}</TargetHealth></member>"
            for target, health in zip(targets, states, strict=False)
        )
        xml = (
            f'<DescribeTargetHealthResponse xmlns="{ELBV2_NS}"><DescribeTargetHealthResult>'
            f"<TargetHealthDescriptions>{members}</TargetHealthDescriptions>"
            "</DescribeTargetHealthResult><ResponseMetadata><RequestId>stand-in</RequestId>"
            "</ResponseMetadata></DescribeTargetHealthResponse>"
        )
        return web.Response(text=xml, content_type="text/xml")

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, bytes, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            ClientSession() as session,
            session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as upstream,
        ):
            content_type = upstream.headers.get("Content-Type", "text/xml")
            return upstream.status, await upstream.read(), content_type


def _health_xml(health: Health) -> str:
    state, reason, description = health
    parts = [f"<State>{state}</State>"]
    if reason:
        parts.append(f"<Reason>{escape(reason)}</Reason>")
    if description:
        parts.append(f"<Description>{escape(description)}</Description>")
    return "".join(parts)


def _signed_headers(request: web.Request) -> dict[str, str]:
    """The caller's headers for a read of the same path (moto does not check signatures)."""
    kept = ("authorization", "x-amz-date", "x-amz-security-token")
    return {k: v for k, v in request.headers.items() if k.lower() in kept}


def aws_error(fault: Fault, action: str, protocol: Protocol) -> tuple[int, str, str]:
    """Return (status, code, message) as ECS (JSON), ELBv2 (query) or Lambda (REST) answers."""
    if protocol is Protocol.REST:
        return lambda_error(fault, action)
    json_protocol = protocol is Protocol.JSON
    iam = f"{'ecs' if json_protocol else 'elasticloadbalancing'}:{action}"
    user = f"arn:aws:iam::{ACCOUNT}:user/rollbot"
    if fault is Fault.UNAUTHORIZED:
        message = "The security token included in the request is invalid."
        if json_protocol:
            return 400, "UnrecognizedClientException", message
        return 403, "InvalidClientTokenId", message
    if fault is Fault.FORBIDDEN:
        message = (
            f"User: {user} is not authorized to perform: {iam} on resource: * because no "
            f"identity-based policy allows the {iam} action"
        )
        return (
            (400, "AccessDeniedException", message)
            if json_protocol
            else (
                403,
                "AccessDenied",
                message,
            )
        )
    if fault in (Fault.FORBIDDEN_RATE_LIMIT, Fault.RATE_LIMITED):
        return 400, "ThrottlingException" if json_protocol else "Throttling", "Rate exceeded"
    if fault is Fault.NOT_FOUND:
        if json_protocol:
            return 400, "ClusterNotFoundException", "Cluster not found."
        if "TargetGroup" in action or action == "DescribeTargetHealth":
            return 400, "TargetGroupNotFound", "One or more target groups not found"
        return 400, "ListenerNotFound", "One or more listeners not found"
    if fault is Fault.CONFLICT:
        if json_protocol:
            return (
                400,
                "ConflictException",
                "The request could not be processed because of conflict in the current "
                "state of the resource.",
            )
        return 400, "ResourceInUse", "A specified resource is in use."
    if fault is Fault.SERVER_ERROR:
        if json_protocol:
            return 500, "ServerException", "Service Unavailable. Please try again later."
        return 500, "InternalFailure", "An internal error has occurred."
    raise AssertionError(f"{fault} has no AWS error body")  # pragma: no cover


def lambda_error(fault: Fault, action: str) -> tuple[int, str, str]:
    """Return (status, code, message) as the Lambda API reference lists them for `fault`."""
    function = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:checkout"
    if fault is Fault.UNAUTHORIZED:
        message = "The security token included in the request is invalid."
        return 403, "UnrecognizedClientException", message
    if fault is Fault.FORBIDDEN:
        iam = f"lambda:{action}"
        return (
            403,
            "AccessDeniedException",
            f"User: arn:aws:iam::{ACCOUNT}:user/rollbot is not authorized to perform: {iam} "
            f"on resource: {function} because no identity-based policy allows the {iam} action",
        )
    if fault in (Fault.FORBIDDEN_RATE_LIMIT, Fault.RATE_LIMITED):
        return 429, "TooManyRequestsException", "Rate exceeded"
    if fault is Fault.NOT_FOUND:
        return 404, "ResourceNotFoundException", f"Function not found: {function}"
    if fault is Fault.CONFLICT:
        return (
            409,
            "ResourceConflictException",
            "The operation cannot be performed at this time. An update is in progress for "
            f"resource: {function}",
        )
    if fault is Fault.SERVER_ERROR:
        return 500, "ServiceException", "An internal error occurred. Please try again."
    raise AssertionError(f"{fault} has no AWS error body")  # pragma: no cover


def error_response(status: int, code: str, message: str, *, protocol: Protocol) -> web.Response:
    """An AWS error in the caller's protocol."""
    if protocol is Protocol.REST:
        body: Json = {"Type": "Service" if status >= 500 else "User", "message": message}
        headers = {"x-amzn-ErrorType": code}
        if code == "TooManyRequestsException":
            # Lambda's throttle: HTTP 429, the wait in Retry-After, the cause in Reason.
            body["Reason"] = "CallerRateLimitExceeded"
            headers["Retry-After"] = "1"
        return web.json_response(body, status=status, headers=headers)
    if protocol is Protocol.JSON:
        return web.Response(
            status=status,
            text=json.dumps({"__type": code, "message": message}),
            content_type=JSON_TYPE,
            headers={"x-amzn-ErrorType": code},
        )
    side = "Receiver" if status >= 500 else "Sender"
    xml = (
        f'<ErrorResponse xmlns="{ELBV2_NS}"><Error><Type>{side}</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>stand-in</RequestId>"
        "</ErrorResponse>"
    )
    return web.Response(status=status, text=xml, content_type="text/xml")
