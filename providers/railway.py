"""Railway provider: roll a service back to an earlier deployment via the GraphQL API.

What Railway documents, and this module relies on:

- One endpoint, ``POST https://backboard.railway.com/graphql/v2``. Account and workspace
  tokens go in ``Authorization: Bearer``, project tokens (scoped to one environment of one
  project) in ``Project-Access-Token``.
- ``deployments(input: {projectId, serviceId, environmentId}, first: N)`` lists a service's
  deployments; each has ``id status createdAt canRollback meta staticUrl``. ``meta`` is
  free-form JSON; it holds ``commitHash``/``commitMessage`` for repository deploys and
  ``image`` for image deploys.
- ``deploymentRollback(id: String!): Boolean!`` starts a new deployment from that
  deployment's image and custom variables; it does not say which deployment it created.
- A deployment goes INITIALIZING/QUEUED/WAITING -> BUILDING -> DEPLOYING -> SUCCESS (or
  FAILED; a running one may later crash: CRASHED). Once a newer one is live, older ones
  become REMOVING, then REMOVED: a deployment that served well yesterday reads REMOVED
  today. SLEEPING is a live deployment put to sleep by App Sleeping.
- Errors come back as HTTP 200 with ``errors: [{message, ...}]`` ("Not Authorized" for a
  token that may not see the resource); rate limits as HTTP 429 with Retry-After and
  ``X-RateLimit-Limit/Remaining/Reset`` (the public API reference's "Rate Limits").

Choices where the docs are silent, written down here:

- The list's order is not documented (Railway's own CLI sorts it), so it is sorted by
  ``createdAt``, newest first.
- "Running now" is the newest SUCCESS or SLEEPING deployment. The previous stable one is the
  newest older deployment Railway lets us roll back to (``canRollback``) that once served:
  SUCCESS, SLEEPING or REMOVED (superseded). The API cannot tell a deployment removed after
  serving from one removed after crashing; the verification after the rollback catches that.
- The new deployment is the newest one whose id was not in the list read just before the
  mutation: comparing ids needs no agreement between our clock and Railway's. When the
  mutation's answer is lost (a timeout, a closed connection, a 5xx or a proxy's page),
  the same comparison tells whether Railway started the rollback: if so it is followed,
  if not the error says so; it is never sent again.
- A GraphQL error whose message says "not authorized" is AuthRejected (as Railway's CLI
  reads it), one that says "not found" is NotFound, any other is Refused.

Versions are named by deployment id. A user may also name one by its commit's short sha
(7 characters) or its image tag when exactly one deployment Railway can roll back to carries
it; those aliases travel with the deployment's Version, so the engine accepts them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    AuthRejected,
    NotFound,
    Outcome,
    Plan,
    Progress,
    ProviderError,
    RateLimited,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
    Version,
    redact,
    say,
    sentence,
    state_or_unknown,
)
from providers.http import LazyClient, error_for, send, token_from
from providers.images import ImageRef
from providers.railway_watch import Pacer
from providers.retry import retrying, watching

log = structlog.get_logger(__name__)

Json = dict[str, Any]

LIVE = frozenset({"SUCCESS", "SLEEPING"})
ONCE_LIVE = LIVE | {"REMOVED"}
ENDED_BADLY = frozenset({"FAILED", "CRASHED", "REMOVED", "REMOVING", "SKIPPED"})
IN_FLIGHT = frozenset(
    {"QUEUED", "WAITING", "INITIALIZING", "BUILDING", "DEPLOYING", "NEEDS_APPROVAL"}
)
SHORT_SHA = 7
HEX = re.compile(r"[0-9a-f]{7,40}")
# Docker's tag grammar, which fits the versions chat may name.
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_ERROR_TEXT = 300
# Where each kind of token goes (workspace tokens are sent like account tokens).
TOKEN_HEADERS = {
    "project": ("Project-Access-Token", "{}"),
    "account": ("Authorization", "Bearer {}"),
}

DEPLOYMENTS_QUERY = """
query RollbotDeployments($input: DeploymentListInput!, $first: Int) {
  deployments(input: $input, first: $first) {
    edges { node { id status createdAt canRollback staticUrl meta } }
  }
}
"""
ROLLBACK_MUTATION = """
mutation RollbotDeploymentRollback($id: String!) {
  deploymentRollback(id: $id)
}
"""


class RailwaySettings(BaseModel):
    """Settings of a `railway` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["railway"]
    endpoint: str = Field(
        default="https://backboard.railway.com/graphql/v2", description="GraphQL endpoint."
    )
    token_env: str = Field(default="RAILWAY_TOKEN", description="Variable holding the token.")
    token_kind: Literal["project", "account"] = Field(
        default="project",
        description="project: Project-Access-Token header; account: Authorization bearer.",
    )
    project_id: str = Field(description="Railway project id.")
    service_id: str = Field(description="Railway service id.")
    environment_id: str = Field(description="Railway environment id.")
    poll_interval_seconds: float = Field(default=3, gt=0, description="Deployment status pace.")
    deploy_timeout_seconds: float = Field(
        default=600, gt=0, description="How long the new deployment may take to succeed."
    )
    request_timeout_seconds: float = Field(
        default=10, gt=0, description="Deadline of one GraphQL request."
    )
    history: int = Field(
        default=20, ge=2, le=100, description="How many recent deployments are read."
    )
    progress_interval_seconds: float = Field(
        default=5, ge=0, description="Least time between two progress lines while watching."
    )

    def secret_variables(self) -> dict[str, str]:
        """Name the variable that holds the token."""
        return {"token_env": self.token_env}


