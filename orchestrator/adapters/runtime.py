"""Every call to the Docker engine goes through here.

Docker's errors are turned into the orchestrator's own (``RuntimeUnavailable``), removing
something already gone counts as success, and every container we create carries the
labels of :func:`labels`, so that ``gc`` can find all of ours with one filter.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import Mount
from requests.exceptions import RequestException

from orchestrator.config import Settings
from orchestrator.core import defaults
from orchestrator.core.exceptions import RuntimeUnavailable

KIND_BUILD = "build"


def labels(settings: Settings, *, build_id: str, website_id: str, kind: str = KIND_BUILD) -> dict[str, str]:
    ns = defaults.LABEL_NAMESPACE
    return {
        f"{ns}.managed": "true",
        f"{ns}.instance": settings.instance_id,
        f"{ns}.kind": kind,
        f"{ns}.build-id": build_id,
        f"{ns}.website-id": website_id,
    }


@dataclass(frozen=True)
class ContainerState:
    running: bool
    exit_code: int | None
    oom_killed: bool
    status: str


KIND_FILLER = "deps-fill"
"""Label kind of the container that installs a project's dependencies into the cache."""

KIND_FETCH = "deps-fetch"
"""Label kind of the container that downloads and unpacks dependencies (no scripts) into the cache."""

KIND_CHECK = "check"
"""Label kind of a build's type-check container (its own memory limit, beside the preview's)."""

KIND_STEP_IMAGE = "step-image"
"""Label kind of the short-lived image a build's type-check container starts from."""

KIND_DEPS = "deps"
"""Label kind of dependency-cache images (and of the containers that fill them)."""

CPU_PERIOD = 100_000
"""CFS period (µs) of the CPU quota of our containers: quota = CPUs × period."""


def cpu_quota(nano_cpus: int) -> int:
    return nano_cpus * CPU_PERIOD // 1_000_000_000


@dataclass(frozen=True)
class ContainerSpec:
    build_id: str
    website_id: str
    port: int | None
    """Host port published to the same port inside; None publishes nothing (a cache filler)."""
    env: dict[str, str]
    extra_hosts: dict[str, str]
    image: str | None = None
    """None: the Node image."""
    nano_cpus: int | None = None
    """CPU limit while building (None: the settings' limit); serve_cpus() sets the preview's."""
    kind: str = KIND_BUILD
    command: list[str] | None = None
    """The container's own process; None: HOLD, which only keeps the container up while the
    worker runs each step in it with ``docker exec``."""
    networked: bool = True
    """False: no network at all (a type check needs none)."""
    store_volume: str | None = None
    """A volume mounted read-write at STORE_PATH: only for containers that run no code of the
    project's (the dependency fetcher), never for a build, a filler or a check."""


HOLD = ["sleep", "infinity"]
"""The own process of a build container (under Docker's init): it does nothing. An image
committed from another container (a cache entry) carries that container's command, so this is
always given explicitly."""

STORE_PATH = "/var/cache/npm-store"
"""Where the host-side npm tarball store is mounted in the containers allowed to write it."""


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


