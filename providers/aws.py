"""The AWS boundary shared by the ECS and Lambda providers.

One boto3 client per provider, created lazily; every call in a thread under a timeout;
botocore's own retries off (reads are retried by `retrying`, a mutation never); every
botocore error translated into the provider error tree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.exceptions import (
    HTTPClientError as BotoHTTPClientError,
)
from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    AuthRejected,
    Conflicting,
    NotFound,
    ProviderError,
    RateLimited,
    Refused,
    TimedOut,
    Transient,
)
from providers.retry import retrying

log = structlog.get_logger(__name__)

T = TypeVar("T")
Json = dict[str, Any]

AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "AuthFailure",
    }
)
# The key is valid but lacks an IAM permission: a different fix than a bad key.
PERMISSION_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
NOT_FOUND_CODES = frozenset(
    {
        "ClusterNotFoundException",
        "ServiceNotFoundException",
        "ResourceNotFoundException",
        "ListenerNotFound",
        "TargetGroupNotFound",
        "LoadBalancerNotFound",
        "ImageNotFoundException",
        "RepositoryNotFoundException",
    }
)
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    }
)
CONFLICT_CODES = frozenset(
    {
        "ServiceNotActiveException",
        "UpdateInProgressException",
        "ResourceInUseException",
        "ResourceInUse",
        "ConflictException",
        # Lambda: another update of the function is in progress.
        "ResourceConflictException",
        # Lambda: the RevisionId sent no longer matches (the resource changed since read).
        "PreconditionFailedException",
    }
)
SERVER_CODES = frozenset(
    {
        "ServerException",
        "ServiceException",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
    }
)
# IAM names actions by these prefixes, not by boto3's service names.
IAM_PREFIXES = {"ecs": "ecs", "elbv2": "elasticloadbalancing", "ecr": "ecr", "lambda": "lambda"}


class _ReadTimedOut(Transient):
    """A read that got no answer in time: safe to ask again, unlike a mutation."""

    def __init__(self, timed_out: TimedOut) -> None:
        super().__init__(timed_out.message)
        self.timed_out = timed_out


# Docker's tag grammar: anything else in an image reference is not a version name.
class AwsSettings(BaseModel):
    """Where and how an AWS-backed provider reaches its API."""

    model_config = ConfigDict(extra="forbid")

    region: str = Field(description="AWS region, e.g. eu-west-1.")
    profile: str | None = Field(default=None, description="AWS profile; default: the usual chain.")
    endpoint_url: str | None = Field(
        default=None, description="Override the API endpoint (a VPC endpoint, moto in tests)."
    )
    api_timeout_seconds: float = Field(
        default=15, gt=0, description="Connect and read timeout of one AWS API call."
    )


class AwsApi:
    """One boto3 client, created on first use and reused; every call runs in a thread."""

    def __init__(self, service: str, settings: AwsSettings) -> None:
        self._service = service
        self._settings = settings
        self._client: Any = None
        self._creating = asyncio.Lock()

    async def call(self, what: str, operation: Callable[[Any], T]) -> T:
        """Run `operation(client)` once in a thread, translating botocore errors."""
        client = await self._get_client()
        # botocore's own timeouts end the thread; this one bounds the wait if they do not.
        deadline = self._settings.api_timeout_seconds * 2 + 5
        try:
            async with asyncio.timeout(deadline):
                return await asyncio.to_thread(operation, client)
        except TimeoutError as exc:
            raise TimedOut(f"{what}: AWS did not answer within {deadline:g} s.") from exc
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, what, IAM_PREFIXES.get(self._service)) from exc

    async def read(self, what: str, operation: Callable[[Any], T]) -> T:
        """Run a read, retrying transient failures, throttling and timeouts with backoff."""

        async def once() -> T:
            try:
                return await self.call(what, operation)
            except TimedOut as exc:
                raise _ReadTimedOut(exc) from exc

        try:
            return await retrying(once)
        except _ReadTimedOut as exc:
            raise exc.timed_out from exc.timed_out.__cause__

    async def aclose(self) -> None:
        """Close the client's connection pool."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _get_client(self) -> Any:
        async with self._creating:
            if self._client is None:
                # Loading botocore's service model takes a while: keep it off the loop.
                self._client = await asyncio.to_thread(self._new_client)
            return self._client

    def _new_client(self) -> Any:
        settings = self._settings
        config = Config(
            connect_timeout=min(5.0, settings.api_timeout_seconds),
            read_timeout=settings.api_timeout_seconds,
            # One attempt each: reads are retried by `retrying`, the mutation never.
            retries={"total_max_attempts": 1, "mode": "standard"},
        )
        try:
            session = boto3.session.Session(
                profile_name=settings.profile, region_name=settings.region
            )
            return session.client(self._service, endpoint_url=settings.endpoint_url, config=config)
        except ProfileNotFound as exc:
            raise Refused(f"AWS profile `{settings.profile}` is not configured here.") from exc
        except (BotoCoreError, ValueError) as exc:
            # e.g. an endpoint_url botocore cannot use.
            raise Refused(f"Cannot set up the AWS {self._service} client: {exc}") from exc


