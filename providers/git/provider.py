"""Git provider: revert bad commits on a branch, or push a rollback tag, to redeploy.

The clone lives in ``cache_dir``; without one, in a temporary folder made on first use and
removed at shutdown (one clone per process). An optional workflow_dispatch follows the
push, sent once, never retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import UTC, datetime

import structlog

from providers.base import (
    NotFound,
    Outcome,
    Plan,
    Progress,
    ProviderError,
    Refused,
    RollbackFailed,
    Version,
    say,
)
from providers.capabilities import FreezeRecord, Identity, PreflightReport
from providers.git.clone import Clone
from providers.git.freeze import Freezing
from providers.git.github import GitHubApi, unanswered
from providers.git.model import SHORT_SHA, Snapshot, Tag, after, when
from providers.git.predict import Prediction, predict_push, predict_tag
from providers.git.preflight import Preflighting
from providers.git.revert import Reverting, merge_warning, refuse_named
from providers.git.settings import GitSettings
from providers.git.tag import Tagging
from providers.git.transport import GitCli
from providers.http import token_from
from providers.retry import retrying

log = structlog.get_logger(__name__)

RUN_LOOKUPS = 3
RUN_LOOKUP_WAIT = 2.0


class GitProvider:
    """Roll back by reverting commits or pushing a rollback tag, in a cached clone."""

    def __init__(self, settings: GitSettings) -> None:
        self._settings = settings
        self._cli = GitCli(settings, token_from(settings.token_env))
        self._clone = Clone(settings, self._cli)
        self._reverting = Reverting(self._clone)
        self._tagging = Tagging(self._clone)
        self._preflighting = Preflighting(settings, self._clone, self._reverting)
        self._github = GitHubApi(settings, self._cli.scrub)
        self._freezing = Freezing(self._github, self._cli.scrub)
        self._lock = asyncio.Lock()

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the version tag the branch holds now."""
        snapshot = await self._snapshot()
        if snapshot.current is None:
            raise NotFound(self._clone.no_version(snapshot))
        return snapshot.current.name

    async def list_versions(self) -> list[Version]:
        """Return the version tags newest first, current and previous stable marked."""
        snapshot = await self._snapshot()
        current = snapshot.current
        previous = after(snapshot.versions, current)
        return [
            Version(
                name=tag.name,
                created_at=tag.committed_at,
                current=tag is current,
                previous_stable=tag is previous,
                detail=f"{tag.commit[:SHORT_SHA]} “{tag.subject[:80]}”, {when(tag)}"
                + ("" if tag.name in snapshot.reachable else f", not on {self._clone.branch}"),
            )
            for tag in snapshot.versions
        ]

    async def plan(self, target: str) -> Plan:
        """Say which commits will be reverted or which tag pushed, changing nothing."""
        async with self._lock:
            snapshot = await self._clone.fetched()
            tag = self._target(snapshot, target)
            if self._settings.mode == "tag":
                steps = self._tagging.plan(snapshot, tag)
                warnings = await self._tag_checks(tag)
            else:
                commits = await self._reverting.commits_after(tag)
                steps = self._reverting.plan(tag, commits)
                files = await self._clone.changed_files(tag.commit, self._clone.remote_head)
                warnings = merge_warning(commits) + await self._push_checks(files)
        return Plan(steps=steps + self._dispatch_steps(target), warnings=warnings)

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Revert and push, or push a rollback tag; then dispatch the workflow if set."""
        started = time.monotonic()
        async with self._lock:
            snapshot = await self._clone.fetched()
            tag = self._target(snapshot, target)
            # The rules are read again: they may have changed since the plan was approved.
            if self._settings.mode == "tag":
                self._tagging.plan(snapshot, tag)
                await self._before_push(self._tag_checks(tag), snapshot)
                summary = await self._tagging.push(snapshot, tag, progress)
            else:
                files = await self._clone.changed_files(tag.commit, self._clone.remote_head)
                await self._before_push(self._push_checks(files), snapshot)
                summary = await self._reverting.back_to(tag, progress)
            notes = await self._dispatch(target, summary, progress)
        log.info(
            "git.rollback",
            mode=self._settings.mode,
            target=target,
            seconds=round(time.monotonic() - started, 2),
        )
        return Outcome(summary=summary, notes=notes)

    async def plan_revert(self, commit: str) -> Plan:
        """Say which commit will be reverted and pushed, changing nothing."""
        refuse_named(commit, self._settings.mode, self._clone)
        async with self._lock:
            await retrying(self._clone.fetch)
            bad = await self._clone.named_commit(commit)
            files = await self._clone.changed_files(f"{bad.sha}^", bad.sha)
            steps, warnings = self._reverting.named_plan(bad)
            warnings += await self._push_checks(files)
        return Plan(
            steps=steps + self._dispatch_steps("<the revert commit's sha>"), warnings=warnings
        )

    async def revert(self, commit: str, progress: Progress) -> Outcome:
        """Revert one named commit of the branch and push; then dispatch the workflow if set."""
        refuse_named(commit, self._settings.mode, self._clone)
        started = time.monotonic()
        async with self._lock:
            snapshot = await self._clone.fetched()
            bad = await self._clone.named_commit(commit)
            files = await self._clone.changed_files(f"{bad.sha}^", bad.sha)
            await self._before_push(self._push_checks(files), snapshot)
            summary, made = await self._reverting.named(bad, progress)
            notes = await self._dispatch(made, summary, progress)
        log.info(
            "git.revert_commit",
            commit=bad.sha,
            revert=made,
            seconds=round(time.monotonic() - started, 2),
        )
        return Outcome(summary=summary, notes=notes)

    async def identity_now(self) -> Identity:
        """Return the commit that deploys now (the branch head, or the tag pushed last)."""
        return self._preflighting.identity(await self._snapshot())

    async def preflight(self, target: str) -> PreflightReport:
        """Check the target's commit on the remote and GitHub's rules; say what changes."""
        async with self._lock:
            snapshot, fetch_error = await self._preflighting.snapshot()
            tag = self._known(snapshot, target)
            return await self._preflighting.report(snapshot, tag, fetch_error, self._prediction)

    async def describe_state(self) -> str:
        """Say what the branch (and, in tag mode, the last rollback tag) holds, from the remote."""
        return self._clone.state_line(await self._snapshot())

    async def freeze(self, bad: str, good: str) -> FreezeRecord:
        """Set a failing `rollbot/freeze` status on the bad version's commit (or watch only)."""
        if self._settings.github_repository is None:
            return FreezeRecord(
                action=f"watch only: no github_repository is set, so nothing on GitHub can gate "
                f"{bad}; a deploy of it again shows as drift"
            )
        tag = self._known(await self._snapshot(), bad)
        record = await self._freezing.freeze(tag)
        log.info("git.freeze", bad=bad, good=good, commit=tag.commit)
        return record

    async def unfreeze(self, record: FreezeRecord) -> str:
        """Post back the `rollbot/freeze` status from before the freeze, if no one changed it."""
        if "commit" not in record.saved:
            return "Nothing to restore: the freeze was watch only."
        return await self._freezing.unfreeze(record)

    async def aclose(self) -> None:
        """Close the HTTP client and remove a temporary clone."""
        await self._github.aclose()
        await self._cli.remove_temporary()

    # -- helpers ----------------------------------------------------------------------------

    async def _snapshot(self) -> Snapshot:
        async with self._lock:
            return await self._clone.fetched()

    def _known(self, snapshot: Snapshot, target: str) -> Tag:
        tag = snapshot.find(target)
        if tag is None:
            raise NotFound(
                f"No tag `{target}` matching {self._settings.tag_pattern} in {self._clone.shown}."
            )
        return tag

    def _target(self, snapshot: Snapshot, target: str) -> Tag:
        tag = self._known(snapshot, target)
        # In revert mode a branch ahead of its newest tag can go back to that tag.
        holds = tag.tree == snapshot.head_tree if self._settings.mode == "revert" else None
        if holds or (holds is None and snapshot.current is not None and tag is snapshot.current):
            raise Refused(
                f"{self._clone.state_line(snapshot)} `{target}` is what it holds already."
            )
        return tag

    async def _push_checks(self, files: list[str]) -> list[str]:
        """Predict GitHub refusing the push: raise Refused saying why, or return warnings."""
        if self._settings.github_repository is None:
            return []
        return self._judged(await self._push_prediction(files))

    async def _tag_checks(self, tag: Tag) -> list[str]:
        """Predict GitHub refusing the rollback tag: raise Refused saying why, or warn."""
        if self._settings.github_repository is None:
            return []
        return self._judged(await self._tag_prediction(tag))

    async def _push_prediction(self, files: list[str]) -> Prediction:
        return await predict_push(
            self._settings, self._github, self._cli.scrub, self._clone.branch, files
        )

    async def _tag_prediction(self, tag: Tag) -> Prediction:
        return await predict_tag(self._settings, self._github, self._cli.scrub, tag.name)

    async def _prediction(self, tag: Tag, files: list[str]) -> Prediction:
        if self._settings.mode == "tag":
            return await self._tag_prediction(tag)
        return await self._push_prediction(files)

    @staticmethod
    def _judged(prediction: Prediction) -> list[str]:
        if prediction.refusal is not None:
            raise Refused(prediction.refusal)
        return prediction.warnings

    async def _before_push(self, checks: Awaitable[list[str]], snapshot: Snapshot) -> None:
        """Stop before pushing when GitHub's rules now refuse the push."""
        try:
            await checks
        except Refused as exc:
            raise Refused(
                f"Stopped before pushing (GitHub's rules, read again just now): {exc.message}",
                target_state=self._clone.state_line(snapshot),
            ) from exc

    def _dispatch_steps(self, target: str) -> list[str]:
        settings = self._settings
        if settings.workflow is None:
            return []
        return [
            f"Start workflow {settings.workflow} of {settings.github_repository} on "
            f"{settings.workflow_on} with input version={target} (workflow_dispatch, sent once)."
        ]

    async def _dispatch(self, version: str, summary: str, progress: Progress) -> list[str]:
        """Start the workflow once; a failure after the push says the push happened.

        A dispatch left unanswered (no answer in time, a reset, a 5xx) may have started a
        run: GitHub's list of runs says whether it did, and the dispatch is never resent.
        """
        settings = self._settings
        if settings.workflow is None:
            return []
        await say(progress, f"Starting workflow {settings.workflow} with version={version}…")
        sent_at = datetime.now(UTC)
        try:
            await self._github.dispatch_workflow(version)
        except ProviderError as exc:
            cause = f"{self._cli.scrub(exc.message)} (sent once, not retried)"
            if not unanswered(exc):
                what_now = "start the workflow by hand"
            else:
                run, what_now = await self._run_started(sent_at, version)
                if run is not None:
                    return [
                        f"Started workflow {settings.workflow} on {settings.workflow_on}: "
                        f"GitHub's answer was lost ({cause}), but a run started: {run}"
                    ]
            raise RollbackFailed(
                f"{summary} But {cause}: {what_now}.",
                target_state=await self._clone.state_or_unknown(),
            ) from exc
        return [f"Started workflow {settings.workflow} on {settings.workflow_on}."]

    async def _run_started(self, sent_at: datetime, version: str) -> tuple[str | None, str]:
        """Look for the run an unanswered dispatch started: (its URL, or None; what to do)."""
        settings = self._settings
        page = self._github.workflow_page()
        # GitHub makes the run a moment after it accepts the dispatch: look a few times.
        for attempt in range(RUN_LOOKUPS):
            if attempt:
                await asyncio.sleep(min(RUN_LOOKUP_WAIT, settings.request_timeout_seconds))
            try:
                runs = await self._github.dispatched_runs(sent_at)
            except ProviderError as exc:
                return None, (
                    f"whether a run started is unknown ({self._cli.scrub(exc.message)}): look "
                    f"at {page} before starting it by hand"
                )
            if runs:
                return str(runs[0].get("html_url") or page), ""
        command = (
            f"`gh workflow run {settings.workflow} --repo {settings.github_repository} "
            f"--ref {settings.workflow_on} -f version={version}`"
        )
        return None, f"no run started; start it by hand: {command}, or Run workflow at {page}"
