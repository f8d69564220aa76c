"""A build worker: RQ executes the builds; between jobs the worker runs a dispatch round
(recover lost builds, admit the next one) and the periodic tasks (gc; reconciling the stores
with the database), and otherwise sleeps until woken (docs/architecture.md says why the round
runs beside RQ's own loop). Redis going away does not end it: it waits and carries on."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

from redis.exceptions import RedisError
from rq import Worker
from rq.serializers import JSONSerializer

from orchestrator.context import Context
from orchestrator.core import defaults
from orchestrator.scheduling.dispatcher import dispatch_round
from orchestrator.scheduling.queue import Jobs, OnlyBuilds, RQJobs, get_queue, reconcile
from orchestrator.service.gc import collect
from orchestrator.state.hosts import Beater, stop_lost_hosts, this_host

log = logging.getLogger(__name__)

RECONCILE_INTERVAL = 30
"""Seconds between two reconciliations of the stores with the database while the service runs
(a slot, a waiting-set entry or an RQ job lost to a kill or an outage is back within this)."""

OUTAGE_BACKOFF = (1, 2, 4, 8, 10)
"""Seconds a worker waits before trying Redis again, one after the other (then the last)."""


HOST_CHECK_INTERVAL = 10
"""Seconds between two looks for lost hosts (one worker of any host looks)."""


def scheduled_gc(ctx: Context) -> None:
    """Run gc on this host when its interval has passed: whichever of the host's workers gets
    there first runs it, the others skip. Each host collects its own containers."""
    interval = ctx.settings.gc_interval
    if interval <= 0 or not ctx.stores.signals.due(f"gc@{ctx.host_id}", interval):
        return
    report = collect(ctx, scheduled=True)
    for action in report.actions:
        log.info("gc: %s %s (%s)", action.action, action.target, action.reason)


def scheduled_reconcile(ctx: Context, jobs: Jobs) -> list[str]:
    """Reconcile the stores with the database every RECONCILE_INTERVAL (one worker does)."""
    if not ctx.stores.signals.due(f"reconcile@{ctx.host_id}", RECONCILE_INTERVAL):
        return []
    fixed = reconcile(ctx, jobs)
    if fixed:
        log.warning("reconcile: put back %d builds the stores had lost: %s", len(fixed), ", ".join(fixed))
    return fixed


def scheduled_host_check(ctx: Context) -> dict[str, list[str]]:
    """Stop the previews of hosts whose workers are all gone (one worker looks every
    HOST_CHECK_INTERVAL)."""
    if not ctx.stores.signals.due("hosts", HOST_CHECK_INTERVAL):
        return {}
    return stop_lost_hosts(ctx)


def between_jobs(ctx: Context, jobs: Jobs, beat: Callable[[], None] = lambda: None) -> None:
    """What a worker does while no job runs: each task on its own, a failure logged (Redis
    being away goes up to the loop, which waits for it). ``beat``: the host's beat."""
    tasks = (
        ("host_beat", beat),
        ("dispatch_round", lambda: dispatch_round(ctx, jobs)),
        ("scheduled_reconcile", lambda: scheduled_reconcile(ctx, jobs)),
        ("scheduled_gc", lambda: scheduled_gc(ctx)),
        ("scheduled_host_check", lambda: scheduled_host_check(ctx)),
    )
    for name, task in tasks:
        try:
            task()
        except RedisError:
            raise
        except Exception:  # noqa: BLE001 - a failed task is logged and tried again next round
            log.exception("%s failed", name)


class _Stop:
    requested = False

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)


class BuildWorker(Worker):
    """RQ's worker, telling this loop when RQ's own handler received a stop signal."""

    stop = _Stop()

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop.requested = True
        super().request_stop(signum, frame)


def run(ctx: Context) -> None:
    """Work until SIGTERM/SIGINT: a build in progress is finished first (RQ's warm shutdown)."""
    jobs, queue = RQJobs(ctx), get_queue(ctx)
    worker = BuildWorker([queue], connection=ctx.redis, serializer=JSONSerializer, job_class=OnlyBuilds)
    stop = worker.stop
    stop.install()
    outage = 0
    ctx.worker_name = ctx.worker_name or worker.name
    ctx.host_record = ctx.host_record or this_host(ctx)
    beat = Beater(ctx, ctx.host_record)
    while not stop.requested:
        try:
            ctx.stores.signals.worker_seen(ctx.worker_name)
            between_jobs(ctx, jobs, beat)
            if stop.requested:
                break
            if queue.count:
                # One job, then back here. RQ has its own signal handlers meanwhile: a SIGTERM
                # lets the build finish (warm shutdown), then this loop ends.
                worker.work(burst=True, max_jobs=1, logging_level="INFO")
                stop.install()
            else:
                ctx.stores.signals.wait_for_wake(defaults.DISPATCH_INTERVAL)
            if outage:
                log.warning("Redis is back after %d attempts", outage)
            outage = 0
        except RedisError as exc:
            delay = OUTAGE_BACKOFF[min(outage, len(OUTAGE_BACKOFF) - 1)]
            outage += 1
            log.warning("Redis cannot be reached (%s): trying again in %d s", exc, delay)
            stop.install()
            time.sleep(delay)
