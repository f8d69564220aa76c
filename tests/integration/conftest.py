"""The real stack for integration tests: Redis, the Docker engine, the Node image, an API
process and build workers, all isolated from a developer's own instance (own Redis database,
data folder, instance label and port range)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import postgres_test_url, redis_test_url, require

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
WORKERS = 4
TERMINAL = {"running", "failed", "cancelled", "stopped"}


def api_client(url: str, token: str) -> httpx.Client:
    """A client of the API. Idle connections are closed by the client after 2 s, before uvicorn
    drops them after its 5 s keep-alive: no half-closed socket is left for the GC to warn about."""
    return httpx.Client(
        base_url=url,
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(keepalive_expiry=2),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_postgres_database(name: str) -> str:
    """A new, empty database ``name`` beside the tests' PostgreSQL one; its URL."""
    from sqlalchemy import create_engine, make_url, text

    base = postgres_test_url()
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def test_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The main stack's environment. Its database is PostgreSQL; the stacks of single tests
    (small_stack) keep SQLite in their own folders, so every end-to-end path runs on both."""
    values = {
        "DATABASE_URL": fresh_postgres_database("orchestrator_stack"),
        "ORCHESTRATOR_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "REDIS_URL": redis_test_url(14),
        "ORCHESTRATOR_INSTANCE_ID": f"test-{uuid.uuid4().hex[:8]}",
        "ORCHESTRATOR_PORT_RANGE_START": "42000",
        "ORCHESTRATOR_PORT_RANGE_END": "42199",
        "ORCHESTRATOR_API_PORT": str(free_port()),
        "ORCHESTRATOR_GATEWAY_PORT": str(free_port()),
        # the main stack tests builds, not scheduling (see test_scheduling.py): no waits
        "ORCHESTRATOR_MAX_CPU_PERCENT": "100",
        "ORCHESTRATOR_MAX_MEMORY_PERCENT": "100",
        "ORCHESTRATOR_MAX_BUILDING_PER_USER": str(WORKERS),
        "ORCHESTRATOR_BUILD_MEMORY_BUDGET_MB": "16384",
        # gc runs when a test says so (test_lifecycle.py tests the schedule on a stack of its own)
        "ORCHESTRATOR_GC_INTERVAL": "0",
        # the main stack's few users build many websites; quotas are tested in tests/unit/test_quotas.py
        "ORCHESTRATOR_MAX_PREVIEWS_PER_USER": "1000",
        "ORCHESTRATOR_MAX_QUEUED_PER_USER": "1000",
        "ORCHESTRATOR_MAX_UPLOADS_PER_MINUTE": "1000",
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def services(test_env: dict[str, str]) -> None:
    from redis import Redis
    from redis.exceptions import RedisError

    from orchestrator.adapters.docker_runtime import DockerRuntime
    from orchestrator.config import Settings
    from orchestrator.core.exceptions import RuntimeUnavailable

    try:
        Redis.from_url(test_env["REDIS_URL"], socket_connect_timeout=2).ping()
        redis_ok = True
    except RedisError:
        redis_ok = False
    require(redis_ok, f"Redis at {test_env['REDIS_URL']}")
    try:
        DockerRuntime(Settings()).check()
        docker_ok = True
    except RuntimeUnavailable:
        docker_ok = False
    require(docker_ok, "the Docker engine with the build image")
    Redis.from_url(test_env["REDIS_URL"]).flushdb()


@pytest.fixture(scope="session")
def ctx(services: None):
    """The tests' own context (the stack's processes make theirs from the same environment)."""
    from orchestrator.config import Settings
    from orchestrator.context import Context

    context = Context.connect(Settings())
    yield context
    context.close()


@pytest.fixture(scope="session")
def runtime(ctx):
    return ctx.runtime


def run_cli(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`orchestrator ARGS` in a process of its own, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


PREVIEW = ("running", "sleeping")
"""Statuses of a build that holds a port and a container (a preview awake or asleep)."""


class Stack:
    """An API process and build workers, each a real process, with their own environment."""

    def __init__(self, name: str, env: dict[str, str], workers: int) -> None:
        self.name, self.env, self.workers = name, env, workers
        self.url = f"http://127.0.0.1:{env['ORCHESTRATOR_API_PORT']}"
        self.gateway_port = int(env["ORCHESTRATOR_GATEWAY_PORT"])
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        """The preview gateway, reached on loopback; the preview's host name goes in Host."""
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list = []
        from orchestrator.config import Settings
        from orchestrator.coordination import keys

        host = env.get("ORCHESTRATOR_HOST_ID") or Settings(npm_registry="https://registry.example.com/").host
        self.port_prefix = keys.on_host(keys.PORT, host)
        """Where this stack's host keeps its port claims in Redis."""
        self._clients: list[httpx.Client] = []
        self._database = None

    def start_process(
        self, name: str, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        """`orchestrator ARGS` as process ``name``, with ``env`` over the stack's environment,
        behind ``prefix`` (a command that runs it elsewhere: another network namespace)."""
        ARTIFACTS.mkdir(exist_ok=True)
        env = {k: v for k, v in {**self.env, **(env or {})}.items() if k != "PYTHONTRACEMALLOC"}
        log = (ARTIFACTS / f"{self.name}-{name}.log").open("w")
        self._logs.append(log)
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "orchestrator.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,  # a worker and the build it forks share a process group
        )
        self.procs[name] = proc
        return proc

    def start(self) -> Stack:
        run_cli(
            "token", "create", "--role", "admin", "--name", "migrate-first", env=self.env
        )  # migrates once
        self.start_process("api", "api")
        self.start_process("gateway", "gateway")
        for i in range(self.workers):
            self.start_process(f"worker-{i}", "worker")
        deadline = time.monotonic() + 60
        answer = "no answer"
        while True:  # healthy: the API answers, builds can run (its workers are live), the gateway answers
            try:
                found = httpx.get(f"{self.url}/api/health", timeout=5)
                if found.status_code == 200 and httpx.get(self.gateway, timeout=5).status_code == 404:
                    return self
                answer = found.text
            except httpx.HTTPError as exc:
                answer = str(exc)
            if time.monotonic() > deadline or self.procs["api"].poll() is not None:
                self.stop(None)
                pytest.fail(
                    f"the stack did not become healthy ({answer}); see {ARTIFACTS / (self.name + '-*.log')}"
                )
            time.sleep(0.2)

    def through_gateway(self, url: str, path: str = "", **kwargs) -> httpx.Response:
        """GET a gateway URL (``http://<name>.preview.localhost:<port>/``) as a browser would:
        to loopback, with the URL's host name in Host (this host's resolver may not know
        ``*.localhost``, which browsers resolve themselves)."""
        host = httpx.URL(url).netloc.decode()
        headers = {"Host": host, **kwargs.pop("headers", {})}
        timeout = kwargs.pop("timeout", 30)
        return httpx.get(f"{self.gateway}/{path.lstrip('/')}", headers=headers, timeout=timeout, **kwargs)

    def token(self, role: str, name: str) -> str:
        """A new token, written to the stack's database from here: what `orchestrator token
        create` does (tested as the stack starts), without its 2 s of process start-up."""
        from orchestrator.adapters.database import Database

        if self._database is None:
            self._database = Database(settings_of(self.env).sqlalchemy_url)
        return new_token(self._database, role, name)

    def client(self, role: str = "admin", name: str = "tests") -> httpx.Client:
        """A client with a new token (closed when the stack stops)."""
        client = api_client(self.url, self.token(role, name))
        self._clients.append(client)
        return client

    def leaks(self, runtime, client: httpx.Client, settle: float = 15) -> list[str]:
        """What the stack holds that its builds' records do not justify, once nothing is in
        progress: build slots, waiting or deferred entries, port claims (each held by the attempt
        that went live), containers (a running preview's only), workspaces. Empty when clean;
        asked again for up to ``settle`` seconds (a build just live still finishes its job)."""
        deadline = time.monotonic() + settle
        while (found := self._leaks(runtime, client)) and time.monotonic() < deadline:
            time.sleep(0.5)
        return found

    def _leaks(self, runtime, client: httpx.Client) -> list[str]:
        from redis import Redis

        from orchestrator.coordination import keys
        from orchestrator.coordination.admission import RedisAdmission
        from orchestrator.coordination.ports import RedisPortStore
        from orchestrator.core.ports import attempt_owner, owner_build

        redis = Redis.from_url(self.env["REDIS_URL"])
        admission, ports = RedisAdmission(redis), RedisPortStore(redis, self.port_prefix)
        found = [f"build slot held by {build_id}" for build_id in admission.active()]
        found += [f"waiting entry {build_id}" for build_id in admission.waiting()]
        found += [f"deferred entry {keys.text(raw)}" for raw in redis.zrange(keys.DEFERRED, 0, -1)]

        def record(build_id: str) -> dict:
            answer = client.get(f"/api/builds/{build_id}")
            return answer.json() if answer.status_code == 200 else {"status": "missing"}

        for port, owner in ports.held().items():
            build = record(owner_build(owner))
            if build["status"] not in PREVIEW or owner != attempt_owner(build["id"], build["attempts"]):
                found.append(f"port {port} held by {owner} (build {build['status']})")
        ns = "org.website-orchestrator"
        mine = [f"{ns}.instance={self.env['ORCHESTRATOR_INSTANCE_ID']}"]
        for container in runtime.client.api.containers(all=True, filters={"label": mine}):
            build = record(container["Labels"].get(f"{ns}.build-id", ""))
            if build["status"] not in PREVIEW or build.get("containerId") not in (None, container["Id"]):
                found.append(f"container {container['Id'][:12]} of a {build['status']} build")
        workspaces = Path(self.env["ORCHESTRATOR_DATA_DIR"]) / "workspaces"
        found += [f"workspace {path.name}" for path in workspaces.iterdir()] if workspaces.is_dir() else []
        redis.close()
        return found

    def stop(self, runtime) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()
        for client in self._clients:
            client.close()
        if self._database is not None:
            self._database.close()
            self._database = None
        if runtime is None:
            return
        ns = "org.website-orchestrator"
        mine = [f"{ns}.instance={self.env['ORCHESTRATOR_INSTANCE_ID']}"]
        containers = runtime.client.api.containers(all=True, filters={"label": mine})
        with ThreadPoolExecutor(8) as pool:  # the engine removes several at once; one by one took 20 s
            list(pool.map(runtime.remove, [c["Id"] for c in containers]))
        for image in runtime.client.api.images(filters={"label": mine}):  # its dependency cache
            runtime.client.api.remove_image(image["Id"], force=True)
        for volume in runtime.client.volumes.list(filters={"label": mine}):  # its package store
            volume.remove(force=True)


