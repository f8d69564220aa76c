"""The RQ job: ``run_build(build_id, attempt)`` builds one website and leaves its preview running.

RQ calls it with plain arguments (JSON serializer: a pickled job read from Redis would be code
execution); the process's context comes from the worker that forked it. Every outcome ends
here: live, failed (the step and why), cancelled, or — for the infrastructure's faults (the
engine, the registry, a lost container) — deferred for a retry through admission again.

The attempt number is the attempt's fencing token: its heartbeat, its port, its workspace and
every write it makes are its own, so an attempt declared lost while it still ran (its worker
paused) ends quietly once it finds itself superseded, touching nothing of its successor's.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from redis.exceptions import RedisError

from orchestrator import context
from orchestrator.context import Context
from orchestrator.coordination import keys
from orchestrator.core.exceptions import (
    BuildFailed,
    EgressUnenforced,
    NoFreePort,
    OrchestratorError,
    RegistryUnreachable,
    RuntimeUnavailable,
    Superseded,
)
from orchestrator.core.failures import label
from orchestrator.core.priority import build_score
from orchestrator.core.status import TERMINAL
from orchestrator.pipeline.build import Build, ReusedFailure
from orchestrator.pipeline.containers import Cancelled
from orchestrator.state.models import BuildJob
from orchestrator.state.recorder import BuildRecorder

log = logging.getLogger(__name__)


class Heartbeat:
    """Tells the dispatchers this build's worker (and its host) is alive, every HEARTBEAT_SECONDS."""

    def __init__(self, ctx: Context, build_id: str, attempt: int) -> None:
        self.signals, self.build_id, self.worker = ctx.stores.signals, build_id, ctx.worker_name
        self.attempt, self.hosts, self.host = attempt, ctx.stores.hosts, ctx.host_record
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{build_id[:8]}", daemon=True)

    def _once(self) -> None:
        self.signals.beat(self.build_id, self.attempt)
        if self.worker:  # the worker is busy with this build: it lives
            self.signals.worker_seen(self.worker)
        if self.host is not None:  # and so does its host, however long the build
            self.hosts.beat(self.host)

    def _beat(self) -> None:
        while not self.stopped.wait(keys.HEARTBEAT_SECONDS):
            with contextlib.suppress(RedisError):  # a missed beat: recovery tolerates a few
                self._once()

    def __enter__(self) -> Heartbeat:
        self._once()
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        with contextlib.suppress(RedisError):  # the key expires by itself
            self.signals.stop_beating(self.build_id, self.attempt)


def run_build(build_id: str, attempt: int) -> str | None:
    """RQ job: build one website and leave its preview running. Returns the preview URL."""
    ctx = context.current()
    ctx.after_fork()  # forked from the worker: never share its connections
    return build(ctx, build_id, attempt)


def build(ctx: Context, build_id: str, attempt: int) -> str | None:
    """Run attempt ``attempt`` of the build ``build_id`` to its outcome with ``ctx``."""
    recorder = BuildRecorder(ctx, build_id, attempt)
    # The heartbeat starts before the build is marked building: no dispatcher ever sees it
    # building without a beat, so none needs a grace period judged by its own clock.
    with Heartbeat(ctx, build_id, attempt):
        record = recorder.begin()
        if record is None:  # cancelled while it waited, or admitted again since
            with ctx.session() as session:
                current = session.get(BuildJob, build_id)
                if current is not None and current.status in TERMINAL:
                    ctx.stores.admission.release(build_id)
            return None
        run = Build(ctx, recorder, record)
        try:
            url = _outcome(ctx, run)
        except Superseded as exc:
            run.clean_up()  # its own containers, port claim and workspace: never the successor's
            log.warning("%s: it stopped, leaving the build to whoever holds it now", exc)
            return None
        except BaseException:
            _release(ctx, build_id)
            raise
        _release(ctx, build_id)
        return url


def _release(ctx: Context, build_id: str) -> None:
    """The attempt is over: its build slot is free and its cancel request answered. With Redis
    away, the workers' reconcile frees the slot of a build the database says is over."""
    try:
        ctx.stores.admission.release(build_id)
        ctx.stores.signals.clear_cancel(build_id)
    except RedisError as exc:
        log.warning("build %s is over but Redis cannot be told (%s): reconcile frees its slot", build_id, exc)


def _outcome(ctx: Context, run: Build) -> str | None:
    """Run the build and record how it ended. Raises Superseded when the attempt finds it no
    longer holds the build (then the build's slot and signals are whoever's holds it now)."""
    settings, gate, recorder, record = ctx.settings, ctx.stores.admission, run.recorder, run.record
    build_id = record.id
    try:
        return run.run()
    except Cancelled as exc:
        run.clean_up()
        recorder.cancelled(exc.by)
    except ReusedFailure as exc:
        run.clean_up()
        previous = exc.previous
        recorder.update(reused_from=previous.id)
        recorder.log(
            f"Identical files to build {previous.id}, which failed: its failure is reported again "
            "without rebuilding. Fix the files, or ask for a rebuild to try them again."
        )
        recorder.fail(previous.error_step, f"{previous.error} (from build {previous.id}, identical files)")
    except BuildFailed as exc:
        run.clean_up()
        recorder.fail(exc.step, str(exc))
    except (RuntimeUnavailable, RegistryUnreachable, EgressUnenforced, NoFreePort, RedisError) as exc:
        # the machine's fault
        run.clean_up()
        step = label(recorder.current_step)
        cause = f"Redis cannot be reached ({exc})" if isinstance(exc, RedisError) else str(exc)
        if record.attempts < settings.max_attempts:
            delay = 2**record.attempts
            recorder.requeued(
                f"{step}: {cause}. Retrying in {delay} s "
                f"(attempt {record.attempts + 1} of {settings.max_attempts})"
            )
            # Back off outside the job: the build waits for admission again once its delay is over.
            # With Redis away, the workers' reconcile puts the queued build back once it returns.
            with contextlib.suppress(RedisError):
                score = build_score(record, settings.aging_seconds)
                gate.defer(build_id, record.owner_id, score, time.time() + delay)
        else:
            recorder.fail(
                recorder.current_step,
                f"{step}: {cause} (gave up after {record.attempts} attempts)",
                infrastructure=True,
            )
    except OrchestratorError as exc:
        run.clean_up()
        recorder.fail(recorder.current_step, f"{label(recorder.current_step)}: {exc}", infrastructure=True)
    except Exception as exc:
        run.clean_up()
        message = f"{label(recorder.current_step)}: internal error: {exc!r}"
        recorder.fail(recorder.current_step, message, infrastructure=True)
        raise
    return None
