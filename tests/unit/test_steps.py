"""The build's steps judged from what Docker reports, never from what the project prints."""

import pytest

from orchestrator.core.steps import Exited, Steps, Why

TIMEOUTS = {"install": 600, "lifecycle": 600, "typecheck": 300, "serve": 120}


def steps(build_timeout: float = 1000) -> Steps:
    return Steps(TIMEOUTS, started_at=0.0, build_timeout=build_timeout)


def test_a_step_passes_only_on_its_own_exit_code_zero() -> None:
    s = steps()
    s.start("lifecycle", 1.0)
    assert s.exited(Exited("lifecycle", 0)) is None
    assert "lifecycle" in s.passed


def test_a_non_zero_exit_is_the_steps_failure() -> None:
    s = steps()
    s.start("typecheck", 1.0, required=True)
    failure = s.exited(Exited("typecheck", 2))
    assert failure is not None
    assert (failure.step, failure.why, failure.exit_code) == ("typecheck", Why.EXIT, 2)


def test_the_out_of_memory_flag_travels_with_the_failure() -> None:
    s = steps()
    s.start("typecheck", 1.0)
    failure = s.exited(Exited("typecheck", 137, oom_killed=True))
    assert failure is not None and failure.oom_killed


def test_the_server_exiting_is_a_failure_even_with_code_zero() -> None:
    s = steps()
    s.start("serve", 1.0)
    failure = s.exited(Exited("serve", 0))
    assert failure is not None and failure.step == "serve"


def test_an_exit_of_a_step_never_started_changes_nothing() -> None:
    s = steps()
    assert s.exited(Exited("typecheck", 0)) is None
    assert s.passed == set()


def test_step_names_come_from_the_plan_only() -> None:
    with pytest.raises(ValueError, match="no such step"):
        steps().start("pwned", 0.0)


def test_a_running_step_cannot_be_started_again() -> None:
    s = steps()
    s.start("install", 0.0)
    with pytest.raises(ValueError, match="twice"):
        s.start("install", 1.0)


def test_a_step_may_run_again_after_it_passed() -> None:
    s = steps()
    s.start("install", 0.0)
    s.exited(Exited("install", 0))
    s.start("install", 5.0)  # the fill's second part (dependencies' install scripts)
    assert "install" not in s.passed and "install" in s.running


def test_live_needs_the_server_answering_and_the_type_check_passed() -> None:
    s = steps()
    s.start("typecheck", 1.0, required=True)
    s.start("serve", 1.0)
    assert s.should_probe and not s.live
    s.answered = True
    assert not s.live and not s.should_probe
    s.exited(Exited("typecheck", 0))
    assert s.live


def test_live_without_a_type_check() -> None:
    s = steps()
    s.start("serve", 1.0)
    s.answered = True
    assert s.live


def test_a_step_past_its_own_timeout() -> None:
    s = steps()
    s.start("typecheck", 10.0)
    assert s.overdue(309.0) is None
    failure = s.overdue(311.0)
    assert failure is not None and (failure.step, failure.why, failure.seconds) == (
        "typecheck",
        Why.STEP_TIMEOUT,
        300,
    )


def test_a_server_that_answered_has_no_deadline_left() -> None:
    s = steps()
    s.start("serve", 0.0)
    s.answered = True
    s.start("typecheck", 0.0, required=True)
    assert s.overdue(200.0) is None  # past the server's 120 s, but it answered


def test_the_build_deadline_holds_whatever_the_steps_do() -> None:
    s = steps(build_timeout=100)
    s.start("install", 0.0)
    s.exited(Exited("install", 0))
    s.start("lifecycle", 90.0)  # a fresh step: its own timeout is far off
    failure = s.overdue(101.0)
    assert failure is not None and (failure.step, failure.why) == ("lifecycle", Why.BUILD_TIMEOUT)


def test_the_build_deadline_with_no_step_running() -> None:
    failure = steps(build_timeout=10).overdue(11.0)
    assert failure is not None and failure.step == "build"
