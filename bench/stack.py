"""A throwaway orchestrator for benchmarks: an API process and build workers with their own data
folder, Redis database, preview ports and container label, so that a benchmark neither sees
nor disturbs a developer's own service. Everything it created is removed when it stops."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from redis import Redis

from orchestrator.core import defaults

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BenchStack:
    def __init__(
        self, workers: int = 4, redis_db: int = 7, ports: tuple[int, int] = (43000, 43499), **settings: str
    ) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="orchestrator-bench-"))
        self.redis_url = f"unix://{defaults.REDIS_SOCKET}?db={redis_db}"
        self.instance = f"bench-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "ORCHESTRATOR_DATA_DIR": str(self.data),
            "REDIS_URL": self.redis_url,
            "ORCHESTRATOR_INSTANCE_ID": self.instance,
            "ORCHESTRATOR_PORT_RANGE_START": str(ports[0]),
            "ORCHESTRATOR_PORT_RANGE_END": str(ports[1]),
            "ORCHESTRATOR_API_PORT": str(_free_port()),
            "ORCHESTRATOR_GATEWAY_PORT": str(_free_port()),
            **{f"ORCHESTRATOR_{key.upper()}": value for key, value in settings.items()},
        }
        self.url = f"http://127.0.0.1:{self.env['ORCHESTRATOR_API_PORT']}"
        self.gateway_port = int(self.env["ORCHESTRATOR_GATEWAY_PORT"])
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        self.workers = workers
        self.procs: list[subprocess.Popen[bytes]] = []

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=self.env,
        )

    def __enter__(self) -> BenchStack:
        Redis.from_url(self.redis_url).flushdb()
        self.token = self.new_token("admin", "bench")
        log = (self.data / "service.log").open("w")
        for args in (["api"], ["gateway"], *[["worker"]] * self.workers):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "orchestrator.cli", *args],
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise SystemExit(f"the benchmark's API did not start; see {self.data / 'service.log'}")
            time.sleep(0.2)

    def new_token(self, role: str, name: str) -> str:
        return self.cli("token", "create", "--role", role, "--name", name).stdout.split()[-1]

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=timeout, headers={"Authorization": f"Bearer {self.token}"}
        )

    def __exit__(self, failed: type[BaseException] | None = None, *_: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        import docker

        client = docker.from_env()
        for container in client.containers.list(
            all=True, filters={"label": f"org.website-orchestrator.instance={self.instance}"}
        ):
            container.remove(force=True)
        for image in client.images.list(
            filters={"label": f"org.website-orchestrator.instance={self.instance}"}
        ):
            client.images.remove(image.id, force=True)
        for volume in client.volumes.list(
            filters={"label": f"org.website-orchestrator.instance={self.instance}"}
        ):
            volume.remove(force=True)
        client.close()
        Redis.from_url(self.redis_url).flushdb()
        if failed is not None and (self.data / "service.log").exists():
            kept = Path(tempfile.gettempdir()) / f"{self.instance}-service.log"
            shutil.copy(self.data / "service.log", kept)
            print(f"the benchmark stopped early; its service's log is kept at {kept}", file=sys.stderr)
        shutil.rmtree(self.data, ignore_errors=True)
