"""The runtime interface on the Docker engine: one class, made of the engine's parts."""

from __future__ import annotations

from orchestrator.adapters.docker_containers import DockerContainers
from orchestrator.adapters.docker_storage import DockerStorage


class DockerRuntime(DockerContainers, DockerStorage):
    """The Docker engine, as the orchestrator uses it (see orchestrator.adapters.runtime)."""
