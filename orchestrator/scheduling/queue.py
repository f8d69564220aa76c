"""Queueing a build: the waiting set (orchestrator.coordination.admission) in front of RQ, and
the reconciliation that rebuilds both from the database (the source of truth) when a worker
starts.

A build goes: recorded ``queued`` → added to the waiting set → admitted by a worker's
dispatch round (orchestrator.scheduling.dispatcher) → one RQ job ``build-<id>-<attempt>`` →
orchestrator.pipeline.job.run_build.
"""

from __future__ import annotations

from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlmodel import col, select

from orchestrator.context import Context
from orchestrator.core.exceptions import ServiceUnavailable
from orchestrator.core.hosts import queue_name
from orchestrator.core.priority import build_score
from orchestrator.core.status import TERMINAL, Status
from orchestrator.state.models import BuildJob

BUILD_FUNCTION = "orchestrator.pipeline.job.run_build"
_LIVE_JOB = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


class OnlyBuilds(Job):
    """The jobs a build worker runs: the build job, and nothing else. Anything that can write to
    Redis could otherwise name any importable function, or callback, for the worker to run as
    itself; such a job fails without running, saying why."""

    def _refuse(self, what: str) -> None:
        raise PermissionError(f"job {self.id}: {what} is not the build job; build workers run nothing else")

    @property
    def func(self):  # type: ignore[no-untyped-def]
        if self.func_name != BUILD_FUNCTION or self.instance is not None:
            self._refuse(repr(self.func_name))
        return super().func

    @property
    def success_callback(self):  # type: ignore[no-untyped-def]
        if self._success_callback_name:
            self._refuse(f"a success callback {self._success_callback_name!r}")

    @property
    def failure_callback(self):  # type: ignore[no-untyped-def]
        if self._failure_callback_name:
            self._refuse(f"a failure callback {self._failure_callback_name!r}")

    @property
    def stopped_callback(self):  # type: ignore[no-untyped-def]
        if self._stopped_callback_name:
            self._refuse(f"a stopped callback {self._stopped_callback_name!r}")


def rq_job_id(build_id: str, attempt: int) -> str:
    return f"build-{build_id}-{attempt}"


def job_timeout(ctx: Context) -> int:
    """RQ kills a job after this long: the build's own deadline and a minute to clean up."""
    return 60 + ctx.settings.build_timeout


def get_queue(ctx: Context, host_id: str | None = None) -> Queue:
    """The RQ queue of this host's builds (or of ``host_id``'s)."""
    # JSON, not pickle: a pickled job read back from Redis would run code.
    assert ctx.redis is not None, "RQ needs the real context's Redis"
    name = queue_name(host_id or ctx.host_id)
    return Queue(name, connection=ctx.redis, serializer=JSONSerializer, default_timeout=job_timeout(ctx))


def submit(ctx: Context, build: BuildJob) -> None:
    """Put a queued build in the waiting set; workers admit it when its turn comes."""
    try:
        ctx.stores.admission.add(build.id, build.owner_id, build_score(build, ctx.settings.aging_seconds))
    except RedisError as exc:
        raise ServiceUnavailable(
            f"the build was saved but could not be queued (Redis: {exc}); the workers queue it "
            "once Redis is back (they reconcile with the database every 30 s)"
        ) from exc


class RQJobs:
    """Admitted builds handed to RQ, and whether RQ still has a build's job."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def start(self, build_id: str, attempt: int, host_id: str | None = None) -> None:
        """Hand an admitted build to RQ, on its host's queue (None: this host's)."""
        get_queue(self.ctx, host_id).enqueue(
            BUILD_FUNCTION,
            build_id,
            attempt,
            job_id=rq_job_id(build_id, attempt),
            job_timeout=job_timeout(self.ctx),
            result_ttl=3600,
            failure_ttl=7 * 86400,
        )

    def pending(self, host_id: str | None = None) -> int:
        """Admitted builds no worker of this host (or of ``host_id``) took yet."""
        return get_queue(self.ctx, host_id).count

    def alive(self, build_id: str, attempt: int) -> bool:
        assert self.ctx.redis is not None
        try:
            job = Job.fetch(
                rq_job_id(build_id, attempt), connection=self.ctx.redis, serializer=JSONSerializer
            )
        except NoSuchJobError:
            return False
        return job.get_status(refresh=False) in _LIVE_JOB


class MemoryJobs:
    """RQ's part in memory: the admitted builds in order (unit tests of the dispatcher)."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host
        """The host whose worker this is (None: one queue for every host)."""
        self.started: list[tuple[str, int]] = []
        self.hosts: dict[str, str | None] = {}
        """Build id → the host whose queue it was put on."""
        self.taken = 0

    def start(self, build_id: str, attempt: int, host_id: str | None = None) -> None:
        self.started.append((build_id, attempt))
        self.hosts[build_id] = host_id

    def pending(self, host_id: str | None = None) -> int:
        """Builds not taken yet: on ``host_id``'s queue, else on this one's (every queue when
        made without a host)."""
        host = host_id or self.host
        waiting = self.started[self.taken :]
        if host is None:
            return len(waiting)
        return sum(1 for build_id, _ in waiting if self.hosts.get(build_id) in (None, host))

    def alive(self, build_id: str, attempt: int) -> bool:
        return (build_id, attempt) in self.started[self.taken :]


Jobs = RQJobs | MemoryJobs


def reconcile(ctx: Context, jobs: Jobs) -> list[str]:
    """Make the coordination stores agree with the database; returns what was put back.

    - a queued build that is neither waiting, backing off nor admitted (Redis lost it) waits
      again, at the place its arrival and priority give it;
    - an admitted build of this host whose RQ job is gone gets its job again; one admitted to
      a host that was lost since waits again, for any host;
    - an admitted build that the database says is over frees its slot.
    """
    gate = ctx.stores.admission
    waiting, active = set(gate.waiting(100_000)) | set(gate.deferred()), gate.active()
    live_hosts = set(ctx.stores.hosts.live()) | {ctx.host_id}
    with ctx.session() as session:
        queued = session.exec(select(BuildJob).where(BuildJob.status == Status.QUEUED)).all()
        over = session.exec(
            select(BuildJob.id).where(col(BuildJob.id).in_(list(active)), col(BuildJob.status).in_(TERMINAL))
        ).all()
    fixed = []
    for build in queued:
        elsewhere = build.host_id not in (None, ctx.host_id)
        if build.id in active and elsewhere and build.host_id not in live_hosts:
            # admitted to a host that was lost before its worker took it: admitted again, anywhere
            gate.release(build.id)
            gate.add(build.id, build.owner_id, build_score(build, ctx.settings.aging_seconds))
            fixed.append(build.id)
        elif build.id in active:
            if build.host_id in (None, ctx.host_id) and not jobs.alive(build.id, build.attempts):
                jobs.start(build.id, build.attempts)
                fixed.append(build.id)
        elif build.id not in waiting:
            gate.add(build.id, build.owner_id, build_score(build, ctx.settings.aging_seconds))
            fixed.append(build.id)
    for build_id in over:
        gate.release(build_id)
    return fixed
