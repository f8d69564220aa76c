"""Contract tests: each interface's tests run over every implementation of it — the in-memory
one (always) and the real one (Redis, the Docker engine: marked integration)."""

from __future__ import annotations

import os

import pytest
from redis import Redis
from redis.exceptions import RedisError

from orchestrator.config import Settings
from tests.conftest import redis_test_url, require

REDIS_URL = os.environ.get("ORCHESTRATOR_CONTRACT_REDIS", redis_test_url(4))


def real_redis() -> Redis:
    """A clean Redis database of the contract tests (the caller closes it)."""
    redis = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        redis.ping()
        up = True
    except RedisError:
        up = False
    require(up, f"Redis at {REDIS_URL}")
    redis.flushdb()
    return redis


@pytest.fixture(autouse=True)
def _defaults_only(clean_environment: None) -> None:
    """Every contract test's settings come from their defaults (tests/conftest.py)."""


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        npm_registry="https://registry.example.com/",
        redis_url=REDIS_URL,
        instance_id="contract",
    )


IMPLEMENTATIONS = [pytest.param("memory"), pytest.param("redis", marks=pytest.mark.integration)]