@dataclass(frozen=True)
class Deployment:
    """One Railway deployment as the API lists it."""

    id: str
    status: str
    created_at: datetime | None
    can_rollback: bool
    static_url: str | None = None
    meta: Json = field(default_factory=dict)

    @classmethod
    def parse(cls, node: Json) -> Deployment:
        """Build a deployment from a `deployments` edge node."""
        meta = node.get("meta")
        return cls(
            id=str(node["id"]),
            status=str(node.get("status") or "UNKNOWN"),
            created_at=_parse_time(node.get("createdAt")),
            can_rollback=bool(node.get("canRollback")),
            static_url=node.get("staticUrl") or None,
            meta=meta if isinstance(meta, dict) else {},
        )

    @property
    def commit(self) -> str:
        """Return the commit hash Railway recorded, lower case, or ''."""
        return str(self.meta.get("commitHash") or "").lower()

    @property
    def image(self) -> str:
        """Return the image Railway recorded, or ''."""
        return str(self.meta.get("image") or "")

    @property
    def image_tag(self) -> str:
        """Return the tag of the image, or '' when there is none worth naming."""
        if not self.image:
            return ""
        tag = ImageRef.parse(self.image).tag
        return tag if tag != "latest" and TAG.fullmatch(tag) else ""

    def aliases(self) -> list[str]:
        """Return the short names a user may give this deployment."""
        names = [self.commit[:SHORT_SHA]] if HEX.fullmatch(self.commit) else []
        if self.image_tag:
            names.append(self.image_tag)
        return names

    def answers_to(self, name: str) -> bool:
        """Return True when `name` is this deployment's short sha (or longer) or image tag."""
        lowered = name.lower()
        by_sha = HEX.fullmatch(lowered) is not None and self.commit.startswith(lowered)
        return by_sha or (bool(self.image_tag) and name == self.image_tag)

    def origin(self) -> str:
        """Say what the deployment runs: its commit and message, its image."""
        parts = []
        if self.commit:
            message = str(self.meta.get("commitMessage") or "").strip().splitlines()
            subject = f" “{message[0][:80]}”" if message else ""
            parts.append(f"commit {self.commit[:SHORT_SHA]}{subject}")
        if self.image:
            parts.append(f"image {self.image}")
        return ", ".join(parts) or "no commit or image recorded"

    def describe(self) -> str:
        """Say in one line which deployment this is."""
        return f"deployment {self.id} ({self.status}, {_created(self)}, {self.origin()})"


