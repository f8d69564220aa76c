"""The compose deployment really comes up (compose.yaml, images/service/).

`scripts/dev compose up -d --build` builds every image here from the project's own Debian base
and starts the API, the gateway, a worker, Redis and PostgreSQL; one upload (create-vite's
vanilla template: a real `npm install` from a build container that the worker, itself in a
container, starts on this engine) goes live, through the preview's port and the gateway;
`orchestrator purge` in the worker and `down -v` leave nothing of it behind. The figures go to
test-artifacts/compose.json (the closing note's "what the smoke test costs").
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.core import defaults
from tests.integration.conftest import ARTIFACTS, api_client, upload, zip_dir

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "wob-compose-smoke"
INSTANCE = "compose-smoke"
API_PORT, GATEWAY_PORT = 31660, 31661
"""Below the kernel's ephemeral ports (32768-60999 by default): no other stack's port, found
with bind(0), and no outgoing connection can hold them (42660 once was another stack's API)."""
ENV = {
    "ORCHESTRATOR_INSTANCE_ID": INSTANCE,
    "ORCHESTRATOR_API_PORT": str(API_PORT),
    "ORCHESTRATOR_GATEWAY_PORT": str(GATEWAY_PORT),
    "ORCHESTRATOR_PORT_RANGE_START": "42870",
    "ORCHESTRATOR_PORT_RANGE_END": "42899",
    "COMPOSE_PROJECT_NAME": PROJECT,
}
API = f"http://127.0.0.1:{ENV['ORCHESTRATOR_API_PORT']}"


def compose(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`scripts/dev compose ARGS` for this test's project, its output kept for the failure."""
    env = {**os.environ, **ENV}
    done = subprocess.run(
        [str(ROOT / "scripts/dev"), "compose", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (
        f"scripts/dev compose {' '.join(args)}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    return done


def container(service: str) -> str:
    """The id of the project's container of ``service`` (v1 and v2 name them differently)."""
    ids = docker(
        "ps",
        "-q",
        "--filter",
        f"label=com.docker.compose.project={PROJECT}",
        "--filter",
        f"label=com.docker.compose.service={service}",
    ).split()
    assert len(ids) == 1, f"{service}: {ids}"
    return ids[0]


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


def docker_compose_version() -> str:
    return subprocess.run(
        ["docker-compose", "version", "--short"], capture_output=True, text=True
    ).stdout.strip()


def left_behind() -> list[str]:
    """Anything of the project or its instance still on the engine."""
    ns = defaults.LABEL_NAMESPACE
    found = []
    for listing, label in (
        (["ps", "-a"], f"com.docker.compose.project={PROJECT}"),
        (["ps", "-a"], f"{ns}.instance={INSTANCE}"),
        (["volume", "ls"], f"com.docker.compose.project={PROJECT}"),
        (["images"], f"{ns}.instance={INSTANCE}"),
    ):
        names = docker(*listing, "-q", "--filter", f"label={label}").split()
        found += [f"{listing[0]}: {name} ({label})" for name in names]
    return found


def wait_healthy(timeout: float = 180) -> dict:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{API}/api/health", timeout=5)
            if last.status_code == 200 and last.json()["status"] == "ok":
                return last.json()
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(1)
    logs = subprocess.run(
        ["docker", "logs", "--tail", "40", container("api")], capture_output=True, text=True
    )
    raise AssertionError(
        f"the compose API is not healthy after {timeout} s: {last!r}\n{logs.stdout}{logs.stderr}"
    )


def tidy_up() -> None:
    """Whatever a failed run of the stack left, gone (best effort, errors ignored)."""
    subprocess.run(
        f"docker exec $(docker ps -q --filter label=com.docker.compose.project={PROJECT} "
        "--filter label=com.docker.compose.service=worker) orchestrator purge --yes",
        shell=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [str(ROOT / "scripts/dev"), "compose", "down", "-v"],
        env={**os.environ, **ENV},
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    ns = defaults.LABEL_NAMESPACE
    subprocess.run(
        f"docker ps -aq --filter label={ns}.instance={INSTANCE} | xargs -r docker rm -f",
        shell=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        f"docker images -q --filter label={ns}.instance={INSTANCE} | xargs -r docker rmi -f",
        shell=True,
        capture_output=True,
        timeout=120,
    )


def test_the_compose_stack_comes_up_serves_a_preview_and_goes(templates: Path) -> None:
    try:
        check_the_compose_stack(templates)
    except BaseException:
        tidy_up()
        raise


def check_the_compose_stack(templates: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tidy_up()  # an earlier run's, should it have been cut short
    assert left_behind() == []
    figures: dict[str, object] = {}

    started = time.monotonic()
    compose("up", "-d", "--build")
    health = wait_healthy()
    figures["upSeconds"] = round(time.monotonic() - started, 1)
    assert health["checks"]["workers"]["ok"], health

    token = docker("exec", container("api"), "orchestrator", "token", "create", "--role", "admin").split()[-1]
    with api_client(API, token) as client:
        hosts = client.get("/api/hosts").json()
        assert [h["state"] for h in hosts] == ["live"], hosts
        uploaded = time.monotonic()
        watched = upload(client, [("site.zip", zip_dir(templates / "template-vanilla"))])
        status = watched.wait(300)
        figures["uploadToLiveSeconds"] = round(time.monotonic() - uploaded, 1)
        logs = "\n".join(line if isinstance(line, str) else str(line) for line in status.get("logs", []))
        assert status["status"] == "running", f"{status.get('error')}\n{logs}"
        # The worker, in its container, carried the host's view of the registry into the build.
        assert "host CA bundle" in logs and "Egress: only" in logs, logs
        preview = httpx.get(status["previewUrl"], timeout=10)
        assert preview.status_code == 200 and '<div id="app">' in preview.text
        gateway = httpx.get(
            f"http://127.0.0.1:{ENV['ORCHESTRATOR_GATEWAY_PORT']}/",
            headers={"Host": httpx.URL(watched.response["website"]["websiteUrl"]).host},
            timeout=30,
        )
        assert gateway.status_code == 200 and '<div id="app">' in gateway.text

    stopping = time.monotonic()
    purged = subprocess.run(
        ["docker", "exec", container("worker"), "orchestrator", "purge", "--yes"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert purged.returncode == 0, purged.stderr
    assert f"stop preview {watched.job_id}" in " ".join(purged.stderr.split()), purged.stderr
    compose("down", "-v")
    figures["purgeAndDownSeconds"] = round(time.monotonic() - stopping, 1)
    assert left_behind() == []
    with pytest.raises(httpx.TransportError):
        httpx.get(status["previewUrl"], timeout=5)
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    figures["compose"] = v2.stdout.strip() if v2.returncode == 0 else docker_compose_version()
    (ARTIFACTS / "compose.json").write_text(json.dumps(figures, indent=2))
