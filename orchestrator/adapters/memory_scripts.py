"""What the memory runtime's scripted processes and containers are (orchestrator.adapters.memory_runtime)."""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass, field

from orchestrator.adapters.runtime import ContainerSpec

_IDS = itertools.count(1)


def new_id(kind: str) -> str:
    return hashlib.sha256(f"{kind}-{next(_IDS)}-{time.time_ns()}".encode()).hexdigest()


@dataclass(frozen=True)
class Script:
    lines: tuple[str, ...] = ()
    exit_code: int | None = 0
    """None: runs until its container is removed (a server)."""
    oom: bool = False
    """Killed for memory (exit code 137, OOMKilled)."""
    seconds: float = 0.0
    """How long it runs before it ends."""
    writes: int = 0
    """Bytes it writes into its container's layer as it starts (what disk_used then counts)."""


@dataclass
class Process:
    script: Script
    started: float

    def done(self, now: float) -> bool:
        return self.script.exit_code is not None or self.script.oom

    def ended(self, now: float) -> bool:
        return self.done(now) and now >= self.started + self.script.seconds

    @property
    def code(self) -> int | None:
        return 137 if self.script.oom else self.script.exit_code


@dataclass
class Container:
    id: str
    spec: ContainerSpec
    labels: dict[str, str]
    image: str
    files: dict[str, bytes] = field(default_factory=dict)
    process: Process | None = None
    output: list[str] = field(default_factory=list)
    nano_cpus: int = 0
    memory: int = 50 * 2**20
    traffic: int = 0
    written: int = 0
    """Bytes its processes wrote besides the files copied in (Script.writes)."""
