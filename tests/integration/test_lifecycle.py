"""Preview lifecycle with real containers: idle reaping by real traffic, replacement without a
gap, deletion, the preview list, gc's dry run, concurrent gc runs, orphans, the schedule, and
a stack left exactly as it started."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from orchestrator.adapters.runtime import labels
from orchestrator.config import Settings
from orchestrator.coordination.ports import RedisPortStore
from orchestrator.core import defaults
from tests.integration.conftest import ROOT, Stack, api_client, run_cli, stack_env

pytestmark = pytest.mark.integration

PORTS = (42520, 42559)


@pytest.fixture(scope="module")
def stack(runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose gc runs only when a test runs it (no schedule)."""
    env = stack_env(
        tmp_path_factory.mktemp("lifecycle"),
        9,
        PORTS,
        ORCHESTRATOR_MAX_CPU_PERCENT="100",
        ORCHESTRATOR_MAX_MEMORY_PERCENT="100",
        ORCHESTRATOR_MAX_BUILDING_PER_USER="4",
    )
    stack = Stack("lifecycle", env, workers=2).start()
    yield stack
    stack.stop(runtime)


def gc(stack: Stack, *args: str) -> list[dict]:
    result = run_cli("gc", "--json", *args, env=stack.env)
    return json.loads(result.stdout)["actions"]


def ours(stack: Stack, runtime) -> list[dict]:
    instance = stack.env["ORCHESTRATOR_INSTANCE_ID"]
    return runtime.client.api.containers(
        all=True, filters={"label": [f"{defaults.LABEL_NAMESPACE}.instance={instance}"]}
    )


def held_ports(stack: Stack) -> dict[int, str]:
    return RedisPortStore(Redis.from_url(stack.env["REDIS_URL"]), stack.port_prefix).held()


