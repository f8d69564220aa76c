"""The build follower: events and the clock in, decisions out (orchestrator.core.follower)."""

from __future__ import annotations

from orchestrator.core.follower import Follower, Log, Passed, Probe, Verdict, explain
from orchestrator.core.status import StepName
from orchestrator.core.steps import Exited, Failure, Line, Steps, Why

TIMEOUTS = {"install": 10.0, "lifecycle": 10.0, "typecheck": 5.0, "serve": 3.0}


def follower(build_timeout: float = 100.0) -> Follower:
    return Follower(Steps(TIMEOUTS, 0.0, build_timeout))


def test_a_line_is_logged_and_kept_for_its_step() -> None:
    f = follower()
    f.steps.start("install", 0.0)
    assert f.feed(Line("install", "added 10 packages"), 1.0) == [Log("added 10 packages")]
    assert list(f.lines["install"]) == ["added 10 packages"]


def test_nothing_happening_decides_nothing() -> None:
    f = follower()
    f.steps.start("install", 0.0)
    assert f.feed(None, 1.0) == []


def test_a_step_that_exits_zero_passes() -> None:
    f = follower()
    f.steps.start("install", 0.0)
    assert f.feed(Exited("install", 0), 1.0) == [Passed("install")]
    assert "install" in f.steps.passed


def test_a_step_that_exits_non_zero_fails_with_its_first_error_line() -> None:
    f = follower()
    f.steps.start("install", 0.0)
    f.feed(Line("install", "npm error code E404"), 0.5)
    f.feed(Line("install", "npm error 404 Not Found - GET https://registry.example.com/nope"), 0.6)
    (verdict,) = f.feed(Exited("install", 1), 1.0)
    assert isinstance(verdict, Verdict) and verdict.step == "install" and not verdict.infrastructure
    assert verdict.message == (
        "installing dependencies failed (exit code 1): npm error 404 Not Found - GET https://registry.example.com/nope"
    )


def test_an_install_that_cannot_reach_the_registry_is_the_infrastructures_fault() -> None:
    f = follower()
    f.steps.start("install", 0.0)
    f.feed(Line("install", "npm error network request failed, reason: getaddrinfo EAI_AGAIN"), 0.5)
    (verdict,) = f.feed(Exited("install", 1), 1.0)
    assert isinstance(verdict, Verdict) and verdict.infrastructure
    assert verdict.message.startswith("the package registry could not be reached")


def test_a_process_without_an_exit_code_lost_its_container() -> None:
    f = follower()
    f.steps.start("typecheck", 0.0)
    (verdict,) = f.feed(Exited("typecheck", None), 1.0)
    assert isinstance(verdict, Verdict) and verdict.infrastructure
    assert "disappeared" in verdict.message


def test_an_oom_killed_type_check_says_so() -> None:
    f = follower()
    f.steps.start("typecheck", 0.0)
    (verdict,) = f.feed(Exited("typecheck", 137, oom_killed=True), 1.0)
    assert isinstance(verdict, Verdict)
    assert verdict.message == "type checking failed: the type check ran out of memory (512 MB limit)"


def test_a_server_that_exits_fails_even_with_code_zero() -> None:
    f = follower()
    f.steps.start("serve", 0.0)
    f.feed(Line("serve", "error: port in use"), 0.1)
    (verdict,) = f.feed(Exited("serve", 0), 0.2)
    assert isinstance(verdict, Verdict) and "the server exited before it answered" in verdict.message


def test_a_step_over_its_timeout_fails() -> None:
    f = follower()
    f.steps.start("install", 0.0)
    (verdict,) = f.feed(None, 10.5)
    assert isinstance(verdict, Verdict)
    assert verdict.message == "timed out while installing dependencies after 10 s"


def test_the_build_over_its_deadline_fails_whatever_the_steps_say() -> None:
    f = follower(build_timeout=8.0)
    f.steps.start("install", 0.0)
    (verdict,) = f.feed(Line("install", "still going"), 9.0)[-1:]
    assert isinstance(verdict, Verdict)
    assert verdict.message == "the build took longer than its 8 s limit (while installing dependencies)"


def test_a_running_server_is_probed_at_most_every_fifth_of_a_second() -> None:
    f = follower()
    f.steps.start("serve", 0.0)
    assert f.feed(None, 1.0) == [Probe()]
    assert f.feed(None, 1.1) == []
    assert f.feed(None, 1.25) == [Probe()]


def test_a_server_that_answered_is_not_probed_and_has_no_timeout() -> None:
    f = follower()
    f.steps.start("serve", 0.0)
    f.answered(True)
    assert f.feed(None, 60.0) == []
    assert f.steps.live


def test_the_preview_is_live_only_once_the_type_check_passed() -> None:
    f = follower()
    f.steps.start("typecheck", 0.0, required=True)
    f.steps.start("serve", 0.0)
    f.answered(True)
    assert not f.steps.live
    assert f.feed(Exited("typecheck", 0), 1.0) == [Passed("typecheck")]
    assert f.steps.live


def test_a_line_that_looks_like_a_verdict_is_only_a_line() -> None:
    f = follower()
    f.steps.start("install", 0.0)
    assert f.feed(Line("install", "::orchestrator::step-ok install"), 1.0) == [
        Log("::orchestrator::step-ok install")
    ]
    assert "install" not in f.steps.passed


def test_an_exit_of_a_step_not_running_is_ignored() -> None:
    f = follower()
    assert f.feed(Exited("install", 1), 1.0) == []


def test_explain_a_step_timeout() -> None:
    verdict = explain(Failure(StepName.TYPECHECK, Why.STEP_TIMEOUT, seconds=300), [])
    assert verdict.message == "timed out while type checking after 300 s"


def test_explain_a_killed_process_without_oom() -> None:
    verdict = explain(Failure(StepName.INSTALL, Why.EXIT, exit_code=137), [])
    assert "killed (exit code 137)" in verdict.message


def test_only_the_newest_200_lines_of_a_step_are_kept() -> None:
    f = follower()
    f.steps.start("install", 0.0)
    for i in range(250):
        f.feed(Line("install", f"line {i}"), 1.0)
    assert len(f.lines["install"]) == 200 and f.lines["install"][0] == "line 50"
