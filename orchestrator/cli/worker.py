"""A build worker: RQ executes the builds; between jobs the worker runs a dispatch round
(recover lost builds, admit the next one) and the scheduled gc, and otherwise sleeps until
woken (docs/architecture.md says why the round runs beside RQ's own loop)."""

from __future__ import annotations

import logging
import signal
from types import FrameType

from rq import Worker
from rq.serializers import JSONSerializer

from orchestrator.context import Context
from orchestrator.core import defaults
from orchestrator.scheduling.dispatcher import dispatch_round
from orchestrator.scheduling.queue import RQJobs, get_queue
from orchestrator.service.gc import collect

log = logging.getLogger(__name__)


def scheduled_gc(ctx: Context) -> None:
    """Run gc when this installation's interval has passed: whichever worker gets there first
    runs it, the others skip."""
    interval = ctx.settings.gc_interval
    if interval <= 0 or not ctx.stores.signals.gc_due(interval):
        return
    report = collect(ctx, scheduled=True)
    for action in report.actions:
        log.info("gc: %s %s (%s)", action.action, action.target, action.reason)


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
    worker = BuildWorker([queue], connection=ctx.redis, serializer=JSONSerializer)
    stop = worker.stop
    stop.install()
    while not stop.requested:
        try:
            dispatch_round(ctx, jobs)
        except Exception:  # noqa: BLE001 - a failed round is logged and tried again
            log.exception("dispatch round failed")
        try:
            scheduled_gc(ctx)
        except Exception:  # noqa: BLE001 - the next interval tries again
            log.exception("scheduled gc failed")
        if stop.requested:
            break
        if queue.count:
            # One job, then back here. RQ has its own signal handlers meanwhile: a SIGTERM
            # lets the build finish (warm shutdown), then this loop ends.
            worker.work(burst=True, max_jobs=1, logging_level="INFO")
            if stop.requested:
                break
            stop.install()
        else:
            ctx.stores.signals.wait_for_wake(defaults.DISPATCH_INTERVAL)
