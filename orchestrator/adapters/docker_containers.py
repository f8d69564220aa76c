"""Containers and the steps run in them, on the Docker engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from docker.errors import APIError, DockerException
from docker.errors import NotFound as DockerNotFound
from docker.types import Mount
from requests.exceptions import RequestException

from orchestrator.adapters.docker_engine import DockerBase, _lines
from orchestrator.adapters.runtime import (
    CPU_PERIOD,
    HOLD,
    KIND_BUILD,
    LOST_EXEC,
    STORE_PATH,
    ContainerSpec,
    ContainerState,
    cpu_quota,
    labels,
)
from orchestrator.core import defaults
from orchestrator.core.exceptions import RuntimeUnavailable


class DockerContainers(DockerBase):
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
            labels=labels(
                s, build_id=spec.build_id, website_id=spec.website_id, kind=spec.kind, serve=spec.serve
            ),
            user=spec.user,
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
        try:
            self.client.api.start(container_id)
            return
        except DockerNotFound:
            raise
        except APIError as exc:
            if "already exists in network" not in str(exc):
                raise RuntimeUnavailable(f"Docker failed to start the build container: {exc}") from exc
        except (DockerException, RequestException) as exc:
            raise RuntimeUnavailable(f"Docker failed to start the build container: {exc}") from exc
        # An engine that restarted while a container of this name was on the builds' network can
        # keep its endpoint after that container is gone. Docker deletes an endpoint by force only
        # when no container has its name: step this one aside, delete it, and start again.
        name = self._call("inspect the container", self.client.api.inspect_container, container_id)["Name"]
        name = name.lstrip("/")
        self._call("rename the container", self.client.api.rename, container_id, f"{name}-starting")
        try:
            self._call(
                "remove a stale network endpoint",
                self.client.api.disconnect_container_from_network,
                name,
                defaults.BUILD_NETWORK,
                force=True,
            )
        finally:
            self._call("rename the container", self.client.api.rename, container_id, name)
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
            user="",  # the container's own user (its build's)
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
        try:
            info = self._call("read a step's exit code", self.client.api.exec_inspect, exec_id)
        except DockerNotFound as exc:
            raise RuntimeUnavailable(LOST_EXEC) from exc
        return None if info.get("Running") else int(info.get("ExitCode") or 0)

    def wait(self, container_id: str, timeout: float) -> ContainerState | None:
        """Wait up to ``timeout`` seconds for the container to exit; its state then."""
        try:
            self.client.api.wait(container_id, timeout=timeout)
        except DockerNotFound:
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

    def stop(self, container_id: str, timeout: int = 2) -> None:
        """Stop a container and keep it; one already stopped is not an error."""
        try:
            self._call("stop the container", self.client.api.stop, container_id, timeout=timeout)
        except DockerNotFound as exc:
            raise RuntimeUnavailable(f"no such container: {container_id[:12]}") from exc

    def remove(self, container_id: str) -> None:
        """Stop and remove a container; one already gone (or going) is not an error."""
        try:
            self.client.api.remove_container(container_id, force=True)
        except DockerNotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise RuntimeUnavailable(f"Docker failed to remove {container_id[:12]}: {exc}") from exc
        except (DockerException, RequestException) as exc:
            raise RuntimeUnavailable(f"Docker failed to remove {container_id[:12]}: {exc}") from exc

    def containers_of(self, build_id: str) -> list[str]:
        """Ids of every container of one build (its build container, its cache filler)."""
        return [c["Id"] for c in self.list_ours(build_id=build_id)]

    def exec(self, container_id: str, command: list[str]) -> tuple[int, str]:
        """Run a command in a running container (used by tests and diagnostics)."""
        result = self._call(
            "run a command in the container",
            self.client.containers.get(container_id).exec_run,
            command,
            user="",  # the container's own user
        )
        return int(result.exit_code), result.output.decode("utf-8", "replace")
