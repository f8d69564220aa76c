"""The Redis client the service makes (orchestrator.adapters.redis_client), against the real
Redis: a blocking read as long as the longest we make is not cut by the socket's timeout."""

from __future__ import annotations

import time

import pytest

from orchestrator.adapters import redis_client
from orchestrator.coordination.events import RedisEvents
from tests.conftest import redis_test_url

pytestmark = pytest.mark.integration


def test_a_wait_as_long_as_the_longest_block_ends_empty_not_with_a_socket_timeout() -> None:
    # redis-py's default socket timeout (5 s) equals this wait: a cancel once answered 500 for it
    redis = redis_client.connect(redis_test_url(4))
    try:
        events = RedisEvents(redis, lambda: redis_client.connect_async(redis_test_url(4)))
        started = time.monotonic()
        assert events.wait("no-such-build", None, redis_client.BLOCK_SECONDS + 0.5) == []
        assert time.monotonic() - started >= redis_client.BLOCK_SECONDS - 0.1
    finally:
        redis.close()
