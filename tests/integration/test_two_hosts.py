"""Two hosts, one service: a second dockerd in a network namespace of the test's own
(tests/integration/second_host.py) and a worker for each engine, against one Redis and one
PostgreSQL, with one API and one gateway on the first host.

Checked: builds spread over both; each host's ports, gc and cache are its own (both hosts use
the same port range); a rebuild follows its website's host; killing the second host (its worker,
engine and containers at once) queues its build in progress again on the first and stops its
previews with ``host-lost``, and its websites keep their stable URLs once rebuilt elsewhere.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis import Redis

from orchestrator.coordination import keys
from orchestrator.coordination.ports import RedisPortStore
from tests.integration.conftest import (
    ARTIFACTS,
    Stack,
    fresh_postgres_database,
    run_cli,
    stack_env,
    upload,
    vite_project,
    zip_dir,
)
from tests.integration.second_host import ADDRESS, ENGINE, IN_NETNS, SecondHost

pytestmark = pytest.mark.integration

PORTS = (42820, 42859)
"""Both hosts' preview ports: the same numbers, each host's own."""
SITES = 10
"""Websites uploaded at once (then a new version of each: 20 uploads)."""


@dataclass
class Pair:
    stack: Stack
    second: SecondHost
    client: httpx.Client
    sites: dict[str, dict] = field(default_factory=dict)
    """website id → its newest build record."""
    figures: dict[str, object] = field(default_factory=dict)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, runtime) -> Iterator[Pair]:
    ARTIFACTS.mkdir(exist_ok=True)
    database = fresh_postgres_database("orchestrator_two_hosts")
    env = stack_env(
        tmp_path_factory.mktemp("two-hosts"),
        1,
        PORTS,
        DATABASE_URL=database,
        ORCHESTRATOR_HOST_ID="host-a",
        ORCHESTRATOR_PREVIEW_ACCESS="open",
        ORCHESTRATOR_MAX_CPU_PERCENT="100",
        ORCHESTRATOR_MAX_MEMORY_PERCENT="100",
        ORCHESTRATOR_MAX_BUILDING_PER_USER="8",
    )
    with SecondHost(ARTIFACTS) as second:
        copied = time.monotonic()
        second.copy_image(env.get("ORCHESTRATOR_NODE_IMAGE") or "website-orchestrator/node:1")
        copied = time.monotonic() - copied
        stack = Stack("two-hosts", env, workers=1).start()
        try:
            stack.start_process(
                "worker-host-b",
                "worker",
                prefix=IN_NETNS,
                env={
                    "DOCKER_HOST": ENGINE,
                    "DATABASE_URL": SecondHost.database_url(database),
                    "ORCHESTRATOR_HOST_ID": "host-b",
                    "ORCHESTRATOR_HOST_ADDRESS": ADDRESS,
                    "ORCHESTRATOR_PREVIEW_BIND": "0.0.0.0",
                    "ORCHESTRATOR_PUBLIC_HOST": ADDRESS,
                },
            )
            client = stack.client()
            deadline = time.monotonic() + 90
            # Both live, and the second host's worker past its start (reconcile, gc): it says so
            # before it takes builds. (The API is healthy once the first host's worker works.)
            while {h["id"] for h in client.get("/api/hosts").json() if h["state"] == "live"} != {
                "host-a",
                "host-b",
            } or "Host host-b: previews reached at" not in worker_log(stack, 100):
                assert time.monotonic() < deadline, (client.get("/api/hosts").text, worker_log(stack))
                time.sleep(0.5)
            found = Pair(stack, second, client, figures={"image copy seconds": round(copied, 1)})
            yield found
            (ARTIFACTS / "two-hosts.json").write_text(json.dumps(found.figures, indent=2))
        finally:
            stack.stop(runtime)


def page(text: str) -> list[tuple[str, bytes]]:
    return [("index.html", text.encode())]


def wait_live(pair: Pair, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        build = pair.client.get(f"/api/builds/{job_id}").json()
        if build["status"] not in ("queued", "building"):
            assert build["status"] == "running", build
            return build
        time.sleep(0.25)
    raise AssertionError(f"build {job_id} did not go live in {timeout} s")


def worker_log(stack: Stack, lines: int = 40) -> str:
    """The end of the second host's worker's output."""
    path = ARTIFACTS / f"{stack.name}-worker-host-b.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def host_line(build: dict) -> str:
    """Where its last attempt ran, and why (each attempt says it)."""
    return [line for line in build["logs"] if line.startswith("Host: ")][-1]


def site_answers(pair: Pair, website_id: str, text: str) -> None:
    """The website's stable URL, through the gateway, answers ``text`` (whichever host serves it)."""
    answer = pair.stack.through_gateway(f"http://{website_id}.preview.localhost:{pair.stack.gateway_port}/")
    assert answer.status_code == 200 and text in answer.text, (answer.status_code, answer.text[:300])