def settings_of(env: dict[str, str]):
    """The settings a process started with ``env`` (from the tests' folder) reads."""
    from orchestrator.config import Settings

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def new_token(database, role: str, name: str) -> str:
    """A token stored in ``database``, in clear text: the service's own create_token."""
    from orchestrator.service.auth import Role, create_token

    with database.session() as session:
        return create_token(session, Role(role), name)[1]


def stack_env(tmp: Path, redis_db: int, ports: tuple[int, int], **overrides: str) -> dict[str, str]:
    """The environment of an isolated stack: its own Redis database, data, labels and ports."""
    from redis import Redis

    url = redis_test_url(redis_db)
    Redis.from_url(url).flushdb()
    inherited = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # SQLite, in ``tmp``
    return {
        **inherited,
        "ORCHESTRATOR_DATA_DIR": str(tmp),
        "REDIS_URL": url,
        "ORCHESTRATOR_INSTANCE_ID": f"test-{uuid.uuid4().hex[:8]}",
        "ORCHESTRATOR_PORT_RANGE_START": str(ports[0]),
        "ORCHESTRATOR_PORT_RANGE_END": str(ports[1]),
        "ORCHESTRATOR_API_PORT": str(free_port()),
        "ORCHESTRATOR_GATEWAY_PORT": str(free_port()),
        "ORCHESTRATOR_GC_INTERVAL": "0",
        "ORCHESTRATOR_HOST_ID": "test-host",
        **overrides,
    }


