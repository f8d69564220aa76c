"""Build workers run the build job and nothing else, whatever a job in Redis names."""

from __future__ import annotations

import pytest
from redis import Redis
from rq.serializers import JSONSerializer

from orchestrator.scheduling.queue import BUILD_FUNCTION, OnlyBuilds

NOWHERE = Redis(host="unused.example.com")  # never connected: creating a job sends nothing


def job(func: str, **options: object) -> OnlyBuilds:
    return OnlyBuilds.create(func, args=("x",), connection=NOWHERE, serializer=JSONSerializer, **options)


def test_a_job_naming_any_other_function_is_refused() -> None:
    with pytest.raises(PermissionError, match="'os.system' is not the build job"):
        job("os.system").func  # noqa: B018


def test_a_job_with_a_callback_is_refused() -> None:
    from rq import Callback

    rogue = job(BUILD_FUNCTION, on_success=Callback("os.system"))
    with pytest.raises(PermissionError, match="a success callback 'os.system'"):
        rogue.success_callback  # noqa: B018


def test_the_build_job_runs() -> None:
    from orchestrator.pipeline.job import run_build

    assert job(BUILD_FUNCTION).func is run_build