class RailwayProvider:
    """Roll a Railway service back to an earlier deployment and wait until it serves."""

    def __init__(self, settings: RailwaySettings) -> None:
        self._settings = settings
        self._client = LazyClient(settings.request_timeout_seconds)
        self._token = token_from(settings.token_env)

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the id of the deployment Railway serves now."""
        deployments = await self._deployments()
        current = _serving(deployments)
        if current is None:
            raise NotFound(self._nothing_serves(deployments))
        return current.id

    async def list_versions(self) -> list[Version]:
        """Return the service's deployments newest first, with their unambiguous aliases."""
        deployments = await self._deployments()
        current = _serving(deployments)
        previous = _previous_stable(deployments, current)
        return [
            _version(
                deployment,
                current,
                previous,
                tuple(
                    alias
                    for alias in deployment.aliases()
                    if _alias_of(alias, deployments, current) is deployment
                ),
            )
            for deployment in deployments
        ]

    async def plan(self, target: str) -> Plan:
        """Describe the rollback call and the wait, changing nothing."""
        deployments = await self._deployments()
        current = _serving(deployments)
        chosen = self._candidate(target, deployments, current)
        created = _created(chosen)
        steps = [
            f"Call deploymentRollback({chosen.id}) ({created}, {chosen.origin()}), then wait up "
            f"to {self._settings.deploy_timeout_seconds:g} s for the new deployment to reach "
            "SUCCESS."
        ]
        warnings = [
            "Railway restores the deployment's image and its custom variables as they were "
            "then: variables changed since are reverted too."
        ]
        if chosen.status not in ONCE_LIVE:
            warnings.append(f"Deployment {chosen.id} ended {chosen.status}; it may not run.")
        if current is not None and chosen.origin() == current.origin():
            warnings.append(
                f"It runs what Railway serves now ({current.origin()}); only the variables "
                "would change."
            )
        warnings += [
            f"Deployment {d.id} ({d.status}, {_created(d)}) is newer than the one running; if it "
            "finishes it replaces the rollback."
            for d in _newer_in_flight(deployments, current)
        ]
        return Plan(steps=steps, warnings=warnings)

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Call deploymentRollback once, then follow the new deployment until it serves."""
        started = time.monotonic()
        deployments = await self._deployments()
        chosen = self._candidate(target, deployments, _serving(deployments))
        known = {d.id for d in deployments}
        await say(progress, f"Asking Railway to roll back to {chosen.describe()}…")
        await self._send_rollback(chosen, known)
        await say(progress, "Railway accepted the rollback; waiting for its new deployment…")
        new = await self._follow_new_deployment(known, chosen, progress)
        log.info(
            "railway.rollback",
            target=chosen.id,
            deployment=new.id,
            seconds=round(time.monotonic() - started, 2),
        )
        notes = [f"Its URL: https://{new.static_url}"] if new.static_url else []
        return Outcome(
            summary=f"Railway serves deployment {new.id} ({new.status}), a rollback to "
            f"deployment {chosen.id} ({chosen.origin()}).",
            notes=notes,
        )

    async def describe_state(self) -> str:
        """Say which deployment Railway serves now, asked from Railway."""
        deployments = await self._deployments()
        current = _serving(deployments)
        text = (
            f"Railway serves {current.describe()}" if current else self._nothing_serves(deployments)
        )
        pending = "; ".join(
            f"deployment {d.id} is {d.status}" for d in _newer_in_flight(deployments, current)
        )
        return f"{text}; {pending}" if pending else text

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    # -- GraphQL calls ----------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        """Return the one HTTP client, created on first use."""
        return self._client.get()

    def _auth_headers(self) -> dict[str, str]:
        """Return the header that carries the token, reading the variable again if unset."""
        if self._token is None:
            self._token = token_from(self._settings.token_env)
        if self._token is None:
            raise Refused(
                f"{self._settings.token_env} is not set: rollbot has no Railway token to use."
            )
        header, template = TOKEN_HEADERS[self._settings.token_kind]
        return {header: template.format(self._token.get_secret_value())}

    async def _graphql(self, query: str, variables: Json, what: str) -> Json:
        """Send one GraphQL request and return its data; errors become provider errors."""
        body = {"query": query, "variables": variables, "operationName": _operation(query)}
        response = await send(
            self._http(),
            "POST",
            self._settings.endpoint,
            what=what,
            json=body,
            headers=self._auth_headers(),
        )
        payload = _json_or_none(response)
        errors = (payload or {}).get("errors")
        if response.status_code != httpx.codes.OK:
            raise error_for(response, what, self._redact(_first_message(errors)))
        if payload is None:
            raise Transient(f"{what}: Railway answered with something that is not JSON.")
        if errors:
            raise self._graphql_error(errors, what)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise Transient(f"{what}: Railway answered without data.")
        return data

    def _graphql_error(self, errors: Any, what: str) -> ProviderError:
        """Map GraphQL errors onto the provider error tree."""
        messages = [self._redact(m) for m in _messages(errors)]
        text = "; ".join(messages)[:MAX_ERROR_TEXT] or "an error without a message"
        lowered = text.lower()
        if "not authorized" in lowered or "unauthorized" in lowered:
            settings = self._settings
            return AuthRejected(
                f"{what}: Railway said “{text}”. Check that {settings.token_env} holds a "
                f"{settings.token_kind} token that may see project {settings.project_id}, "
                f"environment {settings.environment_id}."
            )
        if "not found" in lowered:
            return NotFound(f"{what}: Railway said “{text}”.")
        return Refused(f"{what}: Railway refused: {text}")

    def _redact(self, text: str) -> str:
        """Keep the token out of any text Railway sends back."""
        return redact(text, self._token.get_secret_value() if self._token else None)

    async def _deployments(self, *, retry: bool = True) -> list[Deployment]:
        """Read the service's recent deployments, newest first (a read: retried)."""
        settings = self._settings
        variables = {
            "input": {
                "projectId": settings.project_id,
                "serviceId": settings.service_id,
                "environmentId": settings.environment_id,
            },
            "first": settings.history,
        }
        what = (
            f"Reading the Railway deployments of service {settings.service_id} "
            f"in environment {settings.environment_id}"
        )
        data = (
            await retrying(lambda: self._graphql(DEPLOYMENTS_QUERY, variables, what), timeouts=True)
            if retry
            else await self._graphql(DEPLOYMENTS_QUERY, variables, what)
        )
        edges = (data.get("deployments") or {}).get("edges") or []
        found = [Deployment.parse(edge["node"]) for edge in edges if edge.get("node")]
        return sorted(found, key=_newest_first)

    async def _send_rollback(self, chosen: Deployment, known: set[str]) -> None:
        """Call deploymentRollback exactly once: a retry could roll back twice."""
        what = f"Railway deploymentRollback({chosen.id})"
        try:
            data = await self._graphql(ROLLBACK_MUTATION, {"id": chosen.id}, what)
        except RateLimited as exc:
            raise RateLimited(
                f"{sentence(exc.message)} Nothing was changed.",
                retry_after=exc.retry_after,
                target_state=await self._state_or_unknown(),
            ) from exc
        except (Transient, TimedOut) as exc:
            if await self._started_anyway(chosen, known, exc):
                return
            raise
        except ProviderError as exc:
            raise type(exc)(
                f"{sentence(exc.message)} Nothing was changed.",
                target_state=await self._state_or_unknown(),
            ) from exc
        if data.get("deploymentRollback") is not True:
            raise Refused(
                f"{what}: Railway answered false; it did not roll back.",
                target_state=await self._state_or_unknown(),
            )

    async def _started_anyway(
        self, chosen: Deployment, known: set[str], error: ProviderError
    ) -> bool:
        """After a lost answer, ask Railway whether the rollback started; never resend it."""
        try:
            fresh = [d for d in await self._deployments() if d.id not in known]
        except ProviderError as exc:
            raise type(error)(
                f"{sentence(error.message)} It was sent once and not sent again (a retry could "
                f"roll back twice); whether Railway started it is unknown ({exc.message}): "
                "check the service's deployments in Railway before retrying.",
                target_state=f"unknown (Railway could not be asked: {exc.message})",
            ) from error
        if any(d.origin() == chosen.origin() for d in fresh):
            log.warning("railway.rollback_answer_lost_but_started", error=error.message)
            return True
        raise type(error)(
            f"{sentence(error.message)} Railway shows no new deployment of {chosen.origin()}: "
            "the rollback did not start, and it was not sent again (a retry could roll back "
            "twice).",
            target_state=await self._state_or_unknown(),
        ) from error

    async def _follow_new_deployment(
        self, known: set[str], chosen: Deployment, progress: Progress
    ) -> Deployment:
        """Poll until the deployment the rollback created serves, fails, or time runs out."""
        settings = self._settings
        pacer = Pacer(progress, settings.progress_interval_seconds)
        new: Deployment | None = None

        async def check() -> Deployment | None:
            nonlocal new
            try:
                listed = await self._deployments(retry=False)
            except (Transient, TimedOut):
                raise
            except ProviderError as exc:
                raise type(exc)(
                    "Railway accepted the rollback, but its progress could not be read: "
                    f"{sentence(exc.message)} It may still finish.",
                    target_state=await self._state_or_unknown(),
                ) from exc
            fresh = [d for d in listed if d.id not in known]
            if not fresh:
                return None
            new = fresh[0]
            ended = new.status in LIVE or new.status in ENDED_BADLY
            await pacer.report(_status_line(new), final=ended)
            if new.status in LIVE:
                return new
            if new.status in ENDED_BADLY:
                raise RollbackFailed(
                    f"Railway's new deployment {new.id} (the rollback to deployment "
                    f"{chosen.id}) ended {new.status}.",
                    target_state=await self._state_or_unknown(),
                )
            await pacer.tick()
            return None

        async def trouble(error: ProviderError) -> None:
            await pacer.report(f"{error.message}; still waiting.")

        async def late() -> ProviderError:
            return TimedOut(
                _timeout_text(new, settings.deploy_timeout_seconds),
                target_state=await self._state_or_unknown(),
            )

        return await watching(
            check,
            deadline_seconds=settings.deploy_timeout_seconds,
            interval=settings.poll_interval_seconds,
            trouble=trouble,
            late=late,
        )

    # -- helpers ----------------------------------------------------------------------------

    def _candidate(
        self, target: str, deployments: Sequence[Deployment], current: Deployment | None
    ) -> Deployment:
        """Return the deployment `target` names, refusing one Railway cannot roll back to."""
        chosen = _resolves_to(target, deployments, current)
        if chosen is None:
            raise NotFound(
                f"No deployment `{target}` among the last {len(deployments)} of Railway service "
                f"{self._settings.service_id} in this environment (a deployment id, a short "
                "commit sha or an image tag is accepted)."
            )
        if current is not None and chosen.id == current.id:
            raise Refused(f"`{target}` is {chosen.describe()}, which Railway serves now.")
        if not chosen.can_rollback:
            raise Refused(
                f"Railway does not allow rolling back to {chosen.describe()}: its canRollback is "
                "false (older than the plan's retention, or it never built)."
            )
        return chosen

    def _nothing_serves(self, deployments: Sequence[Deployment]) -> str:
        tail = f"; the newest is {deployments[0].describe()}" if deployments else ""
        return (
            f"Railway serves no deployment of service {self._settings.service_id} in environment "
            f"{self._settings.environment_id} (none is SUCCESS){tail}"
        )

    async def _state_or_unknown(self) -> str:
        """Describe the state for an error message without raising a second error."""
        return await state_or_unknown(self.describe_state)