def test_builds_spread_over_both_hosts_each_with_its_own_ports(pair: Pair) -> None:
    watched = [upload(pair.client, page(f"<h1>site {i}</h1>"), name=f"site-{i}") for i in range(SITES)]
    builds = [wait_live(pair, w.job_id) for w in watched]
    spread = Counter(b["hostId"] for b in builds)
    pair.figures["spread"] = dict(spread)
    pair.figures["placements"] = Counter(host_line(b).split(": ", 2)[2] for b in builds).most_common()
    hosts_now = pair.client.get("/api/hosts").json()
    assert set(spread) == {"host-a", "host-b"}, (spread, hosts_now, worker_log(pair.stack))
    for i, (w, build) in enumerate(zip(watched, builds, strict=True)):
        pair.sites[w.website_id] = build
        assert PORTS[0] <= build["allocatedPort"] <= PORTS[1]
        assert host_line(build).startswith(f"Host: {build['hostId']}: ")
        site_answers(pair, w.website_id, f"site {i}")
    redis = Redis.from_url(pair.stack.env["REDIS_URL"])
    for host in ("host-a", "host-b"):
        held = RedisPortStore(redis, keys.on_host(keys.PORT, host)).held()
        assert sorted(held) == sorted(b["allocatedPort"] for b in builds if b["hostId"] == host)
    on_b = [b for b in builds if b["hostId"] == "host-b"]
    assert all(b["previewUrl"].startswith(f"http://{ADDRESS}:") for b in on_b)
    hosts = {h["id"]: h for h in pair.client.get("/api/hosts").json()}
    assert hosts["host-b"]["address"] == ADDRESS and hosts["host-b"]["running"] == spread["host-b"]
    assert hosts["host-a"]["running"] == spread["host-a"]


def test_new_versions_follow_their_websites_hosts_and_keep_their_urls(pair: Pair) -> None:
    assert len(pair.sites) == SITES, "the first uploads did not all go live"
    placements = []
    for website_id, first in list(pair.sites.items()):  # one at a time: each host's queue is empty
        again = upload(pair.client, page(f"<h1>version 2 of {website_id}</h1>"), website_id=website_id)
        build = wait_live(pair, again.job_id)
        placements.append(host_line(build).split(": ", 2)[2])
        assert (
            build["hostId"] == first["hostId"] and "previous build ran" in placements[-1]
        )  # (here, or there)
        site_answers(pair, website_id, f"version 2 of {website_id}")
        pair.sites[website_id] = build
    pair.figures["second versions: placements"] = Counter(placements).most_common()


def test_each_hosts_gc_touches_only_its_own_previews(pair: Pair) -> None:
    assert len(pair.sites) == SITES, "the first uploads did not all go live"
    env = {**pair.stack.env, "ORCHESTRATOR_HOST_ID": "host-a"}
    report = json.loads(run_cli("gc", "--dry-run", "--idle-ttl", "0", "--json", env=env).stdout)
    stopped = {a["target"] for a in report["actions"] if a["action"] == "stop preview"}
    on_a = {b["id"] for b in pair.sites.values() if b["hostId"] == "host-a"}
    assert stopped == on_a, report["actions"]


def test_a_lost_host_has_its_build_queued_again_elsewhere_and_its_previews_stopped(
    pair: Pair, tmp_path: Path
) -> None:
    on_b = [w for w, b in pair.sites.items() if b["hostId"] == "host-b"]
    assert len(on_b) >= 2, pair.sites
    building_site, resting_site = on_b[0], on_b[1]
    project = vite_project(tmp_path / "moving", "moving house")
    moving = upload(pair.client, [("site.zip", zip_dir(project))], website_id=building_site)
    deadline = time.monotonic() + 120
    while (found := pair.client.get(f"/api/builds/{moving.job_id}").json())["status"] != "building":
        assert time.monotonic() < deadline and found["status"] == "queued", found
        time.sleep(0.2)
    assert found["hostId"] == "host-b", found
    pair.second.kill()
    killed = time.monotonic()
    build = wait_live(pair, moving.job_id, timeout=240)
    pair.figures["lost host: build live again after (s)"] = round(time.monotonic() - killed, 1)
    assert build["hostId"] == "host-a" and build["attempts"] == 2
    assert "last attempt was lost on host host-b" in host_line(build)
    assert any("worker running this build was lost" in line for line in build["logs"])
    site_answers(pair, building_site, "moving house")  # its stable URL, now served by host-a

    old = pair.sites[resting_site]["id"]
    deadline = time.monotonic() + 120
    while (record := pair.client.get(f"/api/builds/{old}").json())["status"] == "running":
        assert time.monotonic() < deadline, record
        time.sleep(0.5)
    pair.figures["lost host: previews stopped after (s)"] = round(time.monotonic() - killed, 1)
    assert record["status"] == "stopped" and record["stopReason"] == "host-lost"
    hosts = {h["id"]: h for h in pair.client.get("/api/hosts").json()}
    assert hosts["host-b"]["state"] == "lost" and hosts["host-b"]["running"] == 0
    rebuilt = wait_live(pair, upload(pair.client, page("<h1>moved</h1>"), website_id=resting_site).job_id)
    assert rebuilt["hostId"] == "host-a"
    site_answers(pair, resting_site, "moved")
