"""The Docker engine behind the runtime interface (orchestrator.adapters.runtime): the client,
its errors turned into the orchestrator's, and the checks. The calls themselves are in
docker_containers (containers and steps) and docker_storage (images, volumes, measures)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound
from docker.errors import NotFound as DockerNotFound
from docker.utils import kwargs_from_env
from requests.exceptions import RequestException

from orchestrator.adapters.runtime import ContainerState
from orchestrator.config import Settings
from orchestrator.core import defaults
from orchestrator.core.exceptions import RuntimeUnavailable


def _lines(stream: Iterator[bytes]) -> Iterator[str]:
    """Decoded lines of a byte stream of output chunks."""
    pending = b""
    try:
        for chunk in stream:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace").rstrip("\r")
    except (APIError, DockerException, RequestException):
        return  # the container was removed while we read
    if pending:
        yield pending.decode("utf-8", "replace")


def engine_options(engine: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """How to reach another host's engine: its address, with the TLS of DOCKER_TLS_VERIFY and
    DOCKER_CERT_PATH (as Docker's own client) when it is a TCP address."""
    options: dict[str, Any] = {}
    if engine.startswith(("tcp://", "https://")):
        options = kwargs_from_env(environment=dict(os.environ if environ is None else environ))
    return {**options, "base_url": engine}


class DockerBase:
    """One Docker client per process (made on first use, closed with the process's context)."""

    def __init__(
        self, settings: Settings, client: docker.DockerClient | None = None, engine: str | None = None
    ) -> None:
        """``engine``: another host's engine address (unix://, tcp://, ssh://); None: this
        process's own (DOCKER_HOST, else the local socket)."""
        self.settings = settings
        self._client = client
        self._engine = engine
        self._data_root: str | None = None

    @property
    def on_this_host(self) -> bool:
        """Whether the engine runs on this host (its socket), not at a remote DOCKER_HOST."""
        return (self._engine or os.environ.get("DOCKER_HOST", "unix://")).startswith("unix://")

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                if self._engine is None:
                    self._client = docker.from_env(timeout=60)
                else:
                    self._client = docker.DockerClient(**engine_options(self._engine), timeout=60)
            except DockerException as exc:
                where = self._engine or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
                raise RuntimeUnavailable(f"the Docker engine at {where} cannot be reached: {exc}") from exc
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (APIError, DockerException, RequestException) as exc:
            if isinstance(exc, DockerNotFound):
                raise
            raise RuntimeUnavailable(f"Docker failed to {what}: {exc}") from exc

    # -- checks --------------------------------------------------------------------

    def ping(self) -> None:
        """Raise RuntimeUnavailable unless the engine answers."""
        self._call("answer a ping", self.client.ping)

    def data_root(self) -> str | None:
        if self._data_root is None:
            self._data_root = str(self._call("describe itself", self.client.info).get("DockerRootDir") or "")
        return self._data_root or None

    def capacity(self) -> tuple[int, int]:
        info = self._call("describe itself", self.client.info)
        return int(info.get("NCPU") or 0), int(info.get("MemTotal") or 0)

    def check(self) -> None:
        """Raise RuntimeUnavailable unless the engine answers and the build image exists."""
        self.ping()
        try:
            self.client.images.get(self.settings.node_image)
        except ImageNotFound as exc:
            raise RuntimeUnavailable(
                f"the build image {self.settings.node_image} is missing: build it with "
                "'scripts/dev setup' (or images/build.sh)"
            ) from exc
        except (APIError, DockerException, RequestException) as exc:
            raise RuntimeUnavailable(f"Docker failed to inspect the build image: {exc}") from exc

    def image_label(self, image: str, label: str) -> str | None:
        try:
            found = self.client.images.get(image)
        except ImageNotFound:
            return None
        return (found.labels or {}).get(label)

    def ensure_network(self) -> str:
        """The network of build containers: outbound access, no traffic between containers."""
        name = defaults.BUILD_NETWORK
        try:
            self.client.networks.get(name)
        except DockerNotFound:
            try:
                self.client.networks.create(
                    name,
                    driver="bridge",
                    options={
                        "com.docker.network.bridge.enable_icc": "false",
                        "com.docker.network.bridge.name": defaults.BUILD_BRIDGE,
                    },
                    labels={f"{defaults.LABEL_NAMESPACE}.managed": "true"},
                )
            except APIError as exc:
                if exc.status_code != 409:  # created meanwhile by another worker
                    raise RuntimeUnavailable(f"Docker failed to create network {name}: {exc}") from exc
        except (APIError, DockerException, RequestException) as exc:
            raise RuntimeUnavailable(f"Docker failed to inspect network {name}: {exc}") from exc
        return name

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def state(self, container_id: str) -> ContainerState | None:
        """The container's state, None when it no longer exists."""
        try:
            info = self._call("inspect the container", self.client.api.inspect_container, container_id)
        except DockerNotFound:
            return None
        state = info["State"]
        running = bool(state.get("Running"))
        return ContainerState(
            running=running,
            exit_code=None if running else state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
            status=state.get("Status", ""),
        )

    def _remove_unless_in_use(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> bool:
        """Remove something of Docker's: True when it is gone (or was), False when Docker
        refuses because it is in use (409); any other failure is RuntimeUnavailable."""
        try:
            fn(*args, **kwargs)
        except (DockerNotFound, ImageNotFound):
            return True
        except APIError as exc:
            if exc.status_code == 409:
                return False
            raise RuntimeUnavailable(f"Docker failed to remove {what}: {exc}") from exc
        except (DockerException, RequestException) as exc:
            raise RuntimeUnavailable(f"Docker failed to remove {what}: {exc}") from exc
        return True

    def list_ours(self, *, all_instances: bool = False, build_id: str | None = None) -> list[dict[str, Any]]:
        """Every container carrying our labels (of one build, with ``build_id``), running or not,
        as Docker describes it."""
        ns = defaults.LABEL_NAMESPACE
        wanted = [f"{ns}.managed=true"]
        if not all_instances:
            wanted.append(f"{ns}.instance={self.settings.instance_id}")
        if build_id is not None:
            wanted.append(f"{ns}.build-id={build_id}")
        found = self._call("list containers", self.client.api.containers, all=True, filters={"label": wanted})
        return list(found)
