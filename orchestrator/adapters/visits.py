"""Visits to previews, counted outside their containers.

A preview's idleness is judged by the traffic that reaches it from outside: what arrives
through its published port. ``IptablesVisits`` (orchestrator.adapters.firewall) counts the TCP
segments this host sends into the builds' network to each preview port, so a preview that
requests itself (inside its own network namespace) is not counted, and cannot keep itself
alive. ``MemoryVisits`` plays it in unit tests; both pass tests/contracts/test_visits_contract.py.
"""

from __future__ import annotations

from typing import Protocol


class Visits(Protocol):
    def watch(self, port: int) -> None:
        """Count what reaches the preview on ``port`` from now on (again: keeps its count)."""

    def count(self, port: int) -> int | None:
        """Segments counted for ``port`` so far; None when it is not watched (or cannot be)."""

    def keep(self, ports: set[int]) -> list[int]:
        """Stop counting every port but these (gc: ports no build holds); the ones dropped."""


class MemoryVisits:
    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def watch(self, port: int) -> None:
        self.counts.setdefault(port, 0)

    def visit(self, port: int, segments: int = 1) -> None:
        """A request from outside (tests)."""
        if port in self.counts:
            self.counts[port] += segments

    def count(self, port: int) -> int | None:
        return self.counts.get(port)

    def keep(self, ports: set[int]) -> list[int]:
        dropped = sorted(p for p in self.counts if p not in ports)
        for port in dropped:
            del self.counts[port]
        return dropped
