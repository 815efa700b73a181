"""Foreign text is made inert before it is posted, and config limits hold."""

from __future__ import annotations

from bot.execution import failure_text
from bot.models import PlanStep, Rollback, State, StepStatus
from bot.text import escape


def test_escape_keeps_user_mentions_and_defuses_the_rest() -> None:
    text = "db down <!channel> <!here> <@U0LEAD> <https://evil|click> a & b"
    assert escape(text) == (
        "db down &lt;!channel&gt; &lt;!here&gt; <@U0LEAD> &lt;https://evil|click&gt; a &amp; b"
    )


def test_templates_escape_values_from_outside() -> None:
    rb = Rollback(
        id="rb-00000001",
        service="backend",
        environment="production",
        requested_by="U1",
        current_version="v1.2.4",
        target_version="v1.2.3",
        state=State.FAILED,
        target_state="backend runs v1.2.4 again",
        error="container said <!channel> panic",
        steps=[
            PlanStep(name="compose", kind="docker_compose", status=StepStatus.DONE, result="ok"),
            PlanStep(
                name="db", kind="postgres_migrations", status=StepStatus.FAILED, result="<!here>"
            ),
        ],
        failed_step=1,
    )
    text = failure_text(rb)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "Retry step 2" in text and "/rollback restore database backend" in text
