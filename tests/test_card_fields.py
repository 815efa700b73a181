"""The card's version fields say, in every state, only what is true of it."""

from __future__ import annotations

from typing import Any

import pytest

from bot.models import PlanStep, State, StepStatus
from handlers.card_fields import version_fields
from tests.e2e_helpers import backend_rollback

NOW, TARGET = "`v1.2.4`", "`v1.2.3`"


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        ({"state": State.AWAITING_APPROVAL}, [("Running now", NOW), ("Roll back to", TARGET)]),
        ({"state": State.RUNNING}, [("Was running", NOW), ("Rolling back to", TARGET)]),
        ({"state": State.VERIFYING}, [("Was running", NOW), ("Rolling back to", TARGET)]),
        (
            {"state": State.SUCCEEDED},
            [("Running now", TARGET), ("Before the rollback", NOW)],
        ),
        (
            {"state": State.FAILED, "target_state": "runs v1.2.4 (healthy)"},
            [
                ("Before the rollback", NOW),
                ("Tried to roll back to", TARGET),
                ("State now", "runs v1.2.4 (healthy)"),
            ],
        ),
        (
            {"state": State.INTERRUPTED},
            [
                ("Before the rollback", NOW),
                ("Tried to roll back to", TARGET),
                ("State now", "not recorded"),
            ],
        ),
        (
            {"state": State.REJECTED},
            [("Running now", NOW), ("Would have rolled back to", TARGET)],
        ),
        (
            {"state": State.CANCELLED, "dry_run": True},
            [("Running now", NOW), ("Would roll back to", TARGET)],
        ),
        (
            {"state": State.CANCELLED, "target_state": "unchanged: runs v1.2.5"},
            [
                ("Ran when requested", NOW),
                ("Would have rolled back to", TARGET),
                ("State now", "unchanged: runs v1.2.5"),
            ],
        ),
    ],
)
def test_each_state_says_what_is_true_of_it(
    fields: dict[str, Any], shown: list[tuple[str, str]]
) -> None:
    assert version_fields(backend_rollback(**fields)) == shown


def step(status: StepStatus, **fields: Any) -> PlanStep:
    values = {"name": "railway", "kind": "railway", "current": "d-old", "target": "d-good"}
    return PlanStep(**(values | fields), status=status)


def test_a_retry_after_a_step_ran_does_not_say_the_old_version_runs() -> None:
    retried = backend_rollback(
        state=State.APPROVED,
        steps=[step(StepStatus.DONE), step(StepStatus.FAILED, name="database")],
    )
    assert version_fields(retried)[0] == ("Before the rollback", NOW)


def test_versions_named_by_a_platform_id_are_shown_as_people_know_them() -> None:
    names = {
        "d-old": "v1.2.4 (deployment d-old)",
        "d-good": "v1.2.3 (deployment d-good)",
        "d-new": "v1.2.3 (deployment d-new)",
    }
    rollback = backend_rollback(
        current_version="d-old",
        target_version="d-good",
        steps=[step(StepStatus.PENDING, shown_as=names)],
    )
    assert version_fields(rollback) == [
        ("Running now", "`v1.2.4 (deployment d-old)`"),
        ("Roll back to", "`v1.2.3 (deployment d-good)`"),
    ]
    # Railway serves a new deployment made from the target: that one runs now.
    done = rollback.model_copy(
        update={
            "state": State.SUCCEEDED,
            "steps": [step(StepStatus.DONE, shown_as=names, running="d-new")],
        }
    )
    assert version_fields(done) == [
        ("Running now", "`v1.2.3 (deployment d-new)`"),
        ("Before the rollback", "`v1.2.4 (deployment d-old)`"),
    ]


def test_a_reverted_commit_says_what_runs_with_it_reverted() -> None:
    reverted = backend_rollback(
        state=State.SUCCEEDED, target_version="revert abc1234", bad_commit="abc1234"
    )
    assert version_fields(reverted)[0] == (
        "Running now",
        "`v1.2.4` with commit `abc1234` reverted",
    )
