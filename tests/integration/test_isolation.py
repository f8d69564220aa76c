"""A build container runs untrusted code: check from inside one what it can and cannot do."""

from __future__ import annotations

import http.server
import os
import socket
import threading

import httpx
import pytest

from orchestrator.core import defaults
from tests.integration.conftest import upload

pytestmark = pytest.mark.integration

PROBE = """
const net = require("net");
const [host, port] = process.argv.slice(1);
const s = net.connect({host, port: Number(port), timeout: 3000});
s.on("connect", () => { console.log("OPEN"); s.destroy(); });
s.on("error", (e) => console.log("CLOSED " + e.code));
s.on("timeout", () => { console.log("TIMEOUT"); s.destroy(); });
"""


def host_addresses() -> list[str]:
    found = {"172.17.0.1"}
    for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
        found.add(str(info[4][0]))
    return sorted(a for a in found if not a.startswith("127."))


@pytest.fixture(scope="module")
def live_container(admin: httpx.Client, runtime) -> str:
    site = upload(admin, [("index.html", b"<h1>probe</h1>")])
    assert site.wait()["status"] == "running"
    build_id = site.job_id
    [container] = [
        c for c in runtime.list_ours() if c["Labels"][f"{defaults.LABEL_NAMESPACE}.build-id"] == build_id
    ]
    return container["Id"]


@pytest.fixture(scope="module")
def host_listener():
    """A service listening on every host address, as a careless operator might run one."""
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def probe(runtime, container: str, host: str, port: int) -> str:
    code, out = runtime.exec(container, ["node", "-e", PROBE, host, str(port)])
    assert code == 0, out
    return out.strip()


def test_container_is_locked_down(runtime, live_container: str) -> None:
    info = runtime.client.api.inspect_container(live_container)
    host = info["HostConfig"]
    assert info["Config"]["User"] == "1000:1000"
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["PidsLimit"] == defaults.PIDS_LIMIT
    assert host["Memory"] == 512 * 2**20 and host["MemorySwap"] == 512 * 2**20
    assert (host["CpuQuota"], host["CpuPeriod"]) == (25_000, 100_000)  # a live preview: 25% of one CPU
    assert runtime.limits(live_container)["nano_cpus"] == 250_000_000
    assert info["Mounts"] == [] and not host.get("Binds")  # no host path, no Docker socket
    env = "\n".join(info["Config"]["Env"])
    for secret in ("REDIS", "DATABASE_URL", "ORCHESTRATOR_", "TOKEN"):
        assert secret not in env
    code, out = runtime.exec(live_container, ["id", "-u"])
    assert out.strip() == "1000"


def test_redis_api_and_host_services_are_out_of_reach(
    runtime, live_container: str, host_listener: int
) -> None:
    api_port = int(os.environ["ORCHESTRATOR_API_PORT"])
    gateway = runtime.client.networks.get(defaults.BUILD_NETWORK).attrs["IPAM"]["Config"][0]["Gateway"]
    for address in [gateway, *host_addresses()]:
        for port in (6379, api_port, host_listener):
            assert probe(runtime, live_container, address, port) != "OPEN", f"{address}:{port} is reachable"


def test_the_registry_is_reachable_as_from_the_host(runtime, live_container: str) -> None:
    code, out = runtime.exec(live_container, ["npm", "view", "is-number", "version"])
    assert code == 0 and out.strip()[0].isdigit(), out


def test_a_job_put_in_redis_naming_another_function_is_refused_not_run(api_url: str, tmp_path) -> None:
    """Anything that can write to Redis can enqueue a job: the workers run only the build job."""
    import time

    from redis import Redis
    from rq import Queue
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from orchestrator.coordination import keys

    proof = tmp_path / "ran"
    redis = Redis.from_url(os.environ["REDIS_URL"])
    queue = Queue(defaults.QUEUE_NAME, connection=redis, serializer=JSONSerializer)
    rogue = queue.enqueue("os.system", f"touch {proof}")
    redis.rpush(keys.WAKE, "1")
    deadline = time.monotonic() + 30
    while (
        state := Job.fetch(rogue.id, connection=redis, serializer=JSONSerializer)
    ).get_status() != "failed":
        assert time.monotonic() < deadline, state.get_status()
        time.sleep(0.2)
    assert "'os.system' is not the build job" in (state.latest_result().exc_string or "")
    assert not proof.exists()
