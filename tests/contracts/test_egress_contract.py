"""Registry-only egress: the host's firewall and the in-memory double keep the same rules.

The firewall variant works on a bridge of its own (``wobct0``, which need not exist: rules
naming an interface are kept all the same), never on the builds' bridge, and removes its
chains afterwards. What the rules do to real traffic is proved in
tests/integration/test_egress.py."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from orchestrator.adapters.egress import Egress, MemoryEgress
from orchestrator.core.egress import Destination, chain_name
from tests.conftest import require

BRIDGE = "wobct0"
REGISTRY = Destination("198.51.100.7", 443)
PROXY = Destination("198.51.100.8", 3128)


@pytest.fixture(params=[pytest.param("memory"), pytest.param("iptables", marks=pytest.mark.integration)])
def egress(request):
    if request.param == "memory":
        yield MemoryEgress()
        return
    from orchestrator.adapters.firewall import IptablesEgress

    require(shutil.which("iptables") is not None and os.geteuid() == 0, "iptables, as root")
    firewall = IptablesEgress(BRIDGE)
    yield firewall
    firewall.remove()


def test_nothing_is_enforced_at_first(egress: Egress) -> None:
    assert egress.allowed() is None


def test_what_is_enforced_is_what_is_allowed(egress: Egress) -> None:
    egress.enforce([PROXY, REGISTRY])
    assert egress.allowed() == [REGISTRY, PROXY]
    egress.enforce([REGISTRY])
    assert egress.allowed() == [REGISTRY]


def test_enforcing_again_changes_nothing(egress: Egress) -> None:
    egress.enforce([REGISTRY])
    egress.enforce([REGISTRY])
    assert egress.allowed() == [REGISTRY]


def test_nothing_allowed_is_still_enforced(egress: Egress) -> None:
    egress.enforce([])
    assert egress.allowed() == []


@pytest.mark.integration
def test_rules_flushed_by_someone_are_put_back_at_the_next_build() -> None:
    from orchestrator.adapters.firewall import IptablesEgress

    require(shutil.which("iptables") is not None and os.geteuid() == 0, "iptables, as root")
    firewall = IptablesEgress(BRIDGE)
    try:
        firewall.enforce([REGISTRY])
        subprocess.run(["iptables", "-w", "-F", chain_name(BRIDGE)], check=True)
        assert firewall.allowed() == []
        firewall.enforce([REGISTRY])
        assert firewall.allowed() == [REGISTRY]
        subprocess.run(["iptables", "-w", "-D", "INPUT", "-i", BRIDGE, "-j", chain_name(BRIDGE)], check=True)
        assert firewall.allowed() is None  # a chain nothing enters enforces nothing
        firewall.enforce([REGISTRY])
        assert firewall.allowed() == [REGISTRY]
    finally:
        firewall.remove()