@pytest.fixture(scope="session")
def main_stack(services: None, test_env: dict[str, str], runtime) -> Iterator[Stack]:
    """The main stack: a real API process and WORKERS real build workers."""
    stack = Stack("main", {**os.environ, **test_env}, WORKERS).start()
    yield stack
    stack.stop(runtime)


@pytest.fixture(scope="session")
def api_url(main_stack: Stack) -> str:
    return main_stack.url


def make_token(role: str, name: str) -> str:
    """A new token of the main stack (whose environment the tests' process has)."""
    from orchestrator.adapters.database import Database

    database = Database(settings_of(dict(os.environ)).sqlalchemy_url)
    try:
        return new_token(database, role, name)
    finally:
        database.close()


@pytest.fixture(scope="session")
def admin(api_url: str) -> Iterator[httpx.Client]:
    with api_client(api_url, make_token("admin", "tests-admin")) as client:
        yield client


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """create-vite's templates, from the npm registry (`npm pack create-vite`)."""
    where = tmp_path_factory.mktemp("create-vite")
    require(shutil.which("npm") is not None, "npm")
    subprocess.run(["npm", "pack", "--silent", "create-vite"], cwd=where, check=True, capture_output=True)
    with tarfile.open(next(where.glob("create-vite-*.tgz"))) as tar:
        tar.extractall(where, filter="data")
    return where / "package"


