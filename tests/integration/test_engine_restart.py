"""The Docker engine restarting under the service (issue 12): with live-restore (scripts/dev starts
dockerd so), previews keep answering; a build caught by the restart is retried as the
infrastructure's fault, never reported as the project's; a preview whose container a host reboot
stopped is started again by gc. The test restarts this machine's dockerd itself."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import require
from tests.integration.conftest import ARTIFACTS, Stack, small_stack, vite_project, zip_dir
from tests.integration.test_lifecycle import gc, live_site
from tests.integration.test_scheduling import post, wait_for

pytestmark = pytest.mark.integration


def dockerd() -> psutil.Process | None:
    found = [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "dockerd"]
    return found[0] if len(found) == 1 else None


def engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def restart_engine() -> float:
    """Stop dockerd as an upgrade would (SIGTERM) and start it again with the same arguments;
    seconds until it answers again."""
    process = dockerd()
    assert process is not None
    command = process.cmdline()
    process.terminate()
    process.wait(timeout=60)
    stopped = time.monotonic()
    log = ARTIFACTS / "dockerd-restarted.log"
    # in the background of a shell that ends at once: dockerd outlives the test, as it was
    subprocess.run(
        ["sh", "-c", f"setsid nohup {shlex.join(command)} >>{shlex.quote(str(log))} 2>&1 &"], check=True
    )
    deadline = time.monotonic() + 60
    while not engine_answers():
        assert time.monotonic() < deadline, "dockerd did not come back"
        time.sleep(0.2)
    return time.monotonic() - stopped


@pytest.fixture
def restartable(services, runtime) -> None:
    process = dockerd()
    require(
        process is not None and "--live-restore" in process.cmdline(),
        "a dockerd started with --live-restore that this test may restart (scripts/dev setup)",
    )


@pytest.fixture
def engine_stack(restartable, runtime, tmp_path: Path) -> Iterator[Stack]:
    with small_stack("engine", tmp_path, 15, (42720, 42739), runtime) as stack:
        yield stack


def answers(url: str, text: str, timeout: float) -> float | None:
    """Seconds until the preview at ``url`` serves ``text`` (None: not within ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if text in httpx.get(url, timeout=2).text:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return None


def test_previews_outlive_an_engine_restart_and_a_reboot_stopped_one_is_started_again(
    engine_stack: Stack, runtime
) -> None:
    client = engine_stack.client()
    build = live_site(client, "<h1>still here</h1>")
    url = build["previewUrl"]

    took = restart_engine()
    back = answers(url, "still here", 30)
    print(f"engine restarted in {took:.1f} s; the preview answered {back} s after it was back")
    assert back is not None, "the preview did not answer after the engine restart"
    assert client.get(f"/api/builds/{build['id']}").json()["status"] == "running"

    # A host reboot stops every container (live-restore only spares them an engine restart).
    runtime.client.api.kill(build["containerId"])
    assert answers(url, "still here", 2) is None
    started = time.monotonic()
    actions = gc(engine_stack)
    assert [a["action"] for a in actions if a["target"] == build["id"]] == ["restart preview"], actions
    assert answers(url, "still here", 10) is not None
    print(f"a preview stopped by a reboot answered again {time.monotonic() - started:.1f} s after gc began")
    record = client.get(f"/api/builds/{build['id']}").json()
    assert record["status"] == "running"
    assert any(line.startswith("Preview started again: its container was exited") for line in record["logs"])

    again = live_site(client, "<h1>a new build after the restart</h1>")  # the workers use the new engine
    assert again["status"] == "running"
    assert engine_stack.leaks(runtime, client) == []


def test_a_build_caught_by_an_engine_restart_is_retried_not_failed(
    engine_stack: Stack, runtime, tmp_path: Path
) -> None:
    project = vite_project(tmp_path / "caught", "caught-by-a-restart", scripts={"preinstall": "sleep 15"})
    client = engine_stack.client()
    job = post(client, [("caught.zip", zip_dir(project))])["buildJobId"]
    deadline = time.monotonic() + 90
    while not {"install", "lifecycle"} & set((record := client.get(f"/api/builds/{job}").json())["steps"]):
        assert time.monotonic() < deadline and record["status"] in ("queued", "building"), record
        time.sleep(0.2)
    time.sleep(2)
    restart_engine()
    back = time.monotonic()

    final = wait_for(client, job, timeout=240)
    print(f"engine back → the build caught by the restart live {time.monotonic() - back:.1f} s later")
    record = client.get(f"/api/builds/{job}").json()
    assert final["status"] == "running", "\n".join(record["logs"][-25:])
    assert record["error"] is None
    assert not [line for line in record["logs"] if line.startswith("Build failed")], record["logs"]
    assert "caught-by-a-restart" in httpx.get(final["previewUrl"], timeout=10).text
    assert engine_stack.leaks(runtime, client) == []
