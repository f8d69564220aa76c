"""`orchestrator up` keeps its worker processes (and its gateway) running: one that ends is
started again, after a back-off that grows while it keeps dying (1, 2, 4 … 30 s) and resets
once it has run a minute."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

BACKOFF_MAX = 30.0
STEADY_SECONDS = 60.0
"""A process that ran this long before it ended starts again at once."""


class Process(Protocol):
    returncode: int | None

    def poll(self) -> int | None: ...


@dataclass
class Slot:
    process: Process
    started: float
    failures: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    spawn: Callable[[], Process]
    count: int
    clock: Callable[[], float] = time.monotonic
    slots: list[Slot] = field(default_factory=list)
    restarts: int = 0
    name: str = "worker"
    """What its processes are, for the log."""

    def start(self) -> None:
        self.slots = [Slot(self.spawn(), self.clock()) for _ in range(self.count)]

    def check(self) -> None:
        """Start again each process that ended, once its back-off is over."""
        now = self.clock()
        for number, slot in enumerate(self.slots):
            if slot.restart_at is None:
                code = slot.process.poll()
                if code is None:
                    continue
                ran = now - slot.started
                slot.failures = 0 if ran >= STEADY_SECONDS else slot.failures + 1
                delay = 0.0 if slot.failures == 0 else min(BACKOFF_MAX, 2.0 ** (slot.failures - 1))
                slot.restart_at = now + delay
                log.warning(
                    "%s %d exited with code %s after %.0f s: starting it again in %.0f s",
                    self.name,
                    number,
                    code,
                    ran,
                    delay,
                )
            if slot.restart_at is not None and now >= slot.restart_at:
                slot.process, slot.started, slot.restart_at = self.spawn(), now, None
                self.restarts += 1

    def watch(self, stopped: threading.Event, every: float = 1.0) -> threading.Thread:
        """Check every ``every`` seconds in a thread of its own until ``stopped``."""

        def loop() -> None:
            while not stopped.wait(every):
                self.check()

        thread = threading.Thread(target=loop, name="supervisor", daemon=True)
        thread.start()
        return thread

    def processes(self) -> list[Process]:
        return [slot.process for slot in self.slots]


def popen(*command: str) -> Callable[[], subprocess.Popen[bytes]]:
    return lambda: subprocess.Popen(list(command))
