"""A build worker: RQ executes the builds; between jobs the worker runs a dispatch round
(recover lost builds, admit the next one) and otherwise sleeps until woken."""

from __future__ import annotations

import logging
import signal
from types import FrameType

from rq import Worker
from rq.serializers import JSONSerializer

from orchestrator import defaults
from orchestrator.config import Settings
from orchestrator.dispatcher import dispatch_round
from orchestrator.jobs import get_queue
from orchestrator.redis_conn import get_redis
from orchestrator.runtime import Runtime

log = logging.getLogger(__name__)


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
