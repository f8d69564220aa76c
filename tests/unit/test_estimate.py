from datetime import UTC, datetime, timedelta

from orchestrator.core.estimate import remaining_seconds, step_durations, typical_durations

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def recorded(**durations: float) -> dict:
    """A build's steps as the recorder writes them, each step starting when the last ended."""
    steps, at = {}, T0
    for name, seconds in durations.items():
        steps[name] = {
            "startedAt": at.isoformat(),
            "endedAt": (at + timedelta(seconds=seconds)).isoformat(),
            "status": "ok",
        }
        at += timedelta(seconds=seconds)
    return steps


# Timings recorded from real react-ts builds on this machine (seconds).
HISTORY = [
    recorded(extract=0.41, install=18.90, typecheck=1.60, serve=1.41),
    recorded(extract=0.57, install=19.34, typecheck=2.01, serve=1.39),
    recorded(extract=0.47, install=17.23, typecheck=1.70, serve=2.42),
]


def test_durations_and_medians():
    assert step_durations(HISTORY[0]) == {"extract": 0.41, "install": 18.9, "typecheck": 1.6, "serve": 1.41}
    typical = typical_durations(step_durations(s) for s in HISTORY)
    assert typical == {"extract": 0.47, "install": 18.9, "typecheck": 1.7, "serve": 1.41}


def test_failed_and_unfinished_steps_are_not_history():
    steps = recorded(extract=1, install=5)
    steps["install"]["status"] = "failed"
    steps["typecheck"] = {"startedAt": T0.isoformat(), "endedAt": None, "status": "running"}
    assert step_durations(steps) == {"extract": 1.0}


def test_queued_build_needs_every_step():
    typical = typical_durations(step_durations(s) for s in HISTORY)
    # the type check (1.7) and the server (1.41) run side by side: the longer one counts
    assert remaining_seconds(typical, "queued", {}, T0) == round(0.47 + 18.9 + max(1.7, 1.41), 1)


def test_time_spent_in_the_current_step_is_taken_off():
    typical = {"extract": 1.0, "install": 20.0, "typecheck": 2.0, "serve": 1.0}
    steps = recorded(extract=1)
    steps["install"] = {
        "startedAt": (T0 + timedelta(seconds=1)).isoformat(),
        "endedAt": None,
        "status": "running",
    }
    assert remaining_seconds(typical, "building", steps, T0 + timedelta(seconds=6)) == 15.0 + 2.0
    # a step that overruns its typical time contributes 0, not a negative number
    assert remaining_seconds(typical, "building", steps, T0 + timedelta(seconds=60)) == 2.0


def test_nothing_to_go_on_is_none_and_finished_builds_need_nothing():
    assert remaining_seconds({}, "building", {}, T0) is None
    assert remaining_seconds({"install": 3.0}, "queued", {}, T0) == 3.0  # steps never seen: 0 s
    assert remaining_seconds({"install": 3.0}, "running", {}, T0) == 0.0
    assert remaining_seconds({"install": 3.0}, "failed", {}, T0) is None


def test_between_steps_counts_the_steps_not_yet_started():
    typical = {"extract": 1.0, "install": 20.0, "typecheck": 2.0, "serve": 1.0}
    steps = recorded(extract=1, install=20)
    assert remaining_seconds(typical, "building", steps, T0) == 2.0


def test_the_type_check_and_the_server_count_as_one_phase_from_when_the_first_started():
    typical = {"extract": 1.0, "install": 0.0, "typecheck": 3.0, "serve": 1.0}
    steps = recorded(extract=1)
    steps["typecheck"] = {
        "startedAt": (T0 + timedelta(seconds=1)).isoformat(),
        "endedAt": None,
        "status": "running",
    }
    steps["serve"] = {
        "startedAt": (T0 + timedelta(seconds=1)).isoformat(),
        "endedAt": None,
        "status": "running",
    }
    assert remaining_seconds(typical, "building", steps, T0 + timedelta(seconds=2)) == 2.0
