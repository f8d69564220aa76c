"""Visits to previews: the host's counters and the in-memory double keep the same books.

The firewall variant works on a bridge of its own (``wobct1``), never the builds' bridge, and
removes its chain afterwards; tests/integration/test_abuse.py counts real requests with it."""

from __future__ import annotations

import os
import shutil

import pytest

from orchestrator.adapters.visits import MemoryVisits, Visits
from tests.conftest import require


@pytest.fixture(params=[pytest.param("memory"), pytest.param("iptables", marks=pytest.mark.integration)])
def visits(request):
    if request.param == "memory":
        yield MemoryVisits()
        return
    from orchestrator.adapters.firewall import IptablesVisits

    require(shutil.which("iptables") is not None and os.geteuid() == 0, "iptables, as root")
    counter = IptablesVisits("wobct1", cache_seconds=0)
    yield counter
    counter.remove()


def test_a_port_not_watched_has_no_count(visits: Visits) -> None:
    assert visits.count(42001) is None


def test_a_watched_port_starts_at_its_count_and_watching_again_keeps_it(visits: Visits) -> None:
    visits.watch(42001)
    assert visits.count(42001) == 0
    visits.watch(42001)
    assert visits.count(42001) == 0


def test_keeping_some_ports_drops_the_others(visits: Visits) -> None:
    for port in (42001, 42002, 42003):
        visits.watch(port)
    assert visits.keep({42002}) == [42001, 42003]
    assert (visits.count(42001), visits.count(42002), visits.count(42003)) == (None, 0, None)
