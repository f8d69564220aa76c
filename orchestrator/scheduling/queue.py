"""Queueing a build: the waiting set (admission.py) in front of RQ, and the reconciliation
that rebuilds both from the database (the source of truth) when a worker starts.

A build goes: recorded ``queued`` → added to the waiting set → admitted by a worker's
dispatch round (dispatcher.py) → one RQ job ``build-<id>-<attempt>`` → run_build.
"""

from __future__ import annotations

from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlmodel import col, select

from orchestrator.adapters.database import session_scope
from orchestrator.adapters.redis_client import get_redis
from orchestrator.config import get_settings
from orchestrator.coordination.admission import Admission
from orchestrator.core import defaults
from orchestrator.core.exceptions import ServiceUnavailable
from orchestrator.core.priority import score
from orchestrator.core.status import TERMINAL, Status
from orchestrator.state.models import BuildJob

BUILD_FUNCTION = "orchestrator.pipeline.build.run_build"
_LIVE_JOB = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


def rq_job_id(build_id: str, attempt: int) -> str:
    return f"build-{build_id}-{attempt}"


def get_queue() -> Queue:
    # JSON, not pickle: a pickled job read back from Redis would run code.
    return Queue(
        defaults.QUEUE_NAME, connection=get_redis(), serializer=JSONSerializer, default_timeout=job_timeout()
    )


def job_timeout() -> int:
    return 60 + get_settings().build_timeout


def admission() -> Admission:
    return Admission(get_redis())


def build_score(build: BuildJob) -> float:
    return score(build.created_at.timestamp(), build.priority, get_settings().aging_seconds)


def submit(build: BuildJob) -> None:
    """Put a queued build in the waiting set; workers admit it when its turn comes."""
    try:
        admission().add(build.id, build.owner_id, build_score(build))
    except RedisError as exc:
        raise ServiceUnavailable(
            f"the build was saved but could not be queued (Redis: {exc}); it will be queued "
            "when a worker starts"
        ) from exc


def start_job(build_id: str, attempt: int) -> None:
    """Hand an admitted build to RQ."""
    get_queue().enqueue(
        BUILD_FUNCTION,
        build_id,
        job_id=rq_job_id(build_id, attempt),
        job_timeout=job_timeout(),
        result_ttl=3600,
        failure_ttl=7 * 86400,
    )


def _job_alive(build_id: str, attempt: int) -> bool:
    try:
        job = Job.fetch(rq_job_id(build_id, attempt), connection=get_redis(), serializer=JSONSerializer)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in _LIVE_JOB


def reconcile() -> list[str]:
    """Make Redis agree with the database; returns what was put back.

    - a queued build that is neither waiting nor admitted (Redis lost it) waits again, at the
      place its arrival and priority give it;
    - an admitted build whose RQ job is gone gets its job again;
    - an admitted build that the database says is over frees its slot.
    """
    gate = admission()
    waiting, active = set(gate.waiting(100_000)), gate.active()
    with session_scope() as session:
        queued = session.exec(select(BuildJob).where(BuildJob.status == Status.QUEUED)).all()
        over = session.exec(
            select(BuildJob.id).where(col(BuildJob.id).in_(list(active)), col(BuildJob.status).in_(TERMINAL))
        ).all()
    fixed = []
    for build in queued:
        if build.id in active:
            if not _job_alive(build.id, build.attempts):
                start_job(build.id, build.attempts)
                fixed.append(build.id)
        elif build.id not in waiting:
            gate.add(build.id, build.owner_id, build_score(build))
            fixed.append(build.id)
    for build_id in over:
        gate.release(build_id)
    return fixed
