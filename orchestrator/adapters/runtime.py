"""The container runtime as the orchestrator sees it: the one interface every Docker call goes
through, with two implementations:

- orchestrator.adapters.docker_runtime.DockerRuntime: the Docker engine (docker-py);
- orchestrator.adapters.memory_runtime.MemoryRuntime: scripted containers in memory (output
  lines, exit codes, OOM, slow starts), for unit tests of the control logic.

Both pass the same contract tests (tests/contracts/test_runtime_contract.py). Errors are the
orchestrator's own (``RuntimeUnavailable``), removing something already gone counts as success,
and every container carries the labels of :func:`labels`, so that gc finds all of ours.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

from orchestrator.core import defaults

if TYPE_CHECKING:
    from orchestrator.config import Settings

KIND_BUILD = "build"


SERVE_LABEL = f"{defaults.LABEL_NAMESPACE}.serve"
"""Label of a build container: the command of its development server, so that a preview whose
container stopped under it (a host reboot) can be started again (orchestrator.pipeline.preview)."""


def labels(
    settings: Settings, *, build_id: str, website_id: str, kind: str = KIND_BUILD, serve: str | None = None
) -> dict[str, str]:
    ns = defaults.LABEL_NAMESPACE
    found = {
        f"{ns}.managed": "true",
        f"{ns}.instance": settings.instance_id,
        f"{ns}.kind": kind,
        f"{ns}.build-id": build_id,
        f"{ns}.website-id": website_id,
    }
    if serve is not None:
        found[SERVE_LABEL] = serve
    return found


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
    user: str = defaults.CONTAINER_USER
    """uid:gid its processes run as (a build's own: defaults.build_user)."""
    serve: str | None = None
    """The development server's command, kept as a label (SERVE_LABEL)."""
    store_volume: str | None = None
    """A volume mounted read-write at STORE_PATH: only for containers that run no code of the
    project's (the dependency fetcher), never for a build, a filler or a check."""


LOST_EXEC = "the engine has no record of the step's process any more (it restarted while the step ran)"
"""Why a step's exit code cannot be known: its exec record went with the engine (RuntimeUnavailable)."""

HOLD = ["sleep", "infinity"]
"""The own process of a build container (under Docker's init): it does nothing. An image
committed from another container (a cache entry) carries that container's command, so this is
always given explicitly."""

STORE_PATH = "/var/cache/npm-store"
"""Where the host-side npm tarball store is mounted in the containers allowed to write it."""


class Runtime(Protocol):
    settings: Settings

    def ping(self) -> None:
        """Raise RuntimeUnavailable unless the engine answers."""

    def check(self) -> None:
        """Raise RuntimeUnavailable unless the engine answers and the build image exists."""

    def close(self) -> None:
        """Let go of the engine connection (once per process, at its end)."""

    def data_root(self) -> str | None:
        """Where the engine keeps images and containers' files (None: not known)."""

    def capacity(self) -> tuple[int, int]:
        """The engine's machine: its CPUs and its memory in bytes (what its host record says)."""

    def image_label(self, image: str, label: str) -> str | None: ...

    def create_build_container(self, spec: ContainerSpec) -> str:
        """Create (not start) a container of one build, with its limits and hardening."""

    def copy_in(self, container_id: str, tar: IO[bytes]) -> None:
        """Extract a tar stream at / in the container."""

    def start(self, container_id: str) -> None: ...

    def log_lines(self, container_id: str) -> Iterator[str]:
        """The container's output line by line, following it until the container exits."""

    def exec_start(
        self,
        container_id: str,
        command: list[str],
        env: dict[str, str] | None = None,
        *,
        detach: bool = False,
    ) -> tuple[str, Iterator[str]]:
        """Start ``command`` in a running container; its exec id and, unless ``detach``, its
        output until it exits (then see exec_exit_code)."""

    def exec_exit_code(self, exec_id: str) -> int | None:
        """The exit code of a step started with exec_start, None while it runs."""

    def exec(self, container_id: str, command: list[str]) -> tuple[int, str]:
        """Run a command in a running container and wait (tests and diagnostics)."""

    def read_file(self, container_id: str, path: str) -> bytes | None: ...

    def ensure_volume(self, name: str) -> str: ...

    def volume_size(self, name: str) -> int | None: ...

    def remove_volume(self, name: str) -> bool:
        """False while a container uses it."""

    def state(self, container_id: str) -> ContainerState | None:
        """The container's state, None when it no longer exists."""

    def wait(self, container_id: str, timeout: float) -> ContainerState | None: ...

    def limits(self, container_id: str) -> dict[str, int]: ...

    def set_cpus(self, container_id: str, nano_cpus: int) -> None: ...

    def commit(
        self, container_id: str, repository: str | None, tag: str | None, image_labels: dict[str, str]
    ) -> str:
        """Save a container's files as an image; its id."""

    def image(self, reference: str) -> dict[str, Any] | None:
        """An image as Docker describes it (Id, Size, Created, Config.Labels), None if absent."""

    def images(self, *label_filters: str) -> list[dict[str, Any]]: ...

    def remove_image(self, reference: str) -> bool:
        """False when a container still uses it (never forced)."""

    def stop(self, container_id: str, timeout: int = 2) -> None:
        """Stop a container and keep it (its files stay; ``start`` runs its own process again,
        not the commands exec'd in it). Its processes get SIGTERM, then after ``timeout``
        seconds SIGKILL. One already stopped is not an error; one gone raises RuntimeUnavailable."""

    def remove(self, container_id: str) -> None:
        """Stop and remove a container; one already gone is not an error."""

    def memory_used(self, container_id: str) -> int | None: ...

    def traffic(self, container_id: str) -> int | None:
        """TCP segments the container has received so far, None when it is gone or not
        running (a stopped container has nothing to count)."""

    def disk_used(self, container_id: str) -> int | None: ...

    def containers_of(self, build_id: str) -> list[str]: ...

    def list_ours(self, *, all_instances: bool = False, build_id: str | None = None) -> list[dict[str, Any]]:
        """Every container carrying our labels, running or not, as Docker describes it
        (Id, State, Labels)."""
