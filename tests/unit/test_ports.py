import pytest

from orchestrator.coordination.ports import MemoryPortStore
from orchestrator.core.exceptions import NoFreePort
from orchestrator.core.ports import PortPool


def test_lowest_free_port_is_given_and_never_twice():
    pool = PortPool(MemoryPortStore(), range(5000, 5003), is_free=lambda p: True)
    assert [pool.allocate(f"b{i}") for i in range(3)] == [5000, 5001, 5002]
    with pytest.raises(NoFreePort, match="all 3 preview ports"):
        pool.allocate("b3")


def test_ports_used_outside_the_orchestrator_are_skipped():
    pool = PortPool(MemoryPortStore(), range(5000, 5003), is_free=lambda p: p != 5000)
    assert pool.allocate("a") == 5001


def test_release_only_by_the_owner_and_the_port_comes_back():
    store = MemoryPortStore()
    pool = PortPool(store, range(5000, 5002), is_free=lambda p: True)
    port = pool.allocate("a")
    assert not pool.release(port, "someone-else")
    assert store.owner(port) == "a"
    assert pool.release(port, "a")
    assert pool.allocate("b") == port
    assert store.held() == {port: "b"}


def test_a_claim_lost_to_another_process_moves_on():
    class Racing(MemoryPortStore):
        def claim(self, port, owner):
            if port == 5000:  # another worker took it between the look and the claim
                super().claim(port, "other")
                return False
            return super().claim(port, owner)

    pool = PortPool(Racing(), range(5000, 5003), is_free=lambda p: True)
    assert pool.allocate("mine") == 5001


def test_the_preview_range_joins_the_kernels_reserved_ports():
    from orchestrator.core.ports import parse_ranges, with_reserved

    assert with_reserved("", 41000, 41999) == "41000-41999"
    assert with_reserved("8080,41500-42500", 41000, 41999) == "8080,41000-42500"
    assert with_reserved("41000-41499,41500-41999\n", 41000, 41999) is None
    assert with_reserved("40000-41000,41999", 41000, 41999) == "40000-41999"
    assert parse_ranges("8080,41000-41999\n") == [(8080, 8080), (41000, 41999)]


def test_reserving_writes_the_kernels_list_once_and_says_what_it_did(tmp_path, monkeypatch):
    from orchestrator.adapters import host

    ephemeral, reserved = tmp_path / "range", tmp_path / "reserved"
    ephemeral.write_text("32768\t60999\n")
    reserved.write_text("8080\n")
    monkeypatch.setattr(host, "EPHEMERAL_PORTS", ephemeral)
    monkeypatch.setattr(host, "RESERVED_PORTS", reserved)
    assert (
        host.reserve_ports(41000, 41999)
        == "41000-41999 reserved from the kernel's ephemeral ports (32768-60999)"
    )
    assert reserved.read_text() == "8080,41000-41999"
    assert "already reserved" in host.reserve_ports(41000, 41999)
    assert "outside the kernel's ephemeral ports" in host.reserve_ports(20000, 20999)
    reserved.unlink()
    assert "set net.ipv4.ip_local_reserved_ports=41000-41999 yourself" in host.reserve_ports(41000, 41999)
