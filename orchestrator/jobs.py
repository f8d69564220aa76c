"""The RQ side: the build queue, enqueueing, and putting the database's queued builds back
on the queue when Redis lost them (the database is the source of truth)."""

from __future__ import annotations

from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlmodel import select

from orchestrator import defaults
from orchestrator.config import get_settings
from orchestrator.db import session_scope
from orchestrator.exceptions import ServiceUnavailable
from orchestrator.models import BuildJob
from orchestrator.redis_conn import get_redis
from orchestrator.states import Status

BUILD_FUNCTION = "orchestrator.build.run_build"


def rq_job_id(build_id: str) -> str:
    return f"build-{build_id}"


def get_queue() -> Queue:
    # JSON, not pickle: a pickled job read back from Redis would run code.
    return Queue(
        defaults.QUEUE_NAME, connection=get_redis(), serializer=JSONSerializer, default_timeout=job_timeout()
    )


def job_timeout() -> int:
    s = get_settings()
    return 60 + s.install_timeout + s.typecheck_timeout + s.serve_timeout


def enqueue_build(build_id: str) -> None:
    try:
        get_queue().enqueue(
            BUILD_FUNCTION,
            build_id,
            job_id=rq_job_id(build_id),
            job_timeout=job_timeout(),
            result_ttl=3600,
            failure_ttl=7 * 86400,
        )
    except RedisError as exc:
        raise ServiceUnavailable(
            f"the build was saved but could not be queued (Redis: {exc}); it will be queued "
            "when a worker starts"
        ) from exc


_DONE = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


def requeue_lost() -> list[str]:
    """Enqueue every build the database has as queued but Redis does not hold as waiting or
    running (Redis restarted without its data, or a job ended without taking the build)."""
    with session_scope() as session:
        queued = session.exec(select(BuildJob.id).where(BuildJob.status == Status.QUEUED)).all()
    redis = get_redis()
    lost = []
    for build_id in queued:
        try:
            job = Job.fetch(rq_job_id(build_id), connection=redis, serializer=JSONSerializer)
        except NoSuchJobError:
            job = None
        if job is not None and job.get_status(refresh=False) not in _DONE:
            continue
        if job is not None:
            job.delete()
        enqueue_build(build_id)
        lost.append(build_id)
    return lost


def queue_position(build_id: str) -> int | None:
    """1 for the next build a worker takes; None when the build is not waiting in the queue."""
    try:
        position = get_queue().get_job_position(rq_job_id(build_id))
    except RedisError:
        return None
    return None if position is None else position + 1
