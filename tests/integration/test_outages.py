"""Faults the service rides out (issue 12): Redis going away and coming back empty. The test runs
a Redis server of its own (on loopback), so that it can stop and start it."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Stack, free_port, require

pytestmark = pytest.mark.integration

PORTS = (42700, 42719)


class RedisServer:
    """A redis-server process on a port of its own, with no persistence (a restart loses all)."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while (
            subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout
            != b"PONG\n"
        ):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    require(shutil.which("redis-server") is not None, "redis-server")
    server = RedisServer(free_port(), tmp_path).start()
    yield server
    server.stop()


def site(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", f"<h1>{text}</h1>")
    return buffer.getvalue()


def upload(client: httpx.Client, text: str) -> httpx.Response:
    return client.post("/api/websites", files={"files": ("site.zip", site(text), "application/zip")})


def status_of(client: httpx.Client, website_id: str) -> dict:
    return client.get(f"/api/websites/{website_id}/build-status").json()


def wait_running(client: httpx.Client, website_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = status_of(client, website_id)
        if found["status"] in ("running", "failed", "cancelled") or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def outage_env(own_redis: RedisServer, tmp_path: Path) -> dict[str, str]:
    """A stack on the test's own Redis, with SQLite and ports of its own."""
    return {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},  # SQLite, of its own
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": f"redis://127.0.0.1:{own_redis.port}/0",
        "ORCHESTRATOR_INSTANCE_ID": f"test-{uuid.uuid4().hex[:8]}",
        "ORCHESTRATOR_PORT_RANGE_START": str(PORTS[0]),
        "ORCHESTRATOR_PORT_RANGE_END": str(PORTS[1]),
        "ORCHESTRATOR_API_PORT": str(free_port()),
        "ORCHESTRATOR_GATEWAY_PORT": str(free_port()),
        "ORCHESTRATOR_GC_INTERVAL": "0",
        "ORCHESTRATOR_MAX_CPU_PERCENT": "100",
        "ORCHESTRATOR_MAX_MEMORY_PERCENT": "100",
    }


def test_workers_ride_out_redis_going_away_and_build_what_was_uploaded_meanwhile(
    own_redis: RedisServer, runtime, tmp_path: Path
) -> None:
    env = outage_env(own_redis, tmp_path)
    stack = Stack("outage", env, workers=2).start()
    try:
        client = stack.client()
        before = upload(client, "before").json()["website"]["id"]
        assert wait_running(client, before, 90)["status"] == "running"

        own_redis.stop()  # Redis goes away for 12 s, and comes back with nothing in it
        time.sleep(3)
        meanwhile = upload(client, "meanwhile")
        assert meanwhile.status_code == 503
        assert "saved but could not be queued" in meanwhile.json()["detail"]
        time.sleep(9)
        own_redis.start()
        back = time.monotonic()

        assert all(proc.poll() is None for proc in stack.procs.values()), "a process ended with Redis gone"
        (lost,) = [w["id"] for w in client.get("/api/websites").json() if w["id"] != before]
        assert wait_running(client, lost, 120)["status"] == "running"
        recovered = time.monotonic() - back
        after = upload(client, "after")
        assert after.status_code == 202
        assert wait_running(client, after.json()["website"]["id"], 90)["status"] == "running"
        print(f"Redis back → the upload made while it was away built and live in {recovered:.1f} s")
    finally:
        stack.stop(runtime)


def test_a_build_in_progress_rides_out_redis_restarting_and_goes_live(
    own_redis: RedisServer, runtime, tmp_path: Path
) -> None:
    """Redis goes away for longer than a heartbeat's lease while a build installs, and comes back
    empty: the build goes on (its record in the database), is live in the end, and nothing is
    reported failed or left behind."""
    from tests.integration.conftest import vite_project, zip_dir

    project = vite_project(tmp_path / "long", "rode-it-out", scripts={"preinstall": "sleep 20"})
    stack = Stack("outage-mid-build", outage_env(own_redis, tmp_path), workers=2).start()
    try:
        client = stack.client()
        answer = client.post(
            "/api/websites", files={"files": ("long.zip", zip_dir(project), "application/zip")}
        )
        assert answer.status_code == 202, answer.text
        job = answer.json()["website"]["buildJobId"]
        deadline = time.monotonic() + 60
        while not {"install", "lifecycle"} & set(
            (record := client.get(f"/api/builds/{job}").json())["steps"]
        ):
            assert time.monotonic() < deadline and record["status"] in ("queued", "building"), record
            time.sleep(0.2)

        own_redis.stop()  # away for 25 s (> the 20 s heartbeat lease), back with nothing in it
        time.sleep(25)
        own_redis.start()
        back = time.monotonic()

        final = wait_running(client, answer.json()["website"]["id"], 240)
        print(f"Redis back → the build in progress live {time.monotonic() - back:.1f} s later")
        assert final["status"] == "running", final
        assert all(proc.poll() is None for proc in stack.procs.values()), "a process ended with Redis gone"
        record = client.get(f"/api/builds/{job}").json()
        print(f"attempts: {record['attempts']}")
        assert record["error"] is None, record
        assert not [line for line in record["logs"] if line.startswith("Build failed")], record["logs"]
        assert "rode-it-out" in httpx.get(final["previewUrl"], timeout=10).text
        assert stack.leaks(runtime, client) == []
    finally:
        stack.stop(runtime)
