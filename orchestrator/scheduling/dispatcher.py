"""The dispatch round every worker runs between jobs: recover builds whose worker was lost,
then admit the next waiting build if the limits and the host's resources allow.

Admission happens just in time, by a worker that is free to take the job at once, so the RQ
queue never holds more than the builds about to start and priorities decide the order.
"""

from __future__ import annotations

import logging
import time

from redis import Redis
from sqlmodel import col, select

from orchestrator.adapters.database import session_scope
from orchestrator.adapters.runtime import Runtime
from orchestrator.config import Settings
from orchestrator.coordination.admission import Admission, Limits
from orchestrator.core import defaults
from orchestrator.core.exceptions import OrchestratorError
from orchestrator.core.ports import port_pool
from orchestrator.core.resources import Snapshot, host_usage, shortage, split_containers
from orchestrator.core.status import Status
from orchestrator.scheduling.queue import build_score, get_queue, start_job
from orchestrator.state.models import BuildJob
from orchestrator.state.recorder import BuildRecorder

log = logging.getLogger(__name__)


def limits(settings: Settings) -> Limits:
    return Limits(settings.max_building, settings.max_building_per_user)


def snapshot(runtime: Runtime, active: set[str]) -> Snapshot:
    """The host now: previews counted by what they use, builds in progress by their limit."""
    memory_percent, cpu_percent = host_usage()
    previews, building = split_containers(runtime.list_ours(), active)
    used = sum(runtime.memory_used(container_id) or 0 for container_id in previews)
    return Snapshot(memory_percent, cpu_percent, used / 2**20, building)


def lost_builds(redis: Redis) -> list[BuildJob]:
    """Builds marked building whose heartbeat stopped (their worker died), changing nothing."""
    cutoff = time.time() - defaults.HEARTBEAT_TTL
    with session_scope() as session:
        building = session.exec(select(BuildJob).where(BuildJob.status == Status.BUILDING)).all()
    return [
        build
        for build in building
        if build.started_at is not None
        and build.started_at.timestamp() <= cutoff
        and not redis.exists(defaults.HEARTBEAT_KEY + build.id)
    ]


def recover_lost(settings: Settings, runtime: Runtime, redis: Redis) -> dict[str, str]:
    """Builds whose worker was lost: each is re-queued (container removed, port freed) or,
    after max_attempts, failed with "worker lost". Returns build id → what was done."""
    recovered = {}
    gate = Admission(redis)
    for build in lost_builds(redis):
        if not redis.set(f"{defaults.REDIS_PREFIX}recovering:{build.id}", "1", nx=True, ex=60):
            continue  # another worker is recovering it
        recorder = BuildRecorder(build.id, settings.log_lines_kept)
        try:  # its build container and its dependency-cache filler, whichever it had
            for container_id in runtime.containers_of(build.id):
                runtime.remove(container_id)
        except OrchestratorError as exc:
            log.warning("could not remove the containers of lost build %s: %s", build.id, exc)
        if build.allocated_port is not None:
            port_pool(settings).release(build.allocated_port, build.id)
        gate.release(build.id)  # its slot is free again, whatever happens next
        cancelled_by = redis.get(defaults.CANCEL_KEY + build.id)
        if cancelled_by is not None:
            recorder.cancelled(
                cancelled_by.decode() if isinstance(cancelled_by, bytes) else str(cancelled_by)
            )
            recovered[build.id] = "cancelled"
        elif build.attempts < settings.max_attempts:
            recorder.requeued(
                f"The worker running this build was lost: queued again (attempt {build.attempts + 1} "
                f"of {settings.max_attempts})"
            )
            gate.add(build.id, build.owner_id, build_score(build))
            recovered[build.id] = "queued again"
        else:
            recorder.fail(None, f"worker lost {build.attempts} times: giving up")
            recovered[build.id] = "failed"
    return recovered


def _explain_waits(settings: Settings, gate: Admission, reason: str | None) -> None:
    """Write on each waiting build (the first 50) why it is not starting."""
    waiting = gate.waiting(50)
    if not waiting:
        return
    active = gate.active()
    owners = gate.owners(waiting)
    per_user: dict[str, int] = {}
    for owner in active.values():
        per_user[owner] = per_user.get(owner, 0) + 1
    with session_scope() as session:
        builds = session.exec(select(BuildJob).where(col(BuildJob.id).in_(waiting))).all()
        for build in builds:
            why = reason
            if why is None and len(active) >= settings.max_building:
                why = f"waiting for a free build slot ({len(active)} of {settings.max_building} in use)"
            if why is None and per_user.get(owners.get(build.id, ""), 0) >= settings.max_building_per_user:
                why = (
                    f"waiting: {settings.max_building_per_user} of this user's builds are in progress "
                    "(the per-user limit)"
                )
            if why is not None and build.wait_reason != why:
                build.wait_reason = why
                session.add(build)


def dispatch_round(settings: Settings, runtime: Runtime, redis: Redis) -> str | None:
    """Recover lost builds, then admit at most one build and hand it to RQ. Returns its id."""
    recover_lost(settings, runtime, redis)
    if get_queue().count:  # admitted builds not yet taken: a free worker takes those first
        return None
    gate = Admission(redis)
    if not gate.waiting(1):
        return None
    reason = shortage(snapshot(runtime, set(gate.active())), settings)
    build_id = None if reason else gate.admit(limits(settings))
    if build_id is None:
        _explain_waits(settings, gate, reason)
        return None
    with session_scope() as session:
        build = session.get(BuildJob, build_id)
        if build is None or build.status != Status.QUEUED:
            gate.release(build_id)  # cancelled while it waited
            return None
        build.attempts += 1
        build.wait_reason = None
        session.add(build)
        attempt = build.attempts
    start_job(build_id, attempt)
    return build_id