def _operation(query: str) -> str:
    """Return the operation name a query declares (Railway's logs show it)."""
    match = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
    return match.group(1) if match else ""


def _json_or_none(response: httpx.Response) -> Json | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _messages(errors: Any) -> list[str]:
    if not isinstance(errors, list):
        return []
    return [str(e.get("message") or "") for e in errors if isinstance(e, dict)]


def _first_message(errors: Any) -> str:
    return next(iter(_messages(errors)), "")[:MAX_ERROR_TEXT]


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _newest_first(deployment: Deployment) -> float:
    created = deployment.created_at
    return -created.timestamp() if created else 0.0


def _created(deployment: Deployment) -> str:
    created = deployment.created_at
    return f"created {created:%Y-%m-%d %H:%M} UTC" if created else "creation time unknown"


def _serving(deployments: Sequence[Deployment]) -> Deployment | None:
    """Return the newest live deployment."""
    return next((d for d in deployments if d.status in LIVE), None)


def _created_before(first: Deployment, second: Deployment) -> bool:
    if first.created_at is None or second.created_at is None:
        return False
    return first.created_at < second.created_at


def _previous_stable(
    deployments: Sequence[Deployment], current: Deployment | None
) -> Deployment | None:
    """Return the newest older deployment that once served and can be rolled back to."""
    return next(
        (
            d
            for d in deployments
            if d.can_rollback
            and d.status in ONCE_LIVE
            and (current is None or _created_before(d, current))
        ),
        None,
    )


