"""The transition table: its rules, and DESIGN.md showing exactly what the code says."""

from __future__ import annotations

from pathlib import Path

from bot.models import FINAL_STATES, State
from bot.states import TRANSITIONS, LockChange, Trigger, holds_lock, markdown

DESIGN = Path(__file__).resolve().parent.parent / "DESIGN.md"


def test_design_shows_the_table_the_code_applies() -> None:
    text = DESIGN.read_text(encoding="utf-8")
    shown = text.split("<!-- states:begin -->\n", 1)[1].split("\n<!-- states:end -->", 1)[0]
    assert shown == markdown(), "regenerate DESIGN.md's table with `python -m bot.states`"


def test_every_trigger_has_one_entry_and_every_state_is_reachable() -> None:
    assert set(TRANSITIONS) == set(Trigger)
    reached = {State.REQUESTED} | {entry.target for entry in TRANSITIONS.values()}
    assert reached == set(State)


def test_the_lock_is_taken_into_and_released_out_of_exactly_the_locked_states() -> None:
    for entry in TRANSITIONS.values():
        into_lock = holds_lock(entry.target) and not all(holds_lock(s) for s in entry.sources)
        assert into_lock == (entry.lock is LockChange.TAKE), entry
        if entry.target in FINAL_STATES and any(holds_lock(s) for s in entry.sources):
            assert entry.lock is LockChange.RELEASE, entry
        if entry.lock is LockChange.KEEP:
            assert holds_lock(entry.target), entry


def test_final_states_have_no_way_out_but_a_retry() -> None:
    leaving = {s for entry in TRANSITIONS.values() for s in entry.sources}
    assert leaving & FINAL_STATES == {State.FAILED}
    assert [t for t, e in TRANSITIONS.items() if State.FAILED in e.sources] == [Trigger.RETRY]
