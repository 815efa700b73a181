"""Slack's documented limits, as the fake enforces them: scopes, rate-limit tiers, sizes.

What it reproduces, and where Slack documents it:

- Rate limits (https://docs.slack.dev/apis/web-api/rate-limits): counted "per API method
  per workspace per app"; Tier 1 allows 1+ calls a minute, Tier 2 20+, Tier 3 50+, Tier 4
  100+, with bursts tolerated; chat.postMessage "generally allows posting one message per
  second per channel" with short bursts. Over the limit Slack answers HTTP 429, a
  `Retry-After` header in whole seconds and `{"ok": false, "error": "ratelimited"}`.
  Slack publishes no burst sizes: here a bucket holds a quarter minute's worth of calls
  (three messages for a channel), refilled at the tier's rate. Off unless a test turns it on.
- Scopes: a method the token lacks the scope for answers `missing_scope` with `needed`
  (the scopes any one of which would do, comma-separated) and `provided` (what the token
  has), e.g. `{"ok": false, "error": "missing_scope", "needed": "users:read.email",
  "provided": "channels:join,chat:write,..."}` as users report it.
- Sizes: chat.postMessage and chat.update answer `msg_too_long` over 40,000 characters of
  `text` ("Slack will truncate messages containing more than 40,000 characters" and lists
  `msg_too_long` among its errors); 50 blocks a message, 100 a modal; section text 3,000,
  header 150, button text 75 characters (slack_sdk's models check these as Slack does,
  and the fake answers `invalid_blocks` with the json-pointer of the bad block).
- Under load (not a documented limit, what Slack was seen doing): `every(3)` answers every
  third call of a `chat.*` method with 429 and `Retry-After: 1`, whatever the rate; the
  retried call counts too. Off until a test or a bench turns it on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from playground.slack_model import Json, SlackError

TEXT_MAX = 40_000
MESSAGE_BLOCKS_MAX = 50  # slack_sdk does not check this one, Slack does
VIEW_BLOCKS_MAX = 100

# The bot scopes slack-manifest.yaml asks for: what an installed rollbot's token has.
MANIFEST_SCOPES = frozenset(
    {
        "commands",
        "chat:write",
        "chat:write.public",
        "usergroups:read",
        "users:read",
        "channels:read",
        "files:write",
        "channels:manage",
        "groups:write",
    }
)

# The scopes each method documents; any one of them lets the call through.
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "chat.postMessage": ("chat:write",),
    "chat.update": ("chat:write",),
    "chat.delete": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    "usergroups.users.list": ("usergroups:read",),
    "users.info": ("users:read",),
    "conversations.info": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.create": ("channels:manage", "groups:write", "im:write", "mpim:write"),
    "conversations.invite": ("channels:manage", "groups:write", "im:write", "mpim:write"),
    "conversations.join": ("channels:join",),
    "files.getUploadURLExternal": ("files:write",),
    "files.completeUploadExternal": ("files:write",),
}

TIER_PER_MINUTE = {1: 1.0, 2: 20.0, 3: 50.0, 4: 100.0}
# Each method's tier as its reference page gives it; chat.postMessage is special (below).
METHOD_TIERS = {
    "apps.connections.open": 1,
    "auth.test": 4,
    "chat.update": 3,
    "chat.delete": 3,
    "chat.postEphemeral": 4,
    "chat.getPermalink": 4,
    "views.open": 4,
    "views.update": 4,
    "usergroups.users.list": 2,
    "users.info": 4,
    "conversations.info": 3,
    "conversations.create": 2,
    "conversations.invite": 3,
    "conversations.join": 3,
    "files.getUploadURLExternal": 4,
    "files.completeUploadExternal": 4,
}
POST_MESSAGE_PER_MINUTE = 60.0  # one a second, per channel
POST_MESSAGE_BURST = 3.0


def check_scopes(method: str, granted: Iterable[str]) -> None:
    """Raise `missing_scope` when the token has none of the scopes `method` needs."""
    needed = METHOD_SCOPES.get(method)
    have = set(granted)
    if needed and not have.intersection(needed):
        raise MissingScope(needed, sorted(have))


def check_text(args: Json) -> None:
    """Raise `msg_too_long` for a message text over Slack's 40,000 characters."""
    text = args.get("text")
    if isinstance(text, str) and len(text) > TEXT_MAX:
        raise SlackError("msg_too_long")


class MissingScope(SlackError):
    """The token lacks every scope the method needs: Slack says which would do."""

    def __init__(self, needed: Iterable[str], provided: Iterable[str]) -> None:
        super().__init__("missing_scope")
        self.needed = ",".join(needed)
        self.provided = ",".join(provided)

    def body(self) -> Json:
        """Slack's body: the error with `needed` and `provided`."""
        return {**super().body(), "needed": self.needed, "provided": self.provided}


@dataclass
class _Bucket:
    capacity: float
    per_second: float
    tokens: float
    at: float

    def take(self, now: float) -> float:
        """Take one call; return 0, or how many seconds until one would be let through."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_second


@dataclass
class _Every:
    n: int
    prefix: str
    retry_after: int
    count: int = 0


class RateLimits:
    """Per-method (and, for chat.postMessage, per-channel) limits; off until enabled."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = False
        self._clock = clock
        self._rates: dict[str, tuple[float, float]] = {}  # method -> (per minute, burst)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._every: _Every | None = None

    def enable(self) -> None:
        """Limit every method as Slack documents it."""
        self.enabled = True

    def set(self, method: str, *, per_minute: float, burst: float = 1.0) -> None:
        """Limit one method more tightly than Slack does (and turn limits on)."""
        self._rates[method] = (per_minute, burst)
        self._buckets = {k: b for k, b in self._buckets.items() if k[0] != method}
        self.enabled = True

    def every(self, n: int | None, *, prefix: str = "chat.", retry_after: int = 1) -> None:
        """Answer every `n`th call of the methods named `prefix...` with 429; None stops it."""
        if n is not None and n < 1:
            raise ValueError("n must be at least 1")
        self._every = None if n is None else _Every(n, prefix, retry_after)

    def retry_after(self, method: str, args: Json) -> int | None:
        """Count a call; None if it may go through, else the Retry-After seconds to answer."""
        every = self._every
        if every is not None and method.startswith(every.prefix):
            every.count += 1
            if every.count % every.n == 0:
                return every.retry_after
        if not self.enabled:
            return None
        per_minute, burst = self._rate(method)
        key = str(args.get("channel") or "") if method == "chat.postMessage" else ""
        now = self._clock()
        bucket = self._buckets.get((method, key))
        if bucket is None:
            bucket = _Bucket(burst, per_minute / 60.0, burst, now)
            self._buckets[(method, key)] = bucket
        wait = bucket.take(now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def _rate(self, method: str) -> tuple[float, float]:
        if method in self._rates:
            return self._rates[method]
        if method == "chat.postMessage":
            return POST_MESSAGE_PER_MINUTE, POST_MESSAGE_BURST
        per_minute = TIER_PER_MINUTE[METHOD_TIERS.get(method, 2)]
        return per_minute, max(1.0, per_minute / 4)
