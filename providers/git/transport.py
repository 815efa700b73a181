"""Running git: argument lists (never a shell), one timeout each, credentials out of sight.

git runs with ``GIT_TERMINAL_PROMPT=0`` so a missing credential fails instead of waiting,
and ``LC_ALL=C`` so its messages can be read. Credentials never travel in a URL:
``user:password@`` is taken out of an https ``repository`` and, like the token, sent as an
``http.extraHeader`` given through ``GIT_CONFIG_*`` variables (not the command line, not
``.git/config``). Everything git says is scrubbed of them and of any ``user:password@``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import SecretStr

from providers.base import (
    REDACTED,
    AuthRejected,
    NotFound,
    ProviderError,
    Refused,
    TimedOut,
    Transient,
)
from providers.git.settings import GitSettings

MAX_ERROR_TEXT = 400
USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
# git's messages that say what went wrong (LC_ALL=C keeps them in English).
AUTH_HINTS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "permission denied",
    "returned error: 401",
    "returned error: 403",
)
MISSING_HINTS = (
    "does not appear to be a git repository",
    "repository not found",
    "couldn't find remote ref",
    "returned error: 404",
    "not found",
)
NETWORK_HINTS = (
    "could not resolve",
    "failed to connect",
    "couldn't connect",
    "connection refused",
    "connection timed out",
    "connection reset",
    "network is unreachable",
    "the remote end hung up",
    "early eof",
    "ssl",
    "returned error: 5",
)


@dataclass(frozen=True)
class Ran:
    """The result of one git command."""

    code: int
    out: str
    err: str


class Scrubber:
    """Takes secrets and ``user:password@`` out of text before anyone sees it."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = sorted(set(secrets), key=len, reverse=True)

    def add(self, secret: str) -> None:
        """Hide one more secret (longest first, so one inside another goes whole)."""
        self._secrets = sorted({*self._secrets, secret}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return USERINFO.sub("", text)


class GitCli:
    """git in the target's cached clone, with its credentials and its deadline."""

    def __init__(self, settings: GitSettings, token: SecretStr | None) -> None:
        self._settings = settings
        self.url, credentials = split_credentials(settings.repository)
        if settings.https_token and token is not None:
            credentials = f"x-access-token:{token.get_secret_value()}"
        self.scrub = Scrubber(secrets_of(settings.repository, credentials, token))
        self._header = (
            "Authorization: Basic " + base64.b64encode(credentials.encode()).decode()
            if credentials and self.url.startswith(("http://", "https://"))
            else None
        )
        if self._header:
            self.scrub.add(self._header.split()[-1])
        self.shown = self.scrub(settings.repository)
        self._dir = settings.cache_dir
        self._temporary: Path | None = None

    async def clone_dir(self) -> Path:
        """Return the clone's folder, made on first use."""
        if self._dir is None:
            self._temporary = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="rollbot-git-"))
            self._dir = self._temporary
        else:
            await asyncio.to_thread(self._dir.mkdir, parents=True, exist_ok=True)
        return self._dir

    async def remove_temporary(self) -> None:
        """Remove a clone made in a temporary folder."""
        if self._temporary is not None:
            folder, self._temporary = self._temporary, None
            await asyncio.to_thread(shutil.rmtree, folder, True)

    async def __call__(
        self,
        *args: str,
        what: str,
        network: bool = False,
        check: bool = True,
    ) -> Ran:
        """Run one git command under the timeout; an unexpected exit becomes a ProviderError."""
        cwd = self._dir if self._dir is not None and self._dir.exists() else None
        seconds = self._settings.git_timeout_seconds
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd,
            env=self._environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(seconds):
                out, err = await process.communicate()
        except TimeoutError as exc:
            raise TimedOut(f"{what}: git did not finish within {seconds:g} s.") from exc
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        code = process.returncode or 0
        ran = Ran(code, out.decode(errors="replace"), err.decode(errors="replace"))
        if code == 0 or not check:
            return ran
        raise self.failure(ran, what, network)

    def failure(self, ran: Ran, what: str, network: bool) -> ProviderError:
        """Translate a failed git command into the provider error tree."""
        text = self.error_text(ran)
        lowered = text.lower()
        message = f"{what}: {text}"
        if any(hint in lowered for hint in AUTH_HINTS):
            return AuthRejected(f"{message} (check the credentials for {self.shown})")
        if any(hint in lowered for hint in MISSING_HINTS):
            return NotFound(message)
        if network and any(hint in lowered for hint in NETWORK_HINTS):
            return Transient(message)
        return Refused(message)

    def error_text(self, ran: Ran) -> str:
        """Return what git said went wrong, scrubbed and cut to a readable length."""
        # push --porcelain names each refused ref (and why) on stdout, with a "!".
        refused = [line for line in ran.out.splitlines() if line.startswith("!")]
        lines = [line.strip() for line in [*refused, *ran.err.splitlines()] if line.strip()]
        text = "; ".join(lines) or f"git exited with {ran.code}"
        return self.scrub(text)[:MAX_ERROR_TEXT]

    def _environment(self) -> dict[str, str]:
        settings = self._settings
        env = dict(os.environ)
        env.update(
            GIT_TERMINAL_PROMPT="0",
            LC_ALL="C",
            GIT_AUTHOR_NAME=settings.author_name,
            GIT_AUTHOR_EMAIL=settings.author_email,
            GIT_COMMITTER_NAME=settings.author_name,
            GIT_COMMITTER_EMAIL=settings.author_email,
        )
        # ssh must fail rather than ask for a passphrase or a host key decision.
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        if self._header:
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=self._header,
            )
        return env


def split_credentials(repository: str) -> tuple[str, str | None]:
    """Return the URL without `user:password@` and those credentials, if any."""
    parts = urlsplit(repository)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return repository, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=host)), unquote(userinfo)


def secrets_of(repository: str, credentials: str | None, token: SecretStr | None) -> list[str]:
    """Return every form in which the repository's credentials or the token could show."""
    secrets = [token.get_secret_value()] if token else []
    if credentials:
        secrets.append(credentials)
        password = credentials.partition(":")[2]
        secrets += [s for s in (password, credentials.replace(":", "%3A")) if s]
    userinfo = urlsplit(repository).netloc.rpartition("@")[0]
    if userinfo:
        secrets.append(userinfo)
    return secrets