def translate(
    exc: ClientError | BotoCoreError, what: str, iam_prefix: str | None = None
) -> ProviderError:
    """Map a botocore error onto the provider error tree."""
    if isinstance(exc, ClientError):
        return _translate_client_error(exc, what, iam_prefix)
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return TimedOut(f"{what}: AWS did not answer in time ({type(exc).__name__}).")
    if isinstance(exc, BotoConnectionError | BotoHTTPClientError):
        return Transient(f"{what}: cannot reach AWS ({exc}).")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AuthRejected(f"{what}: no usable AWS credentials found ({exc}).")
    return Refused(f"{what}: {exc}")


def _translate_client_error(exc: ClientError, what: str, iam_prefix: str | None) -> ProviderError:
    error = exc.response.get("Error") or {}
    code = str(error.get("Code") or "")
    text = str(error.get("Message") or "").rstrip(".")
    status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    detail = f"{code}: {text}" if text else code
    if status >= 500 and (not code or code.isdigit()):
        # Not an AWS error document: a proxy, VPC endpoint or CDN answered with its own page.
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        return Transient(
            f"{what}: got an error page (HTTP {status} {reason}) from a proxy or gateway in "
            "front of AWS, not an answer from AWS."
        )
    if code in PERMISSION_CODES:
        action = f"{iam_prefix}:{exc.operation_name}" if iam_prefix else exc.operation_name
        return AuthRejected(
            f"{what}: AWS refused: {detail} (the credentials lack the permission for IAM "
            f"action {action})."
        )
    if code in AUTH_CODES or status in (401, 403):
        return AuthRejected(f"{what}: AWS rejected the credentials ({detail}).")
    lowered = text.lower()
    if code in NOT_FOUND_CODES or (
        code == "ClientException" and ("not found" in lowered or "unable to describe" in lowered)
    ):
        return NotFound(f"{what}: not found ({detail}).")
    if code in THROTTLING_CODES or status == 429:
        return RateLimited(
            f"{what}: AWS's rate limit throttled the request ({detail}).",
            retry_after=_retry_after(exc),
        )
    if code in SERVER_CODES or status >= 500:
        return Transient(f"{what}: AWS failed ({detail}, HTTP {status}).")
    if code in CONFLICT_CODES:
        return Conflicting(f"{what}: AWS reports a conflict with the resource's state ({detail}).")
    return Refused(f"{what}: AWS refused ({detail}).")


def _retry_after(exc: ClientError) -> float | None:
    """Seconds AWS asks to wait: Lambda sends Retry-After (botocore: retryAfterSeconds)."""
    headers = (exc.response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    value = exc.response.get("retryAfterSeconds") or headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    # A Retry-After far in the future is not worth honouring inside one read's deadline.
    return None if seconds is None or seconds < 0 else min(seconds, 60.0)
