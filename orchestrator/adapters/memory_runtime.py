"""The runtime interface in memory: scripted "containers" for unit tests of the control logic.

A container's process, and each command run in it, follows a :class:`Script`: the lines it
prints, how long it takes, and how it ends (an exit code, an OOM kill, or running until it is
removed). Scripts are looked up by a piece of the command line. It passes the same contract
tests as the Docker engine (tests/contracts/test_runtime_contract.py).
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping
from typing import IO, Any

from orchestrator.adapters.memory_scripts import Container, Process, Script, new_id
from orchestrator.adapters.runtime import (
    HOLD,
    KIND_BUILD,
    LOST_EXEC,
    ContainerSpec,
    ContainerState,
    cpu_quota,
    labels,
)
from orchestrator.config import Settings
from orchestrator.core import defaults
from orchestrator.core.exceptions import RuntimeUnavailable


class MemoryRuntime:
    def __init__(self, settings: Settings, scripts: Mapping[str, Script] | None = None) -> None:
        self.settings = settings
        self.scripts = dict(scripts or {})
        """A piece of a command line → what that command does (the first piece found wins)."""
        self.available = True
        """False: every call fails as if the engine were down."""
        self.containers: dict[str, Container] = {}
        self.images_by_id: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, int] = {}
        self._execs: dict[str, tuple[str, Process]] = {}
        self._lock = threading.Lock()
        self.add_image(settings.node_image, {})

    # -- scripting ---------------------------------------------------------------

    def script(self, command: list[str]) -> Script:
        line = " ".join(command)
        for piece, script in self.scripts.items():
            if piece in line:
                return script
        return Script(exit_code=None) if command == HOLD else Script()

    def add_image(self, reference: str, image_labels: dict[str, str], size: int = 100 * 2**20) -> str:
        image_id = "sha256:" + new_id("image")
        self.images_by_id[image_id] = {
            "Id": image_id,
            "RepoTags": [reference] if ":" in reference else [],
            "Size": size,
            "Created": int(time.time()),
            "Labels": dict(image_labels),
            "Config": {"Labels": dict(image_labels)},
        }
        return image_id

    def _up(self) -> None:
        if not self.available:
            raise RuntimeUnavailable("Docker failed to answer: the engine is down (memory runtime)")

    def _get(self, container_id: str) -> Container:
        self._up()
        found = self.containers.get(container_id)
        if found is None:
            raise RuntimeUnavailable(f"no such container: {container_id[:12]}")
        return found

    # -- the interface -------------------------------------------------------------

    def ping(self) -> None:
        self._up()

    def check(self) -> None:
        self._up()
        if self.image(self.settings.node_image) is None:
            raise RuntimeUnavailable(f"the build image {self.settings.node_image} is missing")

    def close(self) -> None:
        pass

    def data_root(self) -> str | None:
        return None

    def capacity(self) -> tuple[int, int]:
        self._up()
        return 2, 4 << 30

    def image_label(self, image: str, label: str) -> str | None:
        found = self.image(image)
        return None if found is None else found["Config"]["Labels"].get(label)

    def create_build_container(self, spec: ContainerSpec) -> str:
        self._up()
        image = spec.image or self.settings.node_image
        found = self.image(image)
        if found is None:
            raise RuntimeUnavailable(f"Docker failed to create the build container: no image {image}")
        container = Container(
            new_id("container"),
            spec,
            labels(
                self.settings,
                build_id=spec.build_id,
                website_id=spec.website_id,
                kind=spec.kind,
                serve=spec.serve,
            ),
            found["Id"],
            files=dict(found.get("Files", {})),
            nano_cpus=spec.nano_cpus or self.settings.nano_cpus,
        )
        self.containers[container.id] = container
        return container.id

    def copy_in(self, container_id: str, tar: IO[bytes]) -> None:
        container = self._get(container_id)
        with tarfile.open(fileobj=io.BytesIO(tar.read())) as archive:
            for member in archive.getmembers():
                extracted = archive.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    container.files["/" + member.name.lstrip("/")] = extracted.read()

    def start(self, container_id: str) -> None:
        container = self._get(container_id)
        container.process = Process(self.script(container.spec.command or HOLD), time.monotonic())
        container.output.extend(container.process.script.lines)
        container.written += container.process.script.writes

    def _follow(self, process: Process, lines: list[str], alive: Any) -> Iterator[str]:
        sent = 0
        while True:
            while sent < len(lines):
                yield lines[sent]
                sent += 1
            if process.ended(time.monotonic()) or not alive():
                return
            time.sleep(0.01)

    def log_lines(self, container_id: str) -> Iterator[str]:
        container = self._get(container_id)
        if container.process is None:
            return iter(container.output)
        return self._follow(container.process, container.output, lambda: container_id in self.containers)

    def exec_start(
        self,
        container_id: str,
        command: list[str],
        env: dict[str, str] | None = None,
        *,
        detach: bool = False,
    ) -> tuple[str, Iterator[str]]:
        container = self._get(container_id)
        state = self.state(container_id)
        if state is None or not state.running:
            raise RuntimeUnavailable(
                f"Docker failed to start a step: container {container_id[:12]} is not running"
            )
        process = Process(self.script(command), time.monotonic())
        container.written += process.script.writes
        exec_id = new_id("exec")
        self._execs[exec_id] = (container_id, process)
        if detach:  # a service: its output goes to the container's log, its end ends the container
            container.output.extend(process.script.lines)
            if process.done(0):
                container.process = process
            return exec_id, iter(())
        return exec_id, self._follow(
            process, list(process.script.lines), lambda: container_id in self.containers
        )

    def exec_exit_code(self, exec_id: str) -> int | None:
        self._up()
        if exec_id not in self._execs:
            raise RuntimeUnavailable(LOST_EXEC)
        container_id, process = self._execs[exec_id]
        if container_id not in self.containers:
            return 137
        return process.code if process.ended(time.monotonic()) else None

    def exec(self, container_id: str, command: list[str]) -> tuple[int, str]:
        exec_id, lines = self.exec_start(container_id, command)
        output = "\n".join(lines)
        return self.exec_exit_code(exec_id) or 0, output

    def read_file(self, container_id: str, path: str) -> bytes | None:
        return self._get(container_id).files.get(path)

    def ensure_volume(self, name: str) -> str:
        self._up()
        self.volumes.setdefault(name, 0)
        return name

    def volume_size(self, name: str) -> int | None:
        self._up()
        return self.volumes.get(name)

    def remove_volume(self, name: str) -> bool:
        self._up()
        if any(c.spec.store_volume == name for c in self.containers.values()):
            return False
        self.volumes.pop(name, None)
        return True

    def state(self, container_id: str) -> ContainerState | None:
        self._up()
        container = self.containers.get(container_id)
        if container is None:
            return None
        process = container.process
        if process is None:
            return ContainerState(False, 0, False, "created")
        if not process.ended(time.monotonic()):
            return ContainerState(True, None, False, "running")
        return ContainerState(False, process.code, process.script.oom, "exited")

    def wait(self, container_id: str, timeout: float) -> ContainerState | None:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(container_id)
            if state is None or not state.running or time.monotonic() >= deadline:
                return state
            time.sleep(0.01)

    def limits(self, container_id: str) -> dict[str, int]:
        container = self._get(container_id)
        memory = int(self.settings.memory_limit.rstrip("m")) * 2**20
        quota = cpu_quota(container.nano_cpus)
        return {"memory": memory, "nano_cpus": quota * 10_000, "pids_limit": self.settings.pids_limit}

    def set_cpus(self, container_id: str, nano_cpus: int) -> None:
        self._get(container_id).nano_cpus = nano_cpus

    def commit(
        self, container_id: str, repository: str | None, tag: str | None, image_labels: dict[str, str]
    ) -> str:
        container = self._get(container_id)
        reference = f"{repository}:{tag}" if repository and tag else ""
        for image in self.images_by_id.values():  # a tag names one image
            if reference in image["RepoTags"]:
                image["RepoTags"].remove(reference)
        image_id = self.add_image(reference, image_labels)
        self.images_by_id[image_id]["Files"] = dict(container.files)
        return image_id

    def image(self, reference: str) -> dict[str, Any] | None:
        self._up()
        for image in self.images_by_id.values():
            if reference == image["Id"] or reference in image["RepoTags"]:
                return image
        return None

    def images(self, *label_filters: str) -> list[dict[str, Any]]:
        self._up()

        def matches(image: dict[str, Any]) -> bool:
            found = image["Labels"]
            for wanted in label_filters:
                name, _, value = wanted.partition("=")
                if name not in found or (value and found[name] != value):
                    return False
            return True

        return [dict(image) for image in self.images_by_id.values() if matches(image)]

    def remove_image(self, reference: str) -> bool:
        image = self.image(reference)
        if image is None:
            return True
        if any(c.image == image["Id"] for c in self.containers.values()):
            return False
        del self.images_by_id[image["Id"]]
        return True

    def stop(self, container_id: str, timeout: int = 2) -> None:
        container = self._get(container_id)
        if container.process is not None:
            container.process = Process(Script(exit_code=137), time.monotonic())
        for exec_id, (owner, process) in list(self._execs.items()):
            if owner == container_id and not process.ended(time.monotonic()):
                self._execs[exec_id] = (owner, Process(Script(exit_code=137), time.monotonic()))

    def remove(self, container_id: str) -> None:
        self._up()
        self.containers.pop(container_id, None)

    def memory_used(self, container_id: str) -> int | None:
        container = self.containers.get(container_id)
        return None if container is None else container.memory

    def traffic(self, container_id: str) -> int | None:
        state = self.state(container_id)
        if state is None or not state.running:
            return None
        return self.containers[container_id].traffic

    def disk_used(self, container_id: str) -> int | None:
        container = self.containers.get(container_id)
        return (
            None if container is None else container.written + sum(len(v) for v in container.files.values())
        )

    def containers_of(self, build_id: str) -> list[str]:
        return [c["Id"] for c in self.list_ours(build_id=build_id)]

    def list_ours(self, *, all_instances: bool = False, build_id: str | None = None) -> list[dict[str, Any]]:
        self._up()
        ns = defaults.LABEL_NAMESPACE
        found = []
        for container in list(self.containers.values()):
            if not all_instances and container.labels[f"{ns}.instance"] != self.settings.instance_id:
                continue
            if build_id is not None and container.labels[f"{ns}.build-id"] != build_id:
                continue
            state = self.state(container.id)
            found.append(
                {
                    "Id": container.id,
                    "State": state.status if state else "removing",
                    "Labels": dict(container.labels),
                    "Names": [f"/wob-{container.spec.build_id[:12]}"],
                    "Kind": container.labels.get(f"{ns}.kind", KIND_BUILD),
                }
            )
        return found
