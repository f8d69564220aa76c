import pytest

from orchestrator.core.exceptions import InvalidTransition
from orchestrator.core.status import ACTIVE, TERMINAL, TRANSITIONS, Status, can_transition, check_transition


def test_happy_path_is_allowed():
    path = [Status.PENDING, Status.QUEUED, Status.BUILDING, Status.RUNNING, Status.STOPPED]
    for current, new in zip(path, path[1:], strict=False):
        assert check_transition(current, new) is new


@pytest.mark.parametrize("status", [Status.PENDING, Status.QUEUED, Status.BUILDING])
def test_every_active_build_can_fail_or_be_cancelled(status):
    assert can_transition(status, Status.FAILED)
    assert can_transition(status, Status.CANCELLED)


def test_terminal_statuses_go_nowhere():
    assert {Status.FAILED, Status.CANCELLED, Status.STOPPED} == TERMINAL
    for status in TERMINAL:
        for new in Status:
            assert not can_transition(status, new)


def test_a_live_preview_can_only_sleep_or_be_stopped():
    assert TRANSITIONS[Status.RUNNING] == {Status.STOPPED, Status.SLEEPING}
    with pytest.raises(InvalidTransition, match="from running to failed"):
        check_transition(Status.RUNNING, Status.FAILED)


def test_a_sleeping_preview_wakes_or_is_removed():
    assert TRANSITIONS[Status.SLEEPING] == {Status.RUNNING, Status.STOPPED}
    with pytest.raises(InvalidTransition, match="from sleeping to building"):
        check_transition(Status.SLEEPING, Status.BUILDING)


def test_no_skipping_the_queue_and_no_going_back():
    assert not can_transition(Status.PENDING, Status.BUILDING)
    assert not can_transition(Status.QUEUED, Status.RUNNING)
    assert not can_transition(Status.RUNNING, Status.BUILDING)
    assert can_transition(Status.BUILDING, Status.QUEUED)  # a lost worker's build is re-queued


def test_strings_are_accepted_and_every_status_has_a_row():
    assert check_transition("queued", "building") is Status.BUILDING
    assert set(TRANSITIONS) == set(Status)
    assert ACTIVE.isdisjoint(TERMINAL)
