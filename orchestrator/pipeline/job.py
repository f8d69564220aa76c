"""The RQ job: ``run_build(build_id)`` builds one website and leaves its preview running.

RQ calls it with the build id only (JSON serializer: a pickled job read from Redis would be
code execution); the process's context comes from the worker that forked it. Every outcome
ends here: live, failed (the step and why), cancelled, or — for the infrastructure's faults
(the engine, the registry, a lost container) — deferred for a retry through admission again.
"""

from __future__ import annotations

import contextlib
import threading
import time

from redis.exceptions import RedisError

from orchestrator import context
from orchestrator.context import Context
from orchestrator.coordination import keys
from orchestrator.core.exceptions import (
    BuildFailed,
    NoFreePort,
    OrchestratorError,
    RegistryUnreachable,
    RuntimeUnavailable,
)
from orchestrator.core.failures import label
from orchestrator.core.priority import build_score
from orchestrator.core.status import TERMINAL
from orchestrator.pipeline.build import Build, ReusedFailure
from orchestrator.pipeline.containers import Cancelled
from orchestrator.state.models import BuildJob
from orchestrator.state.recorder import BuildRecorder


class Heartbeat:
    """Tells the dispatchers this build's worker is alive, every HEARTBEAT_SECONDS."""

    def __init__(self, ctx: Context, build_id: str) -> None:
        self.signals, self.build_id, self.worker = ctx.stores.signals, build_id, ctx.worker_name
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{build_id[:8]}", daemon=True)

    def _beat(self) -> None:
        while not self.stopped.is_set():
            with contextlib.suppress(RedisError):  # a missed beat: recovery tolerates a few
                self.signals.beat(self.build_id)
                if self.worker:  # the worker is busy with this build: it lives
                    self.signals.worker_seen(self.worker)
            self.stopped.wait(keys.HEARTBEAT_SECONDS)

    def __enter__(self) -> Heartbeat:
        self.signals.beat(self.build_id)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.signals.stop_beating(self.build_id)


def run_build(build_id: str) -> str | None:
    """RQ job: build one website and leave its preview running. Returns the preview URL."""
    ctx = context.current()
    ctx.after_fork()  # forked from the worker: never share its connections
    return build(ctx, build_id)


def build(ctx: Context, build_id: str) -> str | None:
    """Run the build ``build_id`` to its outcome with ``ctx``."""
    settings, gate = ctx.settings, ctx.stores.admission
    recorder = BuildRecorder(ctx, build_id)
    record = recorder.begin()
    if record is None:  # cancelled while it waited, or already taken by another worker
        with ctx.session() as session:
            current = session.get(BuildJob, build_id)
            if current is not None and current.status in TERMINAL:
                gate.release(build_id)
        return None
    run = Build(ctx, recorder, record)
    try:
        with Heartbeat(ctx, build_id):
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
    except (RuntimeUnavailable, RegistryUnreachable, NoFreePort) as exc:  # the machine's, not the files'
        run.clean_up()
        step = label(recorder.current_step)
        if record.attempts < settings.max_attempts:
            delay = 2**record.attempts
            recorder.requeued(
                f"{step}: {exc}. Retrying in {delay} s "
                f"(attempt {record.attempts + 1} of {settings.max_attempts})"
            )
            # Back off outside the job: the build waits for admission again once its delay is over.
            gate.defer(
                build_id, record.owner_id, build_score(record, settings.aging_seconds), time.time() + delay
            )
        else:
            recorder.fail(
                recorder.current_step,
                f"{step}: {exc} (gave up after {record.attempts} attempts)",
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
    finally:
        gate.release(build_id)
        ctx.stores.signals.clear_cancel(build_id)
    return None