@dataclass
class Watched:
    """A build followed by polling its status every 0.2 s from the moment it was uploaded."""

    client: httpx.Client
    website_id: str
    job_id: str
    response: dict
    received_at: float
    history: list[dict] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def follow(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                response = self.client.get(f"/api/builds/{self.job_id}/status")
                assert response.status_code == 200, response.text
                status = response.json()
                self.history.append(status)
                if status["status"] in TERMINAL:
                    break
                time.sleep(0.2)
        except BaseException as exc:  # reported by wait(), in the test's own thread
            self.error = exc
        finally:
            self.done.set()

    def wait(self, timeout: float = 300) -> dict:
        assert self.done.wait(timeout), f"build {self.job_id} did not end in {timeout} s"
        if self.error is not None:
            raise AssertionError(f"following build {self.job_id} failed: {self.error!r}") from self.error
        return self.history[-1]

    def record(self) -> dict:
        return self.client.get(f"/api/builds/{self.job_id}").json()


def upload(
    client: httpx.Client,
    files: list[tuple[str, bytes]],
    name: str | None = None,
    follow_for: float = 300,
    website_id: str | None = None,
) -> Watched:
    """Upload files (a new website, or a new version of ``website_id``) and follow its build."""
    data = {k: v for k, v in (("name", name), ("websiteId", website_id)) if v}
    response = client.post("/api/websites", files=[("files", f) for f in files], data=data or None)
    received = time.time()
    assert response.status_code == 202, response.text
    body = response.json()
    watched = Watched(client, body["website"]["id"], body["website"]["buildJobId"], body, received)
    threading.Thread(target=watched.follow, args=(follow_for,), daemon=True).start()
    return watched


def zip_dir(path: Path, prefix: str = "") -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_file():
                archive.write(file, prefix + file.relative_to(path).as_posix())
    return buffer.getvalue()


def chromium_path() -> str:
    """Debian's Chromium (installed by scripts/dev): no browser download."""
    path = shutil.which("chromium")
    require(path is not None, "chromium (Debian package)")
    assert path is not None
    return path


def vite_project(
    folder: Path, name: str, scripts: dict[str, str] | None = None, dependencies: dict[str, str] | None = None
) -> Path:
    """A minimal Vite project (an index.html and a package.json) to build."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(f"<h1>{name}</h1>")
    package = {
        "name": name,
        "private": True,
        "scripts": scripts or {},
        "devDependencies": {"vite": "^8.0.0", **(dependencies or {})},
    }
    (folder / "package.json").write_text(json.dumps(package))
    return folder


@contextmanager
def small_stack(
    name: str, tmp: Path, redis_db: int, ports: tuple[int, int], runtime, workers: int = 1, **overrides: str
) -> Iterator[Stack]:
    """A stack of its own for one test, with no CPU or host-memory waits unless overridden."""
    env = stack_env(
        tmp,
        redis_db,
        ports,
        **{"ORCHESTRATOR_MAX_CPU_PERCENT": "100", "ORCHESTRATOR_MAX_MEMORY_PERCENT": "100", **overrides},
    )
    stack = Stack(name, env, workers=workers).start()
    try:
        yield stack
    finally:
        stack.stop(runtime)
