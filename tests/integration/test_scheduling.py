"""Scheduling with real workers, real containers and Redis: limits, priorities with aging,
cancel, supersede and step timeouts. Its own stack: 3 workers, at most 2 builds at once, 1 per
user, one priority level per second of waiting, a 5 s install timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from tests.integration.conftest import Stack, stack_env, vite_project, zip_dir

pytestmark = pytest.mark.integration

AGING = 1.0
SITE = [("index.html", b"<h1>scheduled</h1>")]
ENDED = ("running", "failed", "cancelled", "stopped")


@pytest.fixture(scope="module")
def stack(services, runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = stack_env(
        tmp_path_factory.mktemp("sched"),
        13,
        (42200, 42399),
        ORCHESTRATOR_MAX_BUILDING="2",
        ORCHESTRATOR_MAX_BUILDING_PER_USER="1",
        ORCHESTRATOR_AGING_SECONDS=str(AGING),
        ORCHESTRATOR_INSTALL_TIMEOUT="5",
        ORCHESTRATOR_MAX_CPU_PERCENT="100",
        ORCHESTRATOR_MAX_MEMORY_PERCENT="100",
        ORCHESTRATOR_BUILD_MEMORY_BUDGET_MB="65536",
    )
    running = Stack("sched", env, workers=3).start()
    yield running
    running.stop(runtime)


@pytest.fixture(scope="module")
def slow_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A Vite project whose own install script outlives the 5 s install timeout: it holds a
    slot ~6 s (its dependencies install, or come from the cache, then `preinstall` sleeps)."""
    folder = vite_project(tmp_path_factory.mktemp("slow"), "slow", scripts={"preinstall": "sleep 30"})
    return zip_dir(folder)


def post(client: httpx.Client, files, **data) -> dict:
    response = client.post("/api/websites", files=[("files", f) for f in files], data=data or None)
    assert response.status_code == 202, response.text
    return response.json()["website"]


def status(client: httpx.Client, job: str) -> dict:
    return client.get(f"/api/builds/{job}/status").json()


