"""Images, volumes, files and measures (memory, traffic, disk) on the Docker engine."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound
from docker.errors import NotFound as DockerNotFound
from requests.exceptions import RequestException

from orchestrator.adapters.docker_engine import DockerBase
from orchestrator.core import defaults
from orchestrator.core.exceptions import RuntimeUnavailable


class DockerStorage(DockerBase):
    def read_file(self, container_id: str, path: str) -> bytes | None:
        """One file's contents from a container (running or not), None when it has none."""
        try:
            chunks, _ = self.client.api.get_archive(container_id, path)
        except DockerNotFound:
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
        except DockerNotFound:
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
        except (DockerNotFound, ImageNotFound):
            return None

    def images(self, *label_filters: str) -> list[dict[str, Any]]:
        found = self._call("list images", self.client.api.images, filters={"label": list(label_filters)})
        return list(found)

    def remove_image(self, reference: str) -> bool:
        """Remove an image; False when a container still uses it (it is never forced)."""
        return self._remove_unless_in_use(
            f"image {reference}", self.client.api.remove_image, reference, noprune=False
        )

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
        except DockerNotFound:
            return None
        except (APIError, DockerException, RequestException) as exc:
            raise RuntimeUnavailable(f"Docker failed to read a container's memory: {exc}") from exc
        memory = stats.get("memory_stats") or {}
        if "usage" not in memory:
            return None
        inactive_bytes = (memory.get("stats") or {}).get("total_inactive_file", 0)
        return max(0, int(memory["usage"]) - int(inactive_bytes))

    def traffic(self, container_id: str) -> int | None:
        """TCP segments the container has received so far (requests to its preview), None when
        it is gone or not running (nothing to count). Read from its network namespace on this
        host (fast), else from the engine."""
        try:
            info = self._call("inspect the container", self.client.api.inspect_container, container_id)
        except DockerNotFound:
            return None
        if not info["State"].get("Running"):
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
        except DockerNotFound:
            return None
        except (APIError, DockerException, RequestException, ValueError) as exc:
            state = self.state(container_id)
            if state is None or not state.running:
                return None  # stopped or removed while we asked (another gc, a DELETE)
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
