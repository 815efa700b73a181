"""PostgreSQL URLs as applications write them (Prisma's included), for asyncpg and libpq.

A Prisma `DATABASE_URL` carries arguments only Prisma reads: `schema`, its pool's
`connection_limit`, `pool_timeout`, `socket_timeout`, `statement_cache_size` and
`pgbouncer`, and TLS in its own words (`sslaccept`, `sslcert` for the server's root
certificate, a PKCS12 `sslidentity`). asyncpg would send each unknown argument to the
server as a setting, and libpq (pg_dump) refuses them. Here they are translated: the
schema becomes the search path (and pg_dump's `--schema`), `pgbouncer=true` marks a
pooler (no startup settings, no prepared-statement cache), Prisma's TLS words become
libpq's, and the pool arguments are dropped. TLS is never weakened: `sslaccept=strict`
verifies the host name (`verify-full`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

from providers.base import Refused

# Never on a command line (pg_dump's --dbname shows in `ps`).
SECRET_QUERY_KEYS = frozenset({"password", "passfile", "sslpassword"})
# Prisma's own arguments, read here or dropped: neither asyncpg nor libpq knows them.
PRISMA_ONLY = frozenset(
    {
        "schema",
        "connection_limit",
        "pool_timeout",
        "socket_timeout",
        "statement_cache_size",
        "pgbouncer",
        "sslaccept",
    }
)
# libpq arguments asyncpg does not take (it would send them as server settings).
LIBPQ_ONLY = frozenset({"connect_timeout", "options", "channel_binding", "sslcompression"})
TRUE = frozenset({"true", "1", "yes", "on"})


@dataclass(frozen=True)
class Target:
    """Where the database connects, split so the password never reaches a command line.

    `dsn` is for asyncpg (with the password); `public_dsn` for libpq tools (without it).
    """

    dsn: str
    public_dsn: str
    password: str | None
    database: str
    schema: str = "public"
    # The URL names the schema itself (Prisma's `schema=`): pg_dump dumps that one only.
    schema_given: bool = False
    # Behind a transaction-mode pooler (PgBouncer, Supavisor, Neon's): settings go into
    # each transaction (SET LOCAL), never into the startup packet.
    pooled: bool = False

    def redact(self, text: str) -> str:
        """Keep the password (plain or URL-encoded) out of a text."""
        if self.password:
            for form in {self.password, quote(self.password, safe="")}:
                text = text.replace(form, "[redacted]")
        return text


def split_dsn(dsn: SecretStr, variable: str) -> Target:
    """Translate a postgresql:// URL (Prisma's arguments included) for asyncpg and libpq."""
    raw = dsn.get_secret_value()
    parts = urlsplit(raw)
    if parts.scheme not in ("postgres", "postgresql"):
        raise Refused(f"{variable} is not a postgresql:// URL.")
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = dict(query)
    if "sslidentity" in given:
        raise Refused(
            f"{variable} names a PKCS12 sslidentity, which only Prisma reads: give rollbot "
            "the client certificate and key as PEM files (sslcert=..., sslkey=...) in a URL "
            "of its own (dsn_env)."
        )
    password = given.get("password") or parts.password
    translated = _translate(query)
    asyncpg_query = [(k, v) for k, v in translated if k not in LIBPQ_ONLY]
    libpq_query = [(k, v) for k, v in translated if k not in SECRET_QUERY_KEYS]
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = host if ":" not in host else f"[{host}]"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    public_netloc = f"{user}@{netloc}" if user else netloc
    public = urlunsplit((parts.scheme, public_netloc, parts.path, urlencode(libpq_query), ""))
    private = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(asyncpg_query), ""))
    database = unquote(parts.path.lstrip("/")) or given.get("dbname") or unquote(user)
    return Target(
        dsn=private,
        public_dsn=public,
        password=unquote(password) if password else None,
        database=database or "postgres",
        schema=given.get("schema") or "public",
        schema_given=bool(given.get("schema")),
        pooled=given.get("pgbouncer", "").lower() in TRUE,
    )


def _translate(query: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Turn Prisma's TLS words into libpq's and drop what only Prisma reads."""
    given = dict(query)
    strict = given.get("sslaccept") == "strict"
    out: list[tuple[str, str]] = []
    for key, value in query:
        if key in PRISMA_ONLY:
            continue
        if key == "sslmode" and strict and value == "require":
            value = "verify-full"  # Prisma's strict checks the certificate and the host
        if key == "sslcert" and "sslkey" not in given:
            key = "sslrootcert"  # Prisma's sslcert is the server's root certificate
        out.append((key, value))
    return out
