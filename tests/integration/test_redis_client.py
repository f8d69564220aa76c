"""The Redis client the service makes (orchestrator.adapters.redis_client), against the real
Redis: a blocking read as long as the longest we make is not cut by the socket's timeout; and
through a real Sentinel (a master, a replica and a Sentinel of the test's own, on loopback), the
same client follows a failover with nothing lost."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import RedisError

from orchestrator.adapters import redis_client
from orchestrator.coordination.events import RedisEvents
from tests.conftest import redis_test_url, require

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


MASTER, REPLICA, SENTINEL = 42690, 42691, 42692
"""Loopback ports of this test's own Redis pair and Sentinel."""


@pytest.fixture
def sentinel_pair(tmp_path: Path) -> Iterator[str]:
    """A master, its replica and one Sentinel watching them, on loopback; the Sentinel URL."""
    require(shutil.which("redis-server") is not None, "redis-server")
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    (tmp_path / "sentinel.conf").write_text(
        f"port {SENTINEL}\nbind 127.0.0.1\nsentinel monitor wobtest 127.0.0.1 {MASTER} 1\n"
        "sentinel down-after-milliseconds wobtest 1000\nsentinel failover-timeout wobtest 10000\n"
    )
    processes = [
        subprocess.Popen(
            ["redis-server", "--port", str(MASTER), *common, "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(REPLICA),
                *common,
                "--dir",
                str(tmp_path),
                "--replicaof",
                "127.0.0.1",
                str(MASTER),
            ]
        ),
        subprocess.Popen(
            ["redis-server", str(tmp_path / "sentinel.conf"), "--sentinel"], stdout=subprocess.DEVNULL
        ),
    ]
    try:
        replica = Redis(port=REPLICA)
        wait_for(lambda: replica.info("replication").get("master_link_status") == "up", "the replica's link")
        sentinel = Redis(port=SENTINEL)
        wait_for(
            lambda: sentinel.sentinel_master("wobtest")["num-slaves"] == 1, "the Sentinel to see the replica"
        )
        yield f"redis+sentinel://127.0.0.1:{SENTINEL}/wobtest?db=3"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except RedisError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout} s for {what}")


def test_through_sentinel_the_client_follows_a_failover(sentinel_pair: str) -> None:
    redis = redis_client.connect(sentinel_pair)
    try:
        redis.set("before", "1")
        assert Redis(port=MASTER, db=3).get("before") == b"1"
        wait_for(lambda: Redis(port=REPLICA, db=3).get("before") == b"1", "the write to reach the replica")

        sentinel = Redis(port=SENTINEL)
        # Refused (NOGOODSLAVE) until the Sentinel has fresh INFO from the replica: asked again.
        wait_for(
            lambda: bool(sentinel.execute_command("SENTINEL", "FAILOVER", "wobtest")), "a failover to start"
        )
        wait_for(lambda: sentinel.sentinel_master("wobtest")["port"] == REPLICA, "the Sentinel's failover")
        old = Redis(port=MASTER)
        wait_for(lambda: old.info("replication")["role"] == "slave", "the old master to follow the new one")

        # The same client, with no new URL: its next writes go to the new master.
        wait_for(lambda: bool(redis.set("after", "2")), "a write after the failover")
        assert Redis(port=REPLICA, db=3).get("after") == b"2"
        assert redis.get("before") == b"1"  # nothing written before the failover was lost
        assert Redis(port=REPLICA).info("replication")["role"] == "master"
    finally:
        redis.close()


def test_sentinel_urls_say_what_is_wrong() -> None:
    found = redis_client.sentinel_url("redis+sentinel://:s%40cret@10.0.0.1:26379,[::1]:26380/main?db=2")
    assert found == redis_client.SentinelUrl([("10.0.0.1", 26379), ("::1", 26380)], "main", 2, None, "s@cret")
    assert redis_client.sentinel_url("redis://127.0.0.1:6379/0") is None
    for url, message in (
        ("redis+sentinel://127.0.0.1:26379", "names no master"),
        ("redis+sentinel:///main", "names no Sentinel"),
        ("redis+sentinel://127.0.0.1/main", "is not host:port"),
        ("redis+sentinel://127.0.0.1:26379/main?db=x", "is not a number"),
    ):
        with pytest.raises(ValueError, match=message):
            redis_client.sentinel_url(url)
    assert (
        redis_client.shown("redis://:s3cret@cache.example.com:6379/0")
        == "redis://:***@cache.example.com:6379/0"
    )
    assert redis_client.shown("unix:///run/website-orchestrator/redis.sock?db=0").endswith("redis.sock?db=0")
