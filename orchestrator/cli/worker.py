"""A build worker: RQ executes the builds; between jobs the worker runs a dispatch round
(recover lost builds, admit the next one) and otherwise sleeps until woken."""

from __future__ import annotations

import logging
import signal
from types import FrameType

from redis import Redis
from rq import Worker
from rq.serializers import JSONSerializer

from orchestrator.adapters.redis_client import get_redis
from orchestrator.adapters.runtime import Runtime
from orchestrator.config import Settings
from orchestrator.core import defaults
from orchestrator.scheduling.dispatcher import dispatch_round
from orchestrator.scheduling.queue import get_queue
from orchestrator.service.gc import collect

log = logging.getLogger(__name__)


def scheduled_gc(settings: Settings, runtime: Runtime, redis: Redis) -> None:
    """Run gc when this installation's interval has passed: whichever worker gets there first
    runs it (a Redis key set NX expiring after the interval), the others skip."""
    if settings.gc_interval <= 0:
        return
    if not redis.set(defaults.GC_SCHEDULE_KEY, "1", nx=True, ex=settings.gc_interval):
        return
    report = collect(settings, runtime=runtime, scheduled=True)
    for action in report.actions:
        log.info("gc: %s %s (%s)", action.action, action.target, action.reason)


class _Stop:
    requested = False

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)


def run(settings: Settings) -> None:
    """Work until SIGTERM/SIGINT: a build in progress is finished first (RQ's warm shutdown)."""
    redis, queue, runtime = get_redis(), get_queue(), Runtime(settings)
    worker = Worker([queue], connection=redis, serializer=JSONSerializer)
    stop = _Stop()
    stop.install()
    while not stop.requested:
        try:
            dispatch_round(settings, runtime, redis)
        except Exception:  # noqa: BLE001 - a failed round is logged and tried again
            log.exception("dispatch round failed")
        try:
            scheduled_gc(settings, runtime, redis)
        except Exception:  # noqa: BLE001 - the next interval tries again
            log.exception("scheduled gc failed")
        if stop.requested:
            break
        if queue.count:
            # One job, then back here. RQ has its own signal handlers meanwhile: a SIGTERM
            # lets the build finish (warm shutdown), then this loop ends.
            worker.work(burst=True, max_jobs=1, logging_level="INFO")
            if worker._stop_requested or worker._shutdown_requested_date:
                break
            stop.install()
        else:
            redis.blpop([defaults.WAKE_KEY], timeout=defaults.DISPATCH_INTERVAL)