def wait_for(client: httpx.Client, job: str, statuses=ENDED, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = status(client, job)
        if found["status"] in statuses:
            return found
        time.sleep(0.2)
    raise AssertionError(f"build {job} still {found['status']} after {timeout} s")


def test_global_and_per_user_limits_hold_across_workers(stack: Stack) -> None:
    users = [stack.client("user", f"user-{i}") for i in range(3)]
    admin = stack.client("admin", "watcher")
    jobs = {post(u, SITE)["buildJobId"]: i for i, u in enumerate(users) for _ in range(2)}
    peak_total, peak_per_user = 0, 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        builds = [b for b in admin.get("/api/builds").json() if b["id"] in jobs]
        building = [jobs[b["id"]] for b in builds if b["status"] == "building"]
        peak_total = max(peak_total, len(building))
        peak_per_user = max([peak_per_user] + [building.count(u) for u in set(building)])
        if all(b["status"] in ENDED for b in builds) and len(builds) == len(jobs):
            break
        time.sleep(0.05)
    assert all(status(admin, j)["status"] == "running" for j in jobs)
    print(f"peak building: {peak_total} (limit 2), per user: {peak_per_user} (limit 1)")
    assert peak_total == 2 and peak_per_user == 1


def test_a_waiting_build_says_why_and_where_it_is(stack: Stack, slow_zip: bytes) -> None:
    admins = [stack.client("admin", f"blocker-{i}") for i in range(2)]  # two users: the per-user limit is 1
    admin, user = admins[0], stack.client("user", "patient")
    blockers = [post(a, [("slow.zip", slow_zip)])["buildJobId"] for a in admins]
    for job in blockers:
        wait_for(admin, job, ("building",), timeout=30)
    waiting = post(user, SITE)["buildJobId"]
    deadline = time.monotonic() + 20  # the free worker's next dispatch round writes the reason
    while (found := status(user, waiting))["waitReason"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert found["status"] == "queued" and found["queuePosition"] == 1
    assert found["waitReason"] == "waiting for a free build slot (2 of 2 in use)"
    assert found["estimatedTimeRemaining"] is not None

    failed = wait_for(admin, blockers[0])
    assert failed["status"] == "failed"
    assert failed["error"] in (
        "timed out while running the project's install scripts after 5 s",
        "timed out while installing dependencies after 5 s",  # the cache's first fill was slow
    )
    assert wait_for(user, waiting)["status"] == "running"
    wait_for(admin, blockers[1])


def test_cancel_queued_and_building_and_supersede(stack: Stack, slow_zip: bytes, runtime) -> None:
    admin, other = stack.client("admin", "canceller"), stack.client("admin", "other")
    first = post(admin, [("slow.zip", slow_zip)])
    second = post(other, [("slow.zip", slow_zip)])
    building = wait_for(admin, first["buildJobId"], ("building",), timeout=30)
    wait_for(admin, second["buildJobId"], ("building",), timeout=30)
    queued = post(admin, SITE)  # both slots are taken: it waits
    assert status(admin, queued["buildJobId"])["status"] == "queued"

    # a newer upload of the same website supersedes its queued build
    newer = post(admin, SITE, websiteId=queued["id"])
    superseded = status(admin, queued["buildJobId"])
    assert superseded["status"] == "cancelled"
    assert superseded["cancelledBy"] == f"a newer build of this website ({newer['buildJobId']})"

    # cancelling a queued build is immediate
    response = admin.post(f"/api/builds/{newer['buildJobId']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert response.json()["cancelledBy"] == "canceller"

    # cancelling a building one stops its container (the answer waits up to 5 s for it; on a
    # loaded machine it may still say building, with the cancel requested)
    response = admin.post(f"/api/builds/{first['buildJobId']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] in ("cancelled", "building")
    wait_for(admin, first["buildJobId"], ("cancelled",), timeout=60)
    record = admin.get(f"/api/builds/{first['buildJobId']}").json()
    assert record["allocatedPort"] is None and "Cancelled by canceller" in record["logs"]
    assert runtime.state(building["jobId"]) is None
    ours = runtime.client.api.containers(
        all=True, filters={"label": [f"org.website-orchestrator.build-id={first['buildJobId']}"]}
    )
    assert ours == []

    # a build that is over cannot be cancelled
    assert admin.post(f"/api/builds/{first['buildJobId']}/cancel").status_code == 409
    wait_for(admin, second["buildJobId"])


def test_priorities_age_so_nothing_waits_behind_later_arrivals_past_the_bound(
    stack: Stack, slow_zip: bytes
) -> None:
    """A low-priority build (0) arrives; then high-priority builds (10) stream in every 0.5 s.
    Bound: with one level per AGING second, no build arriving more than 10 * AGING s after the
    low one starts before it."""
    admins = [
        stack.client("admin", f"stream-{i}") for i in range(4)
    ]  # several users: the per-user limit is 1
    admin, user = admins[0], stack.client("user", "low")
    for a in admins[:2]:  # fill both slots so that a queue forms
        post(a, [("slow.zip", slow_zip)])
    time.sleep(1)
    low = post(user, SITE, priority="0")["buildJobId"]
    high: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set() and len(high) < 30:
            high.append(post(admins[len(high) % len(admins)], SITE, priority="10")["buildJobId"])
            time.sleep(0.5)

    feeder = threading.Thread(target=stream)
    feeder.start()
    try:
        assert wait_for(user, low, timeout=240)["status"] == "running"
    finally:
        stop.set()
        feeder.join()
    record = lambda job: admin.get(f"/api/builds/{job}").json()  # noqa: E731
    low_record = record(low)
    low_created = datetime.fromisoformat(low_record["createdAt"])
    low_started = datetime.fromisoformat(low_record["startedAt"])
    window = 10 * AGING
    overtook, behind = [], []
    for job in high:
        other = record(job)
        if other["startedAt"] and datetime.fromisoformat(other["startedAt"]) < low_started:
            overtook.append((datetime.fromisoformat(other["createdAt"]) - low_created).total_seconds())
        else:
            behind.append((datetime.fromisoformat(other["createdAt"]) - low_created).total_seconds())
    print(
        f"{len(overtook)} later builds went first, arrived up to {max(overtook, default=0):.1f} s after; "
        f"{len(behind)} waited behind it; bound {window:.0f} s"
    )
    assert overtook, "higher priorities must go first"
    assert max(overtook) <= window + 0.5
    assert any(lag > window for lag in behind), (
        "the stream must outlast the bound for the test to mean anything"
    )
