"""Port allocation through the real Redis, from several processes at once."""

import multiprocessing
import os

import pytest

pytestmark = pytest.mark.integration


def _allocate(args: tuple[str, int, int]) -> list[int]:
    url, worker, count = args
    from redis import Redis

    from orchestrator.adapters.host import port_is_bindable
    from orchestrator.coordination.ports import RedisPortStore
    from orchestrator.core.ports import PortPool

    store = RedisPortStore(Redis.from_url(url), prefix="wob-test:port:")
    pool = PortPool(store, range(43000, 43100), port_is_bindable)
    return [pool.allocate(f"w{worker}-{i}") for i in range(count)]


def test_concurrent_allocations_from_several_processes_never_collide(services) -> None:
    from redis import Redis

    url = os.environ["REDIS_URL"]
    with multiprocessing.get_context("spawn").Pool(5) as workers:
        ports = [p for chunk in workers.map(_allocate, [(url, w, 10) for w in range(5)]) for p in chunk]
    assert len(ports) == 50 and len(set(ports)) == 50
    redis = Redis.from_url(url)
    assert len(list(redis.scan_iter("wob-test:port:*"))) == 50
    for key in redis.scan_iter("wob-test:port:*"):
        redis.delete(key)


def test_outgoing_connections_never_take_a_preview_port(main_stack) -> None:
    """A sleeping preview keeps its port with nothing listening on it: the workers reserve the
    preview range from the kernel's ephemeral ports, so that no outgoing connection on this host
    takes it and the preview can start again."""
    import socket

    from orchestrator.adapters.host import RESERVED_PORTS
    from orchestrator.core.ports import parse_ranges

    start, end = (
        int(main_stack.env["ORCHESTRATOR_PORT_RANGE_START"]),
        int(main_stack.env["ORCHESTRATOR_PORT_RANGE_END"]),
    )
    reserved = parse_ranges(RESERVED_PORTS.read_text())
    assert any(low <= start and end <= high for low, high in reserved), reserved
    with socket.create_server(("127.0.0.1", 0), backlog=1100) as server:
        clients = [socket.create_connection(server.getsockname()) for _ in range(1000)]
        try:
            taken = {c.getsockname()[1] for c in clients}
        finally:
            for client in clients:
                client.close()
    assert len(taken) == 1000 and not [p for p in taken if start <= p <= end]