class Runtime:
    """The Docker engine, as the orchestrator uses it."""

    def __init__(self, settings: Settings, client: docker.DockerClient | None = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=60)
            except DockerException as exc:
                where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
                raise RuntimeUnavailable(f"the Docker engine at {where} cannot be reached: {exc}") from exc
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (APIError, DockerException, RequestException) as exc:
            if isinstance(exc, NotFound):
                raise
            raise RuntimeUnavailable(f"Docker failed to {what}: {exc}") from exc

    # -- checks --------------------------------------------------------------------

    def ping(self) -> None:
        """Raise RuntimeUnavailable unless the engine answers."""
        self._call("answer a ping", self.client.ping)

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
        except NotFound:
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

    # -- build containers ----------------------------------------------------------

    def create_build_container(self, spec: ContainerSpec) -> str:
        """Create (not start) the container of one build, with its limits and hardening."""
        s = self.settings
        suffix = "" if spec.kind == KIND_BUILD else f"-{spec.kind}"
        container = self._call(
            "create the build container",
            self.client.containers.create,
            spec.image or s.node_image,
            spec.command or HOLD,
            name=f"wob-{spec.build_id[:12]}{suffix}",
            environment=spec.env,
            labels=labels(s, build_id=spec.build_id, website_id=spec.website_id, kind=spec.kind),
            user=defaults.CONTAINER_USER,
            working_dir=defaults.CONTAINER_WORKDIR,
            mem_limit=s.memory_limit,
            memswap_limit=s.memory_limit,  # no swap on top of the memory limit
            # A quota, not nano_cpus: Docker can change a quota on a running container (serve_cpus).
            cpu_period=CPU_PERIOD,
            cpu_quota=cpu_quota(spec.nano_cpus or s.nano_cpus),
            pids_limit=s.pids_limit,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            init=True,
            network=self.ensure_network() if spec.networked else None,
            network_mode=None if spec.networked else "none",
            extra_hosts=spec.extra_hosts if spec.networked else None,
            # A mount (HostConfig), not a volume (Config): an image committed from this container
            # must not declare the store's path a volume of its own.
            mounts=[Mount(STORE_PATH, spec.store_volume, type="volume")] if spec.store_volume else None,
            ports={f"{spec.port}/tcp": (s.preview_bind, spec.port)} if spec.port else None,
            log_config={"type": "json-file", "config": {"max-size": "10m", "max-file": "2"}},
        )
        return str(container.id)

    def copy_in(self, container_id: str, tar: IO[bytes]) -> None:
        """Extract a tar stream at / in the container (see workspace.pack_for_container)."""
        self._call("copy the files into the container", self.client.api.put_archive, container_id, "/", tar)

    def start(self, container_id: str) -> None:
        self._call("start the build container", self.client.api.start, container_id)

    def log_lines(self, container_id: str) -> Iterator[str]:
        """The container's output line by line, following it until the container exits."""
        stream = self._call(
            "read the container's logs",
            self.client.api.logs,
            container_id,
            stream=True,
            follow=True,
            stdout=True,
            stderr=True,
        )
        yield from _lines(stream)

    # -- steps: processes the worker starts in a container, whose exit code Docker reports --

    def exec_start(
        self,
        container_id: str,
        command: list[str],
        env: dict[str, str] | None = None,
        *,
        detach: bool = False,
    ) -> tuple[str, Iterator[str]]:
        """Start ``command`` in a running container as its user; its exec id and, unless
        ``detach``, its output line by line until it exits (then see exec_exit_code)."""
        created = self._call(
            "start a step in the container",
            self.client.api.exec_create,
            container_id,
            command,
            environment=env or None,
            user=defaults.CONTAINER_USER,
            workdir=defaults.CONTAINER_WORKDIR,
        )
        exec_id = str(created["Id"])
        if detach:
            self._call("start a step in the container", self.client.api.exec_start, exec_id, detach=True)
            return exec_id, iter(())
        stream = self._call("start a step in the container", self.client.api.exec_start, exec_id, stream=True)
        return exec_id, _lines(stream)

    def exec_exit_code(self, exec_id: str) -> int | None:
        """The exit code of a step started with exec_start, None while it runs."""
        info = self._call("read a step's exit code", self.client.api.exec_inspect, exec_id)
        return None if info.get("Running") else int(info.get("ExitCode") or 0)

    def read_file(self, container_id: str, path: str) -> bytes | None:
        """One file's contents from a container (running or not), None when it has none."""
        try:
            chunks, _ = self.client.api.get_archive(container_id, path)
        except NotFound:
            return None
        except (APIError, DockerException, RequestException) as exc:
            raise RuntimeUnavailable(f"Docker failed to read {path} from a container: {exc}") from exc
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            extracted = tar.extractfile(member) if member else None
            return extracted.read() if extracted else None

    def ensure_volume(self, name: str) -> str:
        """A named volume of this installation's (created once: the store of downloaded packages)."""
        try:
            self.client.volumes.get(name)
        except NotFound:
            ns = defaults.LABEL_NAMESPACE
            self._call(
                "create a volume",
                self.client.volumes.create,
                name,
                labels={f"{ns}.managed": "true", f"{ns}.instance": self.settings.instance_id},
            )
        except (APIError, DockerException, RequestException) as exc:
            raise RuntimeUnavailable(f"Docker failed to inspect volume {name}: {exc}") from exc
        return name

    def volume_size(self, name: str) -> int | None:
        """Bytes a volume holds (Docker measures every volume: about a second), None if absent."""
        usage = self._call("measure the volumes", self.client.api.df)
        for volume in usage.get("Volumes") or []:
            if volume.get("Name") == name:
                return int((volume.get("UsageData") or {}).get("Size") or 0)
        return None

    def remove_volume(self, name: str) -> bool:
        """Remove a volume; False while a container uses it."""
        return self._remove_unless_in_use(f"volume {name}", self.client.api.remove_volume, name)

    def state(self, container_id: str) -> ContainerState | None:
        """The container's state, None when it no longer exists."""
        try:
            info = self._call("inspect the container", self.client.api.inspect_container, container_id)
        except NotFound:
            return None
        state = info["State"]
        running = bool(state.get("Running"))
        return ContainerState(
            running=running,
            exit_code=None if running else state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
            status=state.get("Status", ""),
        )

    def wait(self, container_id: str, timeout: float) -> ContainerState | None:
        """Wait up to ``timeout`` seconds for the container to exit; its state then."""
        try:
            self.client.api.wait(container_id, timeout=timeout)
        except NotFound:
            return None
        except (APIError, DockerException, RequestException):
            pass
        return self.state(container_id)

    def limits(self, container_id: str) -> dict[str, int]:
        info = self._call("inspect the container", self.client.api.inspect_container, container_id)
        host = info["HostConfig"]
        quota, period = host.get("CpuQuota") or 0, host.get("CpuPeriod") or CPU_PERIOD
        return {
            "memory": host.get("Memory", 0),
            "nano_cpus": host.get("NanoCpus") or (quota * 1_000_000_000 // period if quota > 0 else 0),
            "pids_limit": host.get("PidsLimit") or 0,
        }

    def set_cpus(self, container_id: str, nano_cpus: int) -> None:
        """Change a running container's CPU limit (a build's boost back to the preview's share)."""
        self._call(
            "change the container's CPU limit",
            self.client.api.update_container,
            container_id,
            cpu_period=CPU_PERIOD,
            cpu_quota=cpu_quota(nano_cpus),
        )

    # -- images of the dependency cache ----------------------------------------------

    def commit(
        self, container_id: str, repository: str | None, tag: str | None, image_labels: dict[str, str]
    ) -> str:
        """Save a container's files as an image (untagged with no repository); its id."""
        changes = [f"LABEL {json.dumps(k)}={json.dumps(v)}" for k, v in image_labels.items()]
        result = self._call(
            "save the dependency cache image",
            self.client.api.commit,
            container_id,
            repository=repository,
            tag=tag,
            changes=changes,
            pause=False,
        )
        return str(result["Id"])

    def image(self, reference: str) -> dict[str, Any] | None:
        """An image as Docker describes it (Id, Size, Created, Config.Labels), None if absent."""
        try:
            return dict(self._call("inspect an image", self.client.api.inspect_image, reference))
        except (NotFound, ImageNotFound):
            return None

    def images(self, *label_filters: str) -> list[dict[str, Any]]:
        found = self._call("list images", self.client.api.images, filters={"label": list(label_filters)})
        return list(found)

    def remove_image(self, reference: str) -> bool:
        """Remove an image; False when a container still uses it (it is never forced)."""
        return self._remove_unless_in_use(
            f"image {reference}", self.client.api.remove_image, reference, noprune=False
        )

    def _remove_unless_in_use(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> bool:
        """Remove something of Docker's: True when it is gone (or was), False when Docker
        refuses because it is in use (409); any other failure is RuntimeUnavailable."""
        try:
            fn(*args, **kwargs)
        except (NotFound, ImageNotFound):
            return True
        except APIError as exc:
            if exc.status_code == 409:
                return False
            raise RuntimeUnavailable(f"Docker failed to remove {what}: {exc}") from exc
        except (DockerException, RequestException) as exc:
            raise RuntimeUnavailable(f"Docker failed to remove {what}: {exc}") from exc
        return True

    def remove(self, container_id: str) -> None:
        """Stop and remove a container; one already gone (or going) is not an error."""
        try:
            self.client.api.remove_container(container_id, force=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise RuntimeUnavailable(f"Docker failed to remove {container_id[:12]}: {exc}") from exc
        except (DockerException, RequestException) as exc:
            raise RuntimeUnavailable(f"Docker failed to remove {container_id[:12]}: {exc}") from exc

    def memory_used(self, container_id: str) -> int | None:
        """Bytes a container really uses (its working set: usage less inactive page cache), as
        `docker stats` reports it. Read from the container's cgroup (fast: a gc or admission round
        reads every preview), else asked from the engine."""
        for usage_file, stat_file, inactive in (
            (
                f"/sys/fs/cgroup/memory/docker/{container_id}/memory.usage_in_bytes",
                f"/sys/fs/cgroup/memory/docker/{container_id}/memory.stat",
                "total_inactive_file",
            ),
            (
                f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.current",
                f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.stat",
                "inactive_file",
            ),
            (
                f"/sys/fs/cgroup/docker/{container_id}/memory.current",
                f"/sys/fs/cgroup/docker/{container_id}/memory.stat",
                "inactive_file",
            ),
        ):
            try:
                usage = int(Path(usage_file).read_text())
                stats = dict(line.split() for line in Path(stat_file).read_text().splitlines())
            except (OSError, ValueError):
                continue
            return max(0, usage - int(stats.get(inactive, 0)))
        try:
            stats = self.client.api.stats(container_id, stream=False, one_shot=True)
        except NotFound:
            return None
        except (APIError, DockerException, RequestException) as exc:
            raise RuntimeUnavailable(f"Docker failed to read a container's memory: {exc}") from exc
        memory = stats.get("memory_stats") or {}
        if "usage" not in memory:
            return None
        inactive_bytes = (memory.get("stats") or {}).get("total_inactive_file", 0)
        return max(0, int(memory["usage"]) - int(inactive_bytes))

    def containers_of(self, build_id: str) -> list[str]:
        """Ids of every container of one build (its build container, its cache filler)."""
        return [c["Id"] for c in self.list_ours(build_id=build_id)]

    def traffic(self, container_id: str) -> int | None:
        """TCP segments the container has received so far (requests to its preview), None when
        it is gone. Read from its network namespace on this host (fast), else from the engine."""
        try:
            info = self._call("inspect the container", self.client.api.inspect_container, container_id)
        except NotFound:
            return None
        pid = info["State"].get("Pid") or 0
        if pid:
            try:
                lines = [line.split() for line in Path(f"/proc/{pid}/net/snmp").read_text().splitlines()]
                names, values = [row for row in lines if row and row[0] == "Tcp:"][:2]
                return int(values[names.index("InSegs")])
            except (OSError, ValueError, IndexError):
                pass  # not on this host (a remote engine): ask the engine
        try:
            stats = self.client.api.stats(container_id, stream=False, one_shot=True)
        except NotFound:
            return None
        except (APIError, DockerException, RequestException, ValueError) as exc:
            if self.state(container_id) is None:
                return None  # removed while we asked (another gc, a DELETE): no traffic to read
            raise RuntimeUnavailable(f"Docker failed to read a container's network counters: {exc}") from exc
        networks = stats.get("networks") or {}
        return sum(int(n.get("rx_packets", 0)) for n in networks.values()) if networks else None

    def disk_used(self, container_id: str) -> int | None:
        """Bytes the container wrote on top of its image (node_modules, caches), None when gone."""
        found = self._call(
            "measure the container",
            self.client.api.containers,
            all=True,
            size=True,
            filters={"id": container_id},
        )
        return int(found[0].get("SizeRw") or 0) if found else None

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

    def exec(self, container_id: str, command: list[str]) -> tuple[int, str]:
        """Run a command in a running container (used by tests and diagnostics)."""
        result = self._call(
            "run a command in the container",
            self.client.containers.get(container_id).exec_run,
            command,
            user=defaults.CONTAINER_USER,
        )
        return int(result.exit_code), result.output.decode("utf-8", "replace")
