"""Health verification after a rollback: http, postgres, redis and tcp checks."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _CheckBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name shown in the verification table.")
    timeout_seconds: float = Field(default=5, gt=0, description="Timeout of one attempt.")


class HttpCheck(_CheckBase):
    """GET a URL and accept some status codes, optionally requiring a body substring."""

    type: Literal["http"]
    url: str = Field(description="http(s) URL to GET.")
    expect_status: list[int] = Field(default=[200], description="Accepted status codes.")
    body_contains: str | None = Field(default=None, description="Substring the body must hold.")


class PostgresCheck(_CheckBase):
    """Run `SELECT 1` against a database whose DSN is in an environment variable."""

    type: Literal["postgres"]
    dsn_env: str = Field(default="DATABASE_URL", description="Variable holding the DSN.")


class RedisCheck(_CheckBase):
    """PING a Redis whose URL is in an environment variable."""

    type: Literal["redis"]
    url_env: str = Field(default="REDIS_URL", description="Variable holding the Redis URL.")


class TcpCheck(_CheckBase):
    """Open a TCP connection."""

    type: Literal["tcp"]
    host: str
    port: int = Field(ge=1, le=65535)


Check = Annotated[HttpCheck | PostgresCheck | RedisCheck | TcpCheck, Field(discriminator="type")]


class CheckResult(BaseModel):
    """The outcome of one check after its retries."""

    name: str
    kind: str
    ok: bool
    detail: str
    attempts: int
    elapsed_seconds: float