def live_site(client: httpx.Client, text: str, website_id: str | None = None) -> dict:
    """Upload a static site (one page) and wait until its preview is live; its build record."""
    data = {"websiteId": website_id} if website_id else None
    response = client.post("/api/websites", files=[("files", ("index.html", text.encode()))], data=data)
    assert response.status_code == 202, response.text
    job = response.json()["website"]["buildJobId"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        build = client.get(f"/api/builds/{job}").json()
        if build["status"] not in ("queued", "building"):
            assert build["status"] == "running", build
            return build
        time.sleep(0.2)
    pytest.fail(f"build {job} did not go live in 120 s")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Visitor:
    """Requests a URL every 0.3 s in a thread, like someone using the preview."""

    def __init__(self, url: str) -> None:
        self.url, self.stopped, self.failures = url, threading.Event(), 0
        self.thread = threading.Thread(target=self.visit, daemon=True)

    def visit(self) -> None:
        while not self.stopped.wait(0.3):
            if not answers(self.url):
                self.failures += 1

    def __enter__(self) -> Visitor:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join()


def test_previews_lists_live_previews_with_owner_memory_idle_and_age(stack: Stack) -> None:
    alice = stack.client("user", "alice")
    bob = stack.client("user", "bob")
    build = live_site(alice, "<h1>alice</h1>")

    mine = alice.get("/api/previews")
    assert mine.status_code == 200, mine.text
    [preview] = [p for p in mine.json() if p["buildId"] == build["id"]]
    assert preview["url"] == build["previewUrl"] and preview["port"] == build["allocatedPort"]
    assert preview["owner"] == "alice" and preview["websiteId"] == build["websiteId"]
    assert preview["memoryBytes"] > 1_000_000  # a Node process, measured from its cgroup
    assert 0 <= preview["idleSeconds"] <= preview["ageSeconds"] + 1

    assert build["id"] not in [p["buildId"] for p in bob.get("/api/previews").json()]
    assert build["id"] in [p["buildId"] for p in stack.client("admin").get("/api/previews").json()]


def test_gc_reaps_the_idle_preview_and_keeps_the_one_in_use(stack: Stack, runtime) -> None:
    client = stack.client("user", "reaper")
    idle = live_site(client, "<h1>nobody looks</h1>")
    busy = live_site(client, "<h1>someone looks</h1>")
    with Visitor(busy["previewUrl"]) as visitor:
        time.sleep(3)

        planned = gc(stack, "--dry-run", "--idle-ttl", "2")
        stops = {a["target"]: a for a in planned if a["action"] == "stop preview"}
        assert stops[idle["id"]]["reason"].startswith("idle: no traffic for")
        assert stops[idle["id"]]["port"] == idle["allocatedPort"]
        assert busy["id"] not in stops
        assert client.get(f"/api/builds/{idle['id']}").json()["status"] == "running"  # dry: unchanged
        state = runtime.state(idle["containerId"])  # (not a request: that would be traffic)
        assert state is not None and state.running

        done = gc(stack, "--idle-ttl", "2")
        [stop] = [a for a in done if a["target"] == idle["id"]]
        assert stop["action"] == "stop preview"
        assert stop["memory_bytes"] > 0 and stop["disk_bytes"] is not None
        assert not any(a["target"] == busy["id"] for a in done)
        time.sleep(1)
    assert visitor.failures == 0

    record = client.get(f"/api/builds/{idle['id']}").json()
    assert (record["status"], record["stopReason"], record["allocatedPort"]) == ("stopped", "idle", None)
    assert "Preview stopped (idle)" in record["logs"][-1]
    assert runtime.state(idle["containerId"]) is None
    assert not answers(idle["previewUrl"])
    assert idle["allocatedPort"] not in held_ports(stack)
    assert client.get(f"/api/builds/{busy['id']}").json()["status"] == "running"
    assert answers(busy["previewUrl"])


def test_two_gc_runs_at_once_stop_each_preview_once(stack: Stack, runtime) -> None:
    client = stack.client("user", "racer")
    builds = [live_site(client, f"<h1>race {i}</h1>") for i in range(3)]
    time.sleep(2.5)
    command = [sys.executable, "-m", "orchestrator.cli", "gc", "--json", "--idle-ttl", "2"]
    procs = [
        subprocess.Popen(command, cwd=ROOT, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err.decode() for _, err in outputs]
    stops = [
        a["target"] for out, _ in outputs for a in json.loads(out)["actions"] if a["action"] == "stop preview"
    ]
    for build in builds:
        assert stops.count(build["id"]) == 1, stops
        record = client.get(f"/api/builds/{build['id']}").json()
        assert (record["status"], record["stopReason"]) == ("stopped", "idle")
        assert sum("Preview stopped" in line for line in record["logs"]) == 1
        assert runtime.state(build["containerId"]) is None


def test_a_new_version_replaces_the_preview_without_a_gap(stack: Stack, runtime) -> None:
    client = stack.client("user", "deployer")
    first = live_site(client, "<h1>version 1</h1>")
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def poll_site() -> None:
        while not stop.is_set():
            url = client.get(f"/api/websites/{first['websiteId']}").json()["previewUrl"]
            try:
                response = httpx.get(url, timeout=2)
                seen.append((response.status_code, response.text))
            except httpx.HTTPError as exc:
                seen.append((0, repr(exc)))
            time.sleep(0.05)

    poller = threading.Thread(target=poll_site, daemon=True)
    poller.start()
    second = live_site(client, "<h1>version 2</h1>", website_id=first["websiteId"])
    deadline = time.monotonic() + 30
    while client.get(f"/api/builds/{first['id']}").json()["status"] == "running":
        assert time.monotonic() < deadline, "the old preview was not stopped"
        time.sleep(0.2)
    time.sleep(1)
    stop.set()
    poller.join()

    assert [s for s in seen if s[0] != 200] == []
    bodies = ["version 1" if "version 1" in text else "version 2" for _, text in seen]
    assert bodies[0] == "version 1" and bodies[-1] == "version 2"
    assert bodies == sorted(bodies)  # never back to the old version
    old = client.get(f"/api/builds/{first['id']}").json()
    assert (old["status"], old["stopReason"]) == ("stopped", "replaced")
    assert runtime.state(first["containerId"]) is None
    site = client.get(f"/api/websites/{first['websiteId']}").json()
    assert site["liveBuildId"] == second["id"] and site["previewUrl"] == second["previewUrl"]


def test_deleting_a_website_stops_its_preview_removes_its_files_and_keeps_its_history(
    stack: Stack, runtime
) -> None:
    client = stack.client("user", "deleter")
    build = live_site(client, "<h1>short-lived</h1>")
    site_id, data = build["websiteId"], Path(stack.env["ORCHESTRATOR_DATA_DIR"])
    assert (data / "uploads" / f"{build['id']}.zip").exists()

    response = client.delete(f"/api/websites/{site_id}")
    assert response.status_code == 200, response.text
    assert response.json()["stoppedBuilds"] == [build["id"]]

    assert runtime.state(build["containerId"]) is None
    assert not (data / "uploads" / f"{build['id']}.zip").exists()
    assert not (data / "workspaces" / build["id"]).exists()
    assert client.get(f"/api/websites/{site_id}").status_code == 404
    assert site_id not in [w["id"] for w in client.get("/api/websites").json()]
    history = client.get(f"/api/builds/{build['id']}").json()
    assert (history["status"], history["stopReason"]) == ("stopped", "deleted")
    again = client.delete(f"/api/websites/{site_id}")
    assert again.status_code == 404 and site_id in again.json()["detail"]
    upload_to_deleted = client.post(
        "/api/websites", files=[("files", ("index.html", b"x"))], data={"websiteId": site_id}
    )
    assert upload_to_deleted.status_code == 404


def test_gc_cleans_orphans_and_records_without_containers(stack: Stack, runtime) -> None:
    client = stack.client("user", "janitor")
    gone = live_site(client, "<h1>container removed by hand</h1>")
    exited = live_site(client, "<h1>container stopped by hand</h1>")
    settings = Settings(instance_id=stack.env["ORCHESTRATOR_INSTANCE_ID"])
    orphan = runtime.client.containers.create(
        settings.node_image,
        command=["sleep", "600"],
        labels=labels(settings, build_id="no-such-build", website_id="no-such-site"),
    )
    runtime.remove(gone["containerId"])
    runtime.client.api.stop(exited["containerId"], timeout=1)

    planned = {a["target"]: a for a in gc(stack, "--dry-run")}
    assert planned[gone["id"]]["reason"] == "gc: its container is gone"
    assert (planned[exited["id"]]["action"], planned[exited["id"]]["reason"]) == (
        "restart preview",
        "its container is exited",
    )
    assert planned[orphan.id[:12]]["reason"] == "no live build owns it"
    assert runtime.state(orphan.id) is not None
    assert client.get(f"/api/builds/{gone['id']}").json()["status"] == "running"  # dry: unchanged

    done = {a["target"]: a for a in gc(stack)}
    assert {gone["id"], exited["id"], orphan.id[:12]} <= set(done)
    record = client.get(f"/api/builds/{gone['id']}").json()
    assert (record["status"], record["stopReason"]) == ("stopped", "gc")
    assert gone["allocatedPort"] not in held_ports(stack)
    assert done[exited["id"]]["action"] == "restart preview"  # a stopped container starts again
    assert "container stopped by hand" in httpx.get(exited["previewUrl"], timeout=10).text
    assert client.get(f"/api/builds/{exited['id']}").json()["status"] == "running"
    assert runtime.state(orphan.id) is None

    runtime.client.api.stop(exited["containerId"], timeout=1)  # again, within 10 minutes: it stays down
    again = {a["target"]: a for a in gc(stack)}
    assert (
        "did not start again: it was started again less than 10 minutes ago" in again[exited["id"]]["reason"]
    )
    record = client.get(f"/api/builds/{exited['id']}").json()
    assert (record["status"], record["stopReason"]) == ("stopped", "engine-restart")
    assert exited["allocatedPort"] not in held_ports(stack) and runtime.state(exited["containerId"]) is None
    assert not {gone["id"], exited["id"], orphan.id[:12]} & {a["target"] for a in gc(stack)}


def test_gc_fails_with_the_reason_when_docker_cannot_be_reached(stack: Stack) -> None:
    result = run_cli("gc", env={**stack.env, "DOCKER_HOST": "unix:///nonexistent.sock"}, check=False)
    assert result.returncode == 1
    assert "Docker" in result.stderr and "nonexistent.sock" in result.stderr


def test_after_many_builds_and_reaps_nothing_is_left(stack: Stack, runtime) -> None:
    """Last in this module: every build, preview, port and file of the stack is accounted for."""
    client = stack.client("user", "many")
    sites = [live_site(client, f"<h1>site {i}</h1>")["websiteId"] for i in range(4)]
    live_site(client, "<h1>site 0, again</h1>", website_id=sites[0])
    failing = client.post(
        "/api/websites",
        files=[
            ("files", ("index.html", b"<h1>broken</h1>")),
            ("files", ("package.json", b'{"dependencies": {"no-such-package-xyz-4711": "1.0.0"}}')),
        ],
    ).json()["website"]
    admin = stack.client("admin")
    for site in admin.get("/api/websites").json():
        if site["id"] != failing["id"]:
            assert admin.delete(f"/api/websites/{site['id']}").status_code == 200
    deadline = time.monotonic() + 120
    while admin.get(f"/api/builds/{failing['buildJobId']}").json()["status"] in ("queued", "building"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert admin.delete(f"/api/websites/{failing['id']}").status_code == 200
    gc(stack, "--idle-ttl", "0")

    assert ours(stack, runtime) == []
    assert held_ports(stack) == {}
    assert admin.get("/api/previews").json() == []
    data = Path(stack.env["ORCHESTRATOR_DATA_DIR"])
    assert list((data / "workspaces").glob("*")) == []
    assert list((data / "uploads").glob("*")) == []


def test_the_service_reconciles_at_start_and_reaps_idle_previews_by_itself(runtime, tmp_path: Path) -> None:
    env = stack_env(
        tmp_path,
        8,
        (42560, 42579),
        ORCHESTRATOR_MAX_CPU_PERCENT="100",
        ORCHESTRATOR_MAX_MEMORY_PERCENT="100",
        ORCHESTRATOR_GC_INTERVAL="1",
        ORCHESTRATOR_IDLE_TTL="3",
    )
    settings = Settings(instance_id=env["ORCHESTRATOR_INSTANCE_ID"])
    orphan = runtime.client.containers.create(
        settings.node_image,
        command=["sleep", "600"],
        labels=labels(settings, build_id="left-by-a-crash", website_id="no-such-site"),
    )
    stack = Stack("scheduled-gc", env, workers=1).start()
    try:
        deadline = time.monotonic() + 30
        while runtime.state(orphan.id) is not None:  # the worker's gc at start removes it
            assert time.monotonic() < deadline, "the worker did not remove the orphan at start"
            time.sleep(0.2)
        with api_client(stack.url, stack.token("user", "sleepy")) as client:
            build = live_site(client, "<h1>reaped by the schedule</h1>")
            deadline = time.monotonic() + 30
            while (record := client.get(f"/api/builds/{build['id']}").json())["status"] == "running":
                assert time.monotonic() < deadline, "the scheduled gc did not reap the idle preview"
                time.sleep(0.5)
        assert (record["status"], record["stopReason"]) == ("stopped", "idle")
        deadline = time.monotonic() + 10  # recorded stopped first; the container and port follow
        while runtime.state(build["containerId"]) is not None or held_ports(stack):
            assert time.monotonic() < deadline, (runtime.state(build["containerId"]), held_ports(stack))
            time.sleep(0.2)
    finally:
        runtime.remove(orphan.id)
        stack.stop(runtime)
