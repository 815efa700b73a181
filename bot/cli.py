"""The `rollbot` command: serve, check-config, and the terminal break-glass rollback."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import html
import os
import sys
from collections.abc import Sequence

from bot import logs, redact, tracing
from bot.config import RollbotConfig, load_config
from bot.engine import Engine
from bot.errors import ConfigError, RollbotError
from bot.models import Rollback, State
from bot.pool import ProviderPool
from bot.settings import Settings, withdraw_own_secrets
from bot.store import Store, open_store
from bot.verification import CheckResult, render_table


class TerminalReporter:
    """Prints a running rollback's progress to stdout, redacted as Slack would show it."""

    async def progress(self, rollback: Rollback, text: str) -> None:
        """Print one step."""
        print(f"  - {redact.redact(text)}", flush=True)

    async def verified(self, rollback: Rollback, results: list[CheckResult]) -> None:
        """Print the verification table."""
        print(redact.redact(render_table(results)), flush=True)
        for result in results:
            if result.link:
                print(f"  {result.name}: {redact.redact(result.link)}", flush=True)

    async def finished(self, rollback: Rollback, summary: str) -> None:
        """Print the outcome."""
        # Summaries are written for Slack: drop its bold marks and entity escapes.
        print(html.unescape(summary.replace("*", "")), flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollbot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the Slack bot (Socket Mode, or HTTP with --http)")
    serve.add_argument("--http", action="store_true", help="serve HTTP instead of Socket Mode")
    # Platforms (Heroku-style, Cloud Run, the image) say the port in $PORT.
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 3000))
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server for Slack to reach
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("path", nargs="?", help="default: $ROLLBOT_CONFIG or rollbot.yaml")
    roll = sub.add_parser("rollback", help="roll back from the terminal, without Slack")
    roll.add_argument("service")
    roll.add_argument("version")
    roll.add_argument("--env", dest="environment")
    roll.add_argument(
        "--issue", required=True, help="decision-matrix issue type, e.g. critical_bug"
    )
    roll.add_argument("--reason", default="Slack unavailable", help="recorded break-glass reason")
    roll.add_argument("--override-reason", help="required when the matrix says fix forward")
    roll.add_argument("--yes", action="store_true", help="confirm; without it nothing runs")
    roll.add_argument(
        "--confirm-data-loss",
        action="store_true",
        help="also confirm a plan that deletes data (a Redis FLUSHDB step)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rollbot` console script."""
    args = _parser().parse_args(argv)
    settings = Settings()
    logs.configure(settings.ROLLBOT_LOG_FORMAT)
    if args.command != "check-config":
        tracing.configure(settings.OTEL_EXPORTER_OTLP_ENDPOINT)
    try:
        if args.command == "check-config":
            config = load_config(args.path or settings.ROLLBOT_CONFIG, check_secrets=True)
            print(f"OK: {len(config.services)} service(s): {', '.join(sorted(config.services))}")
            return 0
        if args.command == "serve":
            # Name every problem at once: the config's and the missing Slack variables.
            missing = settings.for_serving(http=args.http)
            try:
                config = load_config(settings.ROLLBOT_CONFIG, check_secrets=True)
            except ConfigError as exc:
                raise ConfigError(exc.problems + missing) from None
            if missing:
                raise ConfigError(missing)
            # Imported here so that bot/ does not depend on the Slack adapter at import.
            from handlers.server import serve

            asyncio.run(serve(settings, config, http=args.http, host=args.host, port=args.port))
            return 0
        config = load_config(settings.ROLLBOT_CONFIG, check_secrets=True)
        return asyncio.run(terminal_rollback(settings, config, args))
    except ConfigError as exc:
        print("Invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except RollbotError as exc:
        print(f"rollbot: {redact.redact(exc.message)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        # The last spans (the run that ended with the shutdown) are sent before exit.
        tracing.shutdown()


async def terminal_rollback(
    settings: Settings, config: RollbotConfig, args: argparse.Namespace
) -> int:
    """Drive one rollback through the engine from a terminal and print its progress."""
    redact.install(config, os.environ)
    withdraw_own_secrets(os.environ)
    store: Store = open_store(settings.ROLLBOT_STORE)
    await store.open()
    providers = ProviderPool(config)
    engine = Engine(config, store, providers)
    operator = f"cli:{getpass.getuser()}"
    try:
        await engine.sweep()
        rb = await engine.request(
            service=args.service,
            version=args.version,
            environment=args.environment,
            user=operator,
            dry_run=not args.yes,
            from_terminal=True,
        )
        print(
            f"Rollback {rb.id}: {rb.service}/{rb.environment} {rb.shown_current} -> "
            f"{rb.shown_target}"
        )
        for i, step in enumerate(rb.steps, 1):
            print(f"  Step {i}: {step.heading}")
            for line in step.plan:
                print(f"    - {redact.redact(line)}")
            for warning in step.warnings:
                print(f"    ! {redact.redact(warning)}")
        rb = await engine.confirm_severity(rb.id, args.issue, operator, args.override_reason)
        if rb.dry_run:
            print("Dry run: nothing was changed. Add --yes to roll back.")
            return 0
        if rb.state is State.AWAITING_APPROVAL:
            rb = await engine.approve_from_terminal(
                rb.id, operator, args.reason, danger_confirmed=args.confirm_data_loss
            )
        result = await engine.execute(rb.id, TerminalReporter())
        return 0 if result and result.state is State.SUCCEEDED else 1
    finally:
        await providers.aclose()
        await store.close()
