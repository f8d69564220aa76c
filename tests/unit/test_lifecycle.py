"""When a live preview stops, and why (orchestrator.core.expiry: pure rules)."""

from orchestrator.core.expiry import Activity, Policy, StopReason, duration, explain, observe, reap_reason

POLICY = Policy(idle_ttl=1800, max_age=86400)


def test_a_first_observation_counts_as_activity() -> None:
    assert observe(None, 42, now=1000.0) == Activity(42, 1000.0)
    assert observe(None, None, now=1000.0) == Activity(None, 1000.0)


def test_traffic_moves_the_last_activity_and_silence_keeps_it() -> None:
    seen = Activity(42, 1000.0)
    assert observe(seen, 42, now=2000.0) == Activity(42, 1000.0)
    assert observe(seen, 57, now=2000.0) == Activity(57, 2000.0)


def test_an_unreadable_counter_changes_nothing() -> None:
    assert observe(Activity(42, 1000.0), None, now=2000.0) == Activity(42, 1000.0)


def test_a_counter_that_restarts_lower_is_traffic_too() -> None:
    assert observe(Activity(42, 1000.0), 3, now=2000.0) == Activity(3, 2000.0)


def test_reap_reasons_in_order_of_precedence() -> None:
    assert reap_reason(POLICY, age=60, idle=60) is None
    assert reap_reason(POLICY, age=3600, idle=1799) is None
    assert reap_reason(POLICY, age=3600, idle=1800) is StopReason.IDLE
    assert reap_reason(POLICY, age=86400, idle=0) is StopReason.EXPIRED
    assert reap_reason(POLICY, age=86400, idle=5000) is StopReason.EXPIRED
    assert reap_reason(POLICY, age=10, idle=0, website_deleted=True) is StopReason.DELETED


def test_explanations_name_the_measure_and_the_limit() -> None:
    assert (
        explain(StopReason.IDLE, POLICY, age=4000, idle=1900)
        == "no traffic for 31 min 40 s (idle limit 30 min)"
    )
    assert explain(StopReason.EXPIRED, POLICY, age=90000, idle=0) == "live for 25 h (lifetime limit 24 h)"
    assert explain(StopReason.DELETED, POLICY, age=1, idle=1) == "its website was deleted"


def test_durations_read_like_a_person_writes_them() -> None:
    assert [duration(s) for s in (4.7, 60, 90, 3600, 3725, -3)] == [
        "4 s",
        "1 min",
        "1 min 30 s",
        "1 h",
        "1 h 2 min",
        "0 s",
    ]
