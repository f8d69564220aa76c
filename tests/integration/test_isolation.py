"""A build container runs untrusted code: check from inside one what it can and cannot do."""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from orchestrator.adapters.runtime import HOLD, ContainerSpec
from orchestrator.core import defaults
from tests.conftest import require
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
def live_site(admin: httpx.Client):
    site = upload(admin, [("index.html", b"<h1>probe</h1>")])
    assert site.wait()["status"] == "running"
    return site


@pytest.fixture(scope="module")
def live_container(live_site, runtime) -> str:
    build_id = live_site.job_id
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
    [port] = [int(p.split("/")[0]) for p in info["NetworkSettings"]["Ports"]]
    assert info["Config"]["User"] == defaults.build_user(port) == f"{200_000 + port}:1000"  # its own UID
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
    code, out = runtime.exec(live_container, ["sh", "-c", "id -u; stat -c %u /app"])
    assert out.split() == [str(200_000 + port)] * 2  # its files are its own


def test_redis_api_and_host_services_are_out_of_reach(
    runtime, live_container: str, host_listener: int
) -> None:
    api_port = int(os.environ["ORCHESTRATOR_API_PORT"])
    gateway_port = int(os.environ["ORCHESTRATOR_GATEWAY_PORT"])  # the preview gateway
    gateway = runtime.client.networks.get(defaults.BUILD_NETWORK).attrs["IPAM"]["Config"][0]["Gateway"]
    for address in [gateway, *host_addresses()]:
        for port in (6379, api_port, gateway_port, host_listener):
            assert probe(runtime, live_container, address, port) != "OPEN", f"{address}:{port} is reachable"


def test_redis_listens_on_a_socket_only_root_opens_and_on_no_port() -> None:
    import stat

    from redis import Redis

    mode = os.stat(defaults.REDIS_SOCKET)
    assert stat.S_ISSOCK(mode.st_mode) and mode.st_uid == 0
    assert stat.S_IMODE(mode.st_mode) & 0o077 == 0  # nobody but root may connect
    redis = Redis.from_url(os.environ["REDIS_URL"])
    assert os.environ["REDIS_URL"].startswith(f"unix://{defaults.REDIS_SOCKET}")
    assert redis.config_get("port") == {"port": "0"}
    redis.close()


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

    from orchestrator.config import Settings
    from orchestrator.coordination import keys
    from orchestrator.core.hosts import queue_name

    proof = tmp_path / "ran"
    redis = Redis.from_url(os.environ["REDIS_URL"])
    queue = Queue(queue_name(Settings().host), connection=redis, serializer=JSONSerializer)  # workers read it
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


# -- registry-only egress, proved against the test's own hosts ------------------------------


@dataclass(frozen=True)
class NamespaceHost:
    """A host of this test's own: a network namespace joined to this host by a veth pair,
    with a web server listening on ``address``:``port``."""

    address: str
    port: int


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


@contextlib.contextmanager
def namespace_host(
    name: str, host_side: str, ns_side: str, port: int, ipv6: tuple[str, str] | None = None
) -> Iterator[list[NamespaceHost]]:
    namespace, outer, inner = f"wobt-{name}", f"wobt{name}0", f"wobt{name}1"
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True)  # a leftover of a killed run
    subprocess.run(["ip", "link", "del", outer], capture_output=True)
    servers: list[subprocess.Popen] = []
    try:
        run("ip", "netns", "add", namespace)
        run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        run("ip", "link", "set", inner, "netns", namespace)
        run("ip", "addr", "add", host_side, "dev", outer)
        run("ip", "netns", "exec", namespace, "ip", "addr", "add", ns_side, "dev", inner)
        if ipv6:
            run("ip", "-6", "addr", "add", ipv6[0], "dev", outer, "nodad")
            run("ip", "netns", "exec", namespace, "ip", "-6", "addr", "add", ipv6[1], "dev", inner, "nodad")
        run("ip", "link", "set", outer, "up")
        run("ip", "netns", "exec", namespace, "ip", "link", "set", inner, "up")
        hosts = [NamespaceHost(ns_side.split("/")[0], port)] + (
            [NamespaceHost(ipv6[1].split("/")[0], port)] if ipv6 else []
        )
        for host in hosts:
            servers.append(
                subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        namespace,
                        sys.executable,
                        "-m",
                        "http.server",
                        "--bind",
                        host.address,
                        str(port),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for host in hosts:  # this host reaches them: the refusals below are the firewall's
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection((host.address, host.port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"test host {host} never listened"
                    time.sleep(0.1)
        yield hosts
    finally:
        for server in servers:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", outer], capture_output=True)


@pytest.fixture(scope="module")
def test_hosts() -> Iterator[dict[str, NamespaceHost]]:
    """A private-address host (IPv4 and IPv6) and a metadata service at 169.254.169.254."""
    import shutil

    require(shutil.which("ip") is not None and os.geteuid() == 0, "iproute2 (ip netns), as root")
    with (
        namespace_host(
            "lan", "10.213.77.1/30", "10.213.77.2/30", 8080, ("fd57:6f62::1/64", "fd57:6f62::2/64")
        ) as lan,
        namespace_host("meta", "169.254.169.253/30", "169.254.169.254/30", 80) as meta,
    ):
        yield {"lan": lan[0], "lan6": lan[1], "metadata": meta[0]}


def test_a_container_outside_the_builds_network_reaches_the_test_hosts(runtime, test_hosts) -> None:
    """The control: routed and masqueraded as any container's traffic is, the test hosts answer.
    Only the builds' network is confined."""
    for host in (test_hosts["lan"], test_hosts["metadata"]):
        out = runtime.client.containers.run(
            defaults.NODE_IMAGE,
            ["node", "-e", PROBE, host.address, str(host.port)],
            network="bridge",
            remove=True,
        )
        assert out.decode().strip() == "OPEN", host


def test_a_build_container_reaches_neither_the_lan_nor_the_metadata_service(
    runtime, live_container: str, test_hosts
) -> None:
    for name in ("lan", "metadata"):
        host = test_hosts[name]
        assert probe(runtime, live_container, host.address, host.port) == "CLOSED ECONNREFUSED", name
    assert probe(runtime, live_container, test_hosts["lan6"].address, 8080).startswith("CLOSED"), "IPv6"


def test_build_containers_do_not_reach_each_other(runtime, live_container: str) -> None:
    info = runtime.client.api.inspect_container(live_container)
    address = info["NetworkSettings"]["Networks"][defaults.BUILD_NETWORK]["IPAddress"]
    [port] = [int(p.split("/")[0]) for p in info["NetworkSettings"]["Ports"]]
    assert probe(runtime, live_container, "127.0.0.1", port) == "OPEN"  # it does listen there
    other = runtime.create_build_container(
        ContainerSpec("egress-probe", "egress-probe", None, {}, {}, command=HOLD)
    )
    try:
        runtime.start(other)
        assert probe(runtime, other, address, port) != "OPEN"
    finally:
        runtime.remove(other)


def test_the_build_log_says_which_egress_is_in_force(live_site) -> None:
    logs = live_site.record()["logs"]
    assert any(
        line.startswith("Egress: only ") and line.endswith("(the registry and proxy)") for line in logs
    ), logs