def _newer_in_flight(
    deployments: Sequence[Deployment], current: Deployment | None
) -> list[Deployment]:
    """Return deployments still on their way that would replace the one running."""
    return [
        d
        for d in deployments
        if d.status in IN_FLIGHT and (current is None or _created_before(current, d))
    ]


def _resolves_to(
    name: str, deployments: Sequence[Deployment], current: Deployment | None
) -> Deployment | None:
    """Return the deployment a name means; refuse an alias that fits several."""
    by_id = next((d for d in deployments if d.id == name), None)
    if by_id is not None:
        return by_id
    matches = [d for d in deployments if d.answers_to(name)]
    # Only deployments we could roll back to compete: a failed build of the same commit
    # does not make its alias ambiguous.
    eligible = [d for d in matches if d.can_rollback and d is not current]
    if len(eligible) > 1:
        ids = ", ".join(d.id for d in eligible)
        raise Refused(f"`{name}` fits several Railway deployments ({ids}); name one by its id.")
    if eligible:
        return eligible[0]
    # Nothing eligible: hand back the match, so the caller can say why it is refused.
    return matches[0] if matches else None


def _version(
    deployment: Deployment,
    current: Deployment | None,
    previous: Deployment | None,
    aliases: tuple[str, ...],
) -> Version:
    """Return a deployment as a version named by its id."""
    detail = f"{deployment.status}, {_created(deployment)}, {deployment.origin()}"
    if not deployment.can_rollback:
        detail += "; Railway cannot roll back to it (canRollback: false)"
    return Version(
        name=deployment.id,
        created_at=deployment.created_at,
        current=deployment is current,
        previous_stable=deployment is previous,
        detail=detail,
        aliases=aliases,
    )


def _alias_of(
    alias: str, deployments: Sequence[Deployment], current: Deployment | None
) -> Deployment | None:
    """Return the deployment an alias resolves to, or None when it is ambiguous."""
    try:
        return _resolves_to(alias, deployments, current)
    except Refused:
        return None


def _status_line(deployment: Deployment) -> str:
    if deployment.status == "NEEDS_APPROVAL":
        return (
            f"New deployment {deployment.id} waits for someone to approve it in the Railway "
            "dashboard."
        )
    return f"New deployment {deployment.id}: {deployment.status}."


def _timeout_text(new: Deployment | None, seconds: float) -> str:
    if new is None:
        return f"No new Railway deployment appeared within {seconds:g} s of deploymentRollback."
    return f"Railway's new deployment {new.id} is still {new.status} after {seconds:g} s."
