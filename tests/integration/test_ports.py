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
