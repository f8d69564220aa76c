"""The coordination stores: Redis and memory behave alike."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator.coordination.stores import Stores, memory_stores, redis_stores
from orchestrator.core.expiry import Activity
from orchestrator.core.hosts import HostInfo
from orchestrator.core.status import EventType
from tests.contracts.conftest import IMPLEMENTATIONS, real_redis

_ASYNC_CLIENTS: list[Any] = []
"""The asyncio Redis clients a test made (closed in the event loop that made them)."""


@pytest.fixture(params=IMPLEMENTATIONS)
def stores(request):
    if request.param == "memory":
        yield memory_stores()
        return
    from redis.asyncio import Redis as AsyncRedis

    from tests.contracts.conftest import REDIS_URL

    def async_client() -> AsyncRedis:
        client = AsyncRedis.from_url(REDIS_URL)
        _ASYNC_CLIENTS.append(client)
        return client

    redis = real_redis()
    yield redis_stores(redis, async_client)
    redis.close()


# -- ports ------------------------------------------------------------------------------


def test_a_port_is_claimed_once(stores: Stores) -> None:
    assert stores.ports.claim(41000, "a")
    assert not stores.ports.claim(41000, "b")
    assert stores.ports.owner(41000) == "a"


def test_only_the_owner_releases_a_port(stores: Stores) -> None:
    stores.ports.claim(41001, "a")
    assert not stores.ports.release(41001, "b")
    assert stores.ports.release(41001, "a")
    assert stores.ports.owner(41001) is None


def test_a_port_is_handed_over_only_by_its_owner(stores: Stores) -> None:
    stores.ports.claim(41002, "a")
    assert not stores.ports.transfer(41002, "b", "c")
    assert stores.ports.transfer(41002, "a", "c")
    assert stores.ports.owner(41002) == "c"


def test_held_lists_every_port_with_its_owner(stores: Stores) -> None:
    stores.ports.claim(41003, "a")
    stores.ports.claim(41004, "b")
    assert stores.ports.held() == {41003: "a", 41004: "b"}


# -- admission --------------------------------------------------------------------------


def _limits(building: int = 4, per_user: int = 2):
    from orchestrator.coordination.admission import SlotLimits

    return SlotLimits(building, per_user)


def test_the_lowest_score_is_admitted_first(stores: Stores) -> None:
    stores.admission.add("late", 1, 20.0)
    stores.admission.add("early", 2, 10.0)
    assert stores.admission.waiting() == ["early", "late"]
    assert stores.admission.position("late") == 2
    assert stores.admission.admit(_limits()) == "early"
    assert stores.admission.active() == {"early": "2"}


def test_the_global_limit_holds(stores: Stores) -> None:
    for i in range(3):
        stores.admission.add(f"b{i}", i, float(i))
    assert stores.admission.admit(_limits(building=1)) == "b0"
    assert stores.admission.admit(_limits(building=1)) is None
    stores.admission.release("b0")
    assert stores.admission.admit(_limits(building=1)) == "b1"


def test_the_per_user_limit_lets_another_user_overtake(stores: Stores) -> None:
    stores.admission.add("a1", 1, 1.0)
    stores.admission.add("a2", 1, 2.0)
    stores.admission.add("b1", 2, 3.0)
    assert stores.admission.admit(_limits(per_user=1)) == "a1"
    assert stores.admission.admit(_limits(per_user=1)) == "b1"
    assert stores.admission.admit(_limits(per_user=1)) is None
    assert stores.admission.owners(["a2", "b1"]) == {"a2": "1"}


def test_one_owners_thousands_of_waiting_builds_never_hide_another_owners(stores: Stores) -> None:
    for i in range(1500):  # all ahead of the other owner's one build
        stores.admission.add(f"flood-{i:04}", "flooder", float(i))
    stores.admission.add("patient", "other", 5000.0)
    limits = _limits(building=10, per_user=2)
    assert [stores.admission.admit(limits) for _ in range(3)] == ["flood-0000", "flood-0001", "patient"]
    assert stores.admission.admit(limits) is None  # the flooder is at their limit
    stores.admission.release("flood-0000")
    assert stores.admission.admit(limits) == "flood-0002"  # their own order kept


def test_withdrawing_an_owners_first_build_makes_their_next_one_first(stores: Stores) -> None:
    stores.admission.add("a1", 1, 1.0)
    stores.admission.add("a2", 1, 4.0)
    stores.admission.add("b1", 2, 3.0)
    assert stores.admission.withdraw("a1")
    assert stores.admission.admit(_limits()) == "b1"
    assert stores.admission.admit(_limits()) == "a2"


def test_a_build_added_again_waits_at_its_new_score(stores: Stores) -> None:
    stores.admission.add("a1", 1, 9.0)
    stores.admission.add("b1", 2, 5.0)
    stores.admission.add("a1", 1, 1.0)  # aged, or its priority raised
    assert stores.admission.waiting() == ["a1", "b1"]
    assert stores.admission.admit(_limits()) == "a1"


def test_a_withdrawn_build_is_not_admitted(stores: Stores) -> None:
    stores.admission.add("x", 1, 1.0)
    assert stores.admission.withdraw("x")
    assert not stores.admission.withdraw("x")
    assert stores.admission.admit(_limits()) is None
    assert stores.admission.position("x") is None


def test_a_deferred_build_waits_again_only_when_due(stores: Stores) -> None:
    stores.admission.defer("retry", 7, 5.0, until=100.0)
    assert stores.admission.waiting() == [] and stores.admission.deferred() == ["retry"]
    assert stores.admission.due(now=99.0) == []
    assert stores.admission.due(now=100.0) == ["retry"]
    assert stores.admission.waiting() == ["retry"] and stores.admission.deferred() == []
    assert stores.admission.owners(["retry"]) == {"retry": "7"}
    assert stores.admission.due(now=200.0) == []


def test_withdrawing_a_deferred_build_drops_it(stores: Stores) -> None:
    stores.admission.defer("retry", 7, 5.0, until=100.0)
    assert stores.admission.withdraw("retry")
    assert stores.admission.due(now=1000.0) == []


# -- events -----------------------------------------------------------------------------


def test_events_are_read_in_order_after_a_cursor(stores: Stores) -> None:
    stores.events.publish("b", [(EventType.LOG, {"line": "one"}), (EventType.LOG, {"line": "two"})])
    first, second = stores.events.read("b")
    assert (first.data, second.data) == ({"line": "one"}, {"line": "two"})
    assert [e.data for e in stores.events.read("b", first.id)] == [{"line": "two"}]
    assert stores.events.read("other") == []


def test_a_status_event_that_ends_the_build_ends_the_stream(stores: Stores) -> None:
    stores.events.publish("b", [(EventType.STATUS, {"status": "building"})])
    stores.events.publish("b", [(EventType.STATUS, {"status": "running"}), (EventType.LOG, {"line": "late"})])
    found = stores.events.read("b")
    assert [e.ends_stream for e in found] == [False, True, False]


def _follow(stores: Stores, build_id: str, after: str | None, over: dict[str, Any] | None) -> list[Any]:
    async def is_over() -> dict[str, Any] | None:
        return over

    async def collect() -> list[Any]:
        found = [e async for e in stores.events.follow(build_id, after, is_over, poll_seconds=0.05)]
        while _ASYNC_CLIENTS:
            await _ASYNC_CLIENTS.pop().aclose()
        return found

    return asyncio.run(collect())


def test_following_stops_at_the_end_of_the_stream(stores: Stores) -> None:
    stores.events.publish("b", [(EventType.LOG, {"line": "x"}), (EventType.STATUS, {"status": "failed"})])
    found = _follow(stores, "b", None, None)
    assert [e.type for e in found] == ["log", "status"]


def test_following_a_build_that_is_over_replays_what_is_left_then_its_end(stores: Stores) -> None:
    stores.events.publish("b", [(EventType.LOG, {"line": "x"})])
    found = _follow(stores, "b", None, {"status": "stopped"})
    assert [e.data for e in found] == [{"line": "x"}, {"status": "stopped"}]
    assert found[-1].id is None


def test_following_resumes_after_the_last_event_seen(stores: Stores) -> None:
    stores.events.publish("b", [(EventType.LOG, {"line": "seen"}), (EventType.LOG, {"line": "new"})])
    seen = stores.events.read("b")[0]
    stores.events.publish("b", [(EventType.STATUS, {"status": "running"})])
    found = _follow(stores, "b", seen.id, None)
    assert [e.data for e in found] == [{"line": "new"}, {"status": "running"}]


# -- signals ----------------------------------------------------------------------------


def test_a_cancel_request_names_who_asked_until_cleared(stores: Stores) -> None:
    assert stores.signals.cancel_requested("b") is None
    stores.signals.request_cancel("b", "alice")
    assert stores.signals.cancel_requested("b") == "alice"
    stores.signals.clear_cancel("b")
    assert stores.signals.cancel_requested("b") is None


def test_a_heartbeat_says_the_attempt_is_alive_until_it_stops(stores: Stores) -> None:
    assert not stores.signals.alive("b", 1)
    stores.signals.beat("b", 1)
    assert stores.signals.alive("b", 1)
    assert not stores.signals.alive("b", 2)  # each attempt beats for itself
    stores.signals.beat("b", 2)
    stores.signals.stop_beating("b", 1)  # a stale attempt ending leaves its successor's beat
    assert not stores.signals.alive("b", 1) and stores.signals.alive("b", 2)


def test_heartbeats_are_kept_for_a_known_time(stores: Stores) -> None:
    assert stores.signals.kept_for() >= 0


def test_one_process_claims_a_recovery(stores: Stores) -> None:
    assert stores.signals.claim_recovery("b", 1)
    assert not stores.signals.claim_recovery("b", 1)
    assert stores.signals.claim_recovery("b", 2)
    assert stores.signals.claim_recovery("other", 1)


def test_a_periodic_task_is_due_once_per_interval(stores: Stores) -> None:
    assert stores.signals.due("gc", 60)
    assert not stores.signals.due("gc", 60)
    assert stores.signals.due("reconcile", 30)


def test_a_wake_ends_the_wait(stores: Stores) -> None:
    import time

    stores.signals.wake()
    started = time.monotonic()
    stores.signals.wait_for_wake(5)
    assert time.monotonic() - started < 1


# -- activity and the cache index ---------------------------------------------------------


def test_activity_is_saved_moved_and_forgotten(stores: Stores) -> None:
    assert stores.activity.load("a") is None
    stores.activity.save("a", Activity(12, 1000.0))
    assert stores.activity.load("a") == Activity(12, 1000.0)
    stores.activity.move("a", "b")
    assert stores.activity.load("a") is None and stores.activity.load("b") == Activity(12, 1000.0)
    stores.activity.forget("b")
    assert stores.activity.load("b") is None


def test_traffic_counts_add_up_across_gateways_and_move_with_a_preview(stores: Stores) -> None:
    from orchestrator.coordination.traffic import Counts

    assert stores.traffic.get("a") is None
    stores.traffic.add({"a": Counts(3, 100, 2000, 1000.5), "b": Counts(1, 0, 10, 900.0)})
    stores.traffic.add({"a": Counts(2, 50, 500, 999.0)})  # another gateway, an older last request
    assert stores.traffic.get("a") == Counts(5, 150, 2500, 1000.5)
    stores.traffic.add({"a": Counts(1, 0, 0, 1001.25)})
    found = stores.traffic.get("a")
    assert found is not None and found.requests == 6 and found.last_request == 1001.25
    stores.traffic.move("a", "c")
    assert stores.traffic.get("a") is None and stores.traffic.get("c") == found
    stores.traffic.forget("c")
    assert stores.traffic.get("c") is None and stores.traffic.get("b") == Counts(1, 0, 10, 900.0)


def test_a_task_claim_is_held_until_done(stores: Stores) -> None:
    assert stores.signals.due("wake:x", 60)
    assert not stores.signals.due("wake:x", 60)
    stores.signals.done("wake:x")
    assert stores.signals.due("wake:x", 60)


def test_a_cache_entry_remembers_its_last_use(stores: Stores) -> None:
    assert stores.cache.last_used("k") is None
    stores.cache.touch("k")
    used = stores.cache.last_used("k")
    assert used is not None and used > 1_700_000_000
    stores.cache.forget("k")
    assert stores.cache.last_used("k") is None


def test_a_fill_lock_is_held_by_one_at_a_time(stores: Stores) -> None:
    import threading

    order: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait(5)
        with stores.cache.filling("k", timeout=5):
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with stores.cache.filling("k", timeout=5):
        inside.set()
        import time

        time.sleep(0.2)
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]


def test_the_last_event_id_is_the_newest(stores: Stores) -> None:
    assert stores.events.last_id("b") is None
    stores.events.publish("b", [(EventType.LOG, {"line": "1"}), (EventType.LOG, {"line": "2"})])
    assert stores.events.last_id("b") == stores.events.read("b")[-1].id


def test_waiting_returns_what_comes_after_the_cursor(stores: Stores) -> None:
    import threading

    stores.events.publish("b", [(EventType.LOG, {"line": "old"})])
    cursor = stores.events.last_id("b")
    later = threading.Timer(0.1, stores.events.publish, ("b", [(EventType.STATUS, {"status": "cancelled"})]))
    later.start()
    found = stores.events.wait("b", cursor, timeout=5)
    later.join()
    assert [e.data for e in found] == [{"status": "cancelled"}]


def test_waiting_for_nothing_ends_at_the_timeout(stores: Stores) -> None:
    import time

    started = time.monotonic()
    assert stores.events.wait("quiet", None, timeout=0.2) == []
    assert 0.15 < time.monotonic() - started < 2


# -- hosts ----------------------------------------------------------------------------


def _host(host_id: str) -> HostInfo:
    return HostInfo(
        host_id, "198.51.100.2", "unix:///run/engine.sock", "localhost", 4 << 30, 2, (41000, 41099)
    )


def test_a_host_beats_and_is_read_back_whole(stores: Stores) -> None:
    assert stores.hosts.live() == {} and stores.hosts.get("a") is None
    stores.hosts.beat(_host("a"))
    stores.hosts.beat(_host("b"))
    assert stores.hosts.live() == {"a": _host("a"), "b": _host("b")}
    assert stores.hosts.get("b") == _host("b")


def test_a_hosts_room_is_what_it_last_said(stores: Stores) -> None:
    assert stores.hosts.room("a") == (False, None)
    stores.hosts.report_room("a", None)
    assert stores.hosts.room("a") == (True, None)
    stores.hosts.report_room("a", "waiting for resources: memory")
    assert stores.hosts.room("a") == (True, "waiting for resources: memory")


def test_each_hosts_ports_are_its_own(stores: Stores) -> None:
    other = stores.ports_of("other-host", "local")
    assert (
        stores.ports_of(None, "local") is stores.ports and stores.ports_of("local", "local") is stores.ports
    )
    assert stores.ports.claim(41000, "a@1") and other.claim(41000, "b@1")
    assert stores.ports.owner(41000) == "a@1" and other.owner(41000) == "b@1"
    assert stores.ports_of("other-host", "local").held() == {41000: "b@1"}
