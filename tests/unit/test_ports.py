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
