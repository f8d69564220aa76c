"""Where build containers may connect, as this host enforces it.

``IptablesEgress`` (orchestrator.adapters.firewall) keeps the host's firewall to the rules of
orchestrator.core.egress; ``MemoryEgress`` keeps them in memory for unit tests. Both pass the
contract tests in tests/contracts/test_egress_contract.py.
"""

from __future__ import annotations

from typing import Protocol

from orchestrator.core.egress import Destination
from orchestrator.core.exceptions import EgressUnenforced


class Egress(Protocol):
    def enforce(self, allowed: list[Destination]) -> None:
        """Make sure build containers can open connections to ``allowed`` only (cheap when
        that is already so, repaired when the rules were changed or removed). Raises
        EgressUnenforced, saying why, when it cannot."""

    def allowed(self) -> list[Destination] | None:
        """The destinations in force, None when nothing is enforced."""


class MemoryEgress:
    def __init__(self) -> None:
        self.rules: list[Destination] | None = None
        self.broken: str | None = None
        """Set to a reason to make enforce() fail as a host without a firewall would."""
        self.enforced = 0

    def enforce(self, allowed: list[Destination]) -> None:
        if self.broken:
            raise EgressUnenforced(f"cannot confine build containers to the registry: {self.broken}")
        self.rules = sorted(allowed)
        self.enforced += 1

    def allowed(self) -> list[Destination] | None:
        return None if self.rules is None else list(self.rules)
