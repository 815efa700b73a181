"""Foreign text is made inert before it is posted, and config limits hold."""

from __future__ import annotations

from typing import Any

from bot.execution import failure_text
from bot.matrix import ISSUES
from bot.models import Event, PlanStep, Rollback, State, StepStatus
from bot.policy import ApprovalPolicy
from bot.text import escape, quote_user_text
from bot.timeline import build
from handlers.blocks import card
from handlers.timeline import timeline_lines
from tests.support.records import rollback


def test_escape_keeps_user_mentions_and_defuses_the_rest() -> None:
    text = "db down <!channel> <!here> <@U0LEAD> <https://evil|click> a & b"
    assert escape(text) == (
        "db down &lt;!channel&gt; &lt;!here&gt; <@U0LEAD> &lt;https://evil|click&gt; a &amp; b"
    )


def test_templates_escape_and_redact_values_from_outside() -> None:
    rb = rollback(
        state=State.FAILED,
        target_state="db at postgresql://app:s3cr3t@db/x is down",
        error="container said <!channel> panic; DATABASE_URL=postgresql://app:s3cr3t@db/x",
        steps=[
            PlanStep(name="compose", kind="docker_compose", status=StepStatus.DONE, result="ok"),
            PlanStep(
                name="db",
                kind="postgres_migrations",
                status=StepStatus.FAILED,
                result="<!here>",
                restores="database",
            ),
        ],
        failed_step=1,
    )
    text = failure_text(rb)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "s3cr3t" not in text and "postgresql://[redacted]@db/x is down" in text
    assert "Retry step 2" in text and "/rollback restore database backend" in text


FORGED = "oops <!channel> @here <@U_OTHER> <#C_OPS>\n*Status*\n:white_check_mark: succeeded"


def test_typed_text_is_one_inert_line() -> None:
    shown = quote_user_text(FORGED)
    assert shown == (
        "oops &lt;!channel&gt; @\u200dhere &lt;@U_OTHER&gt; &lt;#C_OPS&gt; ∗Status∗ "
        ":white_check_mark: succeeded"
    )
    assert quote_user_text("> quoted _it_ ~gone~ `code` @channel @Everyone") == (
        "&gt; quoted ˍitˍ ∼gone∼ ˋcodeˋ @\u200dchannel @\u200dEveryone"
    )


def test_typed_text_is_cut_and_redacted() -> None:
    shown = quote_user_text("x" * 600)
    assert len(shown) == 500 and shown.endswith("…")
    assert quote_user_text("db at postgresql://app:pw@db/x") == "db at postgresql://[redacted]@db/x"


def test_escape_redacts_before_it_escapes() -> None:
    assert escape("failed: redis://:pw@cache <!here> xoxb-1-2-abcdefgh") == (
        "failed: redis://[redacted]@cache &lt;!here&gt; [redacted]"
    )


def reasoned_rollback() -> Rollback:
    """A rollback whose override and break-glass reasons try to mention and forge lines."""
    return rollback(
        state=State.RUNNING,
        issue="minor_ui_bug",
        severity="low",
        action="fix forward, don't roll back",
        override_reason=FORGED,
        break_glass_reason=FORGED,
        approved_by=["U_REQ"],
    )


def shown_texts(blocks: list[dict[str, Any]]) -> list[str]:
    """Return every mrkdwn text of a list of blocks."""
    texts: list[str] = []
    for block in blocks:
        texts += [block.get("text", {}).get("text", "")]
        texts += [field["text"] for field in block.get("fields", [])]
    return texts


def assert_inert(*texts: str) -> None:
    """Check rendered texts for live mentions and forged lines."""
    for text in texts:
        for live in ("<!channel>", "<@U_OTHER>", "<#C_OPS>", "@here"):
            assert live not in text
        assert "\n*Status*" not in text and "\n:white_check_mark:" not in text


def test_the_card_shows_reasons_inert() -> None:
    texts = shown_texts(card(reasoned_rollback(), dict(ISSUES), ApprovalPolicy()))
    assert_inert(*texts)
    assert any("*Fix-forward overridden:* oops &lt;!channel&gt;" in text for text in texts)
    assert any("*Break-glass:* oops &lt;!channel&gt;" in text for text in texts)


def test_the_timeline_shows_reasons_inert() -> None:
    rb = reasoned_rollback()
    events = [
        Event(
            rollback_id=rb.id,
            actor="U_REQ",
            kind="override",
            text=f"Fix-forward overridden: {FORGED}",
        ),
        Event(
            rollback_id=rb.id,
            actor="U_REQ",
            kind="break_glass",
            text=f"Break-glass self-approval: {FORGED}",
        ),
        Event(
            rollback_id=rb.id,
            actor="rollbot",
            kind="step",
            text="Started <@U_BOT> via xoxb-1-2-abcdefgh",
        ),
    ]
    lines = timeline_lines(build(rb, events))
    assert_inert(*lines)
    assert sum("oops &lt;!channel&gt;" in line for line in lines) == 2
    assert any("Started <@U_BOT> via [redacted]" in line for line in lines)
