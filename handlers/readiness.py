"""Whether this replica can act on Slack's requests: its store answers and Slack takes its token.

A token Slack refuses (revoked, app uninstalled) makes every reply fail: the replica is
not ready. Slack being unreachable is another matter: the requests that do arrive can
still be answered once it is back, and taking every replica out of the load balancer
would help nobody, so it does not fail readiness. `auth.test` is asked at most once a
minute while the answer is good, and every ten seconds while it is not.
"""

from __future__ import annotations

import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

# auth.test errors that mean the token itself will not work.
TOKEN_REFUSED = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)
GOOD_FOR_SECONDS = 60.0
BAD_FOR_SECONDS = 10.0
ASK_SECONDS = 2


class SlackAuth:
    """The last answer of `auth.test`, asked again when it is old."""

    def __init__(self, client: AsyncWebClient) -> None:
        # A client of its own without retries: a probe must not wait out a Retry-After.
        self._client = AsyncWebClient(
            token=client.token, base_url=client.base_url, timeout=ASK_SECONDS, retry_handlers=[]
        )
        self._state: tuple[bool, str] | None = None
        self._asked_at = 0.0

    async def state(self) -> tuple[bool, str]:
        """(ready, what to say): False only when Slack refused the token."""
        fresh_for = GOOD_FOR_SECONDS if self._state and self._state[0] else BAD_FOR_SECONDS
        if self._state is None or time.monotonic() - self._asked_at > fresh_for:
            self._state = await self._ask()
            self._asked_at = time.monotonic()
        return self._state

    async def _ask(self) -> tuple[bool, str]:
        try:
            await self._client.auth_test()
        except SlackApiError as exc:
            error = str(exc.response.get("error") or exc.response.status_code)
            if error in TOKEN_REFUSED:
                return False, f"Slack refused the bot token ({error})"
            return True, f"not checked: Slack answered {error}"
        except Exception as exc:  # a network failure: Slack's outage, not this replica's
            return True, f"not checked: Slack could not be reached ({type(exc).__name__})"
        return True, "ok"
