"""The helm CLI for the helm provider: run with an argument list, never a shell; errors translated.

Helm is an optional program: it is found on PATH (or at a configured path) when a command
runs, and a missing one is refused with what to do. Every command gets `--namespace`, and
`--kubeconfig=` / `--kube-context=` when set (one argument each, so a value is never read
as a flag). Helm prints its failure as `Error: …` on stderr, after any log lines
(`level=WARN msg=…`): that line, and the lines after it, are the message. Reads are
retried on what looks transient (the cluster unreachable, a 5xx, a rate limit); a
rollback is run once.

A command that runs past its deadline is stopped: SIGTERM first, which helm (3.7 and
later) answers by marking its release failed instead of leaving it pending, then
SIGKILL after a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from providers.base import (
    AuthRejected,
    Conflicting,
    NotFound,
    ProviderError,
    Refused,
    TimedOut,
    Transient,
)
from providers.retry import retrying

log = structlog.get_logger(__name__)
# How long helm may take to stop after SIGTERM before it is killed.
STOP_SECONDS = 5.0
# Credentials helm might echo in an error (a kubeconfig token, a bearer header).
CREDENTIALS = re.compile(
    r"(?i)(bearer\s+|token[\"']?\s*[:=]\s*[\"']?|password[\"']?\s*[:=]\s*[\"']?)[^\s\"',]+"
)
TRANSIENT = (
    "cluster unreachable",
    "connection refused",
    "connection reset",
    "i/o timeout",
    "tls handshake timeout",
    "server is currently unable",
    "too many requests",
    "etcdserver",
    "unexpected eof",
)


@dataclass(frozen=True)
class HelmTarget:
    """Where helm commands go: the namespace, and the kubeconfig and context when set."""

    binary: str
    namespace: str
    kubeconfig: Path | None
    context: str | None

    def flags(self) -> list[str]:
        """The flags every command gets."""
        flags = ["--namespace", self.namespace]
        if self.kubeconfig is not None:
            flags.append(f"--kubeconfig={self.kubeconfig}")
        if self.context is not None:
            flags.append(f"--kube-context={self.context}")
        return flags


def shown(target: HelmTarget, args: list[str]) -> str:
    """The command as it runs, for the card and the thread (it holds no secret)."""
    return " ".join(["helm", *args, *target.flags()])


class HelmStopped(TimedOut):
    """A helm command ran past its deadline and was stopped."""


class HelmCli:
    """Runs helm commands for one target and turns their failures into provider errors."""

    def __init__(self, target: HelmTarget, read_timeout_seconds: float) -> None:
        self._target = target
        self._read_timeout = read_timeout_seconds

    def binary(self) -> str:
        """The helm program's path; Refused when it is not there."""
        configured = self._target.binary
        found = shutil.which(configured)
        if found is None:
            where = (
                f"`{configured}` is not an executable file"
                if "/" in configured
                else f"`{configured}` is not on PATH"
            )
            raise Refused(
                f"The helm CLI was not found: {where}. Install helm where rollbot runs, or set "
                "`helm_binary` to its path."
            )
        return found

    async def version(self) -> str:
        """The helm client's version (`helm version --short`)."""
        out = await self._run("reading helm's version", ["version", "--short"], self._read_timeout)
        return out.strip()

    async def read_json(self, what: str, args: list[str]) -> Any:
        """Run a read with `-o json`, retried when the failure looks transient."""

        async def once() -> Any:
            out = await self._run(what, [*args, *self._target.flags(), "-o", "json"])
            try:
                return json.loads(out or "null")
            except ValueError as exc:
                raise Transient(f"{what}: helm's answer was not JSON.") from exc

        return await retrying(once, timeouts=True)

    async def run_once(self, what: str, args: list[str], deadline: float) -> str:
        """Run a command that changes the release, once, stopped after `deadline` s."""
        return await self._run(what, [*args, *self._target.flags()], deadline)

    async def _run(self, what: str, args: list[str], deadline: float | None = None) -> str:
        binary = self.binary()
        process = await asyncio.create_subprocess_exec(
            binary,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        limit = self._read_timeout if deadline is None else deadline
        try:
            async with asyncio.timeout(limit):
                out, err = await process.communicate()
        except TimeoutError as exc:
            await _stop(process)
            raise HelmStopped(
                f"{what}: helm did not finish within {limit:g} s and was stopped."
            ) from exc
        finally:
            # Cancelled from outside (the rollback's own deadline): no helm is left behind.
            if process.returncode is None:
                await _stop(process)
        if process.returncode != 0:
            raise translate(what, err.decode(errors="replace"))
        return out.decode(errors="replace")


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, so helm marks its release failed; SIGKILL when it does not go."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        async with asyncio.timeout(STOP_SECONDS):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
    log.warning("helm.stopped", pid=process.pid, returncode=process.returncode)


def error_line(stderr: str) -> str:
    """Helm's own message: from the `Error:` line to the end, on one line, credentials hidden."""
    lines = stderr.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Error:")), None)
    kept = lines[start:] if start is not None else lines[-3:]
    text = " ".join(line.strip() for line in kept if line.strip()).removeprefix("Error: ")
    text = CREDENTIALS.sub(lambda m: f"{m.group(1)}[redacted]", text)
    return (text[:500] + "…" if len(text) > 500 else text) or "helm exited with no message"


def translate(what: str, stderr: str) -> ProviderError:
    """Map helm's error message onto the provider error tree, quoting it."""
    message = error_line(stderr)
    lowered = message.lower()
    said = f"{what}: helm said: {message}"
    if "another operation" in lowered and "in progress" in lowered:
        return Conflicting(said)
    if "unauthorized" in lowered or "must be logged in" in lowered:
        return AuthRejected(f"{said} (the cluster rejected the credentials)")
    if "forbidden" in lowered:
        return AuthRejected(
            f"{said} (the account lacks an RBAC permission: helm keeps each release in Secrets "
            "of its namespace, which it must read and, for a rollback, write)"
        )
    if "not found" in lowered and ("release" in lowered or "revision" in lowered):
        return NotFound(said)
    if any(word in lowered for word in TRANSIENT):
        return Transient(said)
    if "context deadline exceeded" in lowered or "timed out" in lowered:
        return TimedOut(said)
    return Refused(said)
