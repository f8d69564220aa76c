"""The dispatch round every worker runs between jobs: recover builds whose worker was lost,
then admit the next waiting build if the limits and the host's resources allow.

Admission happens just in time, by a worker that is free to take the job at once, so the RQ
queue never holds more than the builds about to start and priorities decide the order.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlmodel import col, select

from orchestrator.adapters.host import disk_free, host_usage
from orchestrator.context import Context
from orchestrator.coordination import keys
from orchestrator.coordination.admission import Admission, SlotLimits
from orchestrator.core.exceptions import OrchestratorError
from orchestrator.core.priority import build_score
from orchestrator.core.resources import Snapshot, free_ports, shortage, split_containers
from orchestrator.core.status import Status
from orchestrator.scheduling.queue import Jobs
from orchestrator.state.models import BuildJob
from orchestrator.state.recorder import BuildRecorder

log = logging.getLogger(__name__)


def limits(ctx: Context) -> SlotLimits:
    return SlotLimits(ctx.settings.max_building, ctx.settings.max_building_per_user)


def snapshot(ctx: Context, active: set[str], usage: tuple[float, float] | None = None) -> Snapshot:
    """The host now: previews counted by what they use, builds in progress by their limit, the
    preview ports left, and the disk free where builds write."""
    memory_percent, cpu_percent = usage or host_usage()
    previews, building = split_containers(ctx.runtime.list_ours(), active)
    used = sum(ctx.runtime.memory_used(container_id) or 0 for container_id in previews)
    held = ctx.stores.ports.held()
    ports_left = free_ports(ctx.settings, len(held), len(active - set(held.values())))
    folders = [ctx.settings.data_dir, *([Path(root)] if (root := ctx.runtime.data_root()) else [])]
    return Snapshot(memory_percent, cpu_percent, used / 2**20, building, ports_left, disk_free(folders))


def lost_builds(ctx: Context) -> list[BuildJob]:
    """Builds marked building whose heartbeat stopped (their worker died), changing nothing."""
    cutoff = time.time() - keys.HEARTBEAT_TTL
    with ctx.session() as session:
        building = session.exec(select(BuildJob).where(BuildJob.status == Status.BUILDING)).all()
    return [
        build
        for build in building
        if build.started_at is not None
        and build.started_at.timestamp() <= cutoff
        and not ctx.stores.signals.alive(build.id)
    ]


def recover_lost(ctx: Context) -> dict[str, str]:
    """Builds whose worker was lost: each is re-queued (container removed, port freed) or,
    after max_attempts, failed with "worker lost". Returns build id → what was done."""
    settings, runtime, signals = ctx.settings, ctx.runtime, ctx.stores.signals
    recovered = {}
    gate = ctx.stores.admission
    for build in lost_builds(ctx):
        if not signals.claim_recovery(build.id):
            continue  # another worker is recovering it
        recorder = BuildRecorder(ctx, build.id)
        try:  # its build container and its dependency-cache filler, whichever it had
            for container_id in runtime.containers_of(build.id):
                runtime.remove(container_id)
        except OrchestratorError as exc:
            log.warning("could not remove the containers of lost build %s: %s", build.id, exc)
        if build.allocated_port is not None:
            ctx.port_pool().release(build.allocated_port, build.id)
        gate.release(build.id)  # its slot is free again, whatever happens next
        cancelled_by = signals.cancel_requested(build.id)
        if cancelled_by is not None:
            recorder.cancelled(cancelled_by)
            recovered[build.id] = "cancelled"
        elif build.attempts < settings.max_attempts:
            recorder.requeued(
                f"The worker running this build was lost: queued again (attempt {build.attempts + 1} "
                f"of {settings.max_attempts})"
            )
            gate.add(build.id, build.owner_id, build_score(build, settings.aging_seconds))
            recovered[build.id] = "queued again"
        else:
            recorder.fail(None, f"worker lost {build.attempts} times: giving up", infrastructure=True)
            recovered[build.id] = "failed"
    return recovered


def _explain_waits(ctx: Context, gate: Admission, reason: str | None) -> None:
    """Write on each waiting build (the first 50) why it is not starting."""
    settings = ctx.settings
    waiting = gate.waiting(50)
    if not waiting:
        return
    active = gate.active()
    owners = gate.owners(waiting)
    per_user: dict[str, int] = {}
    for owner in active.values():
        per_user[owner] = per_user.get(owner, 0) + 1
    with ctx.session() as session:
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


def dispatch_round(ctx: Context, jobs: Jobs, usage: tuple[float, float] | None = None) -> str | None:
    """Recover lost builds, move retries whose back-off is over back to the waiting set, then
    admit at most one build and hand it to RQ. Returns its id. ``usage``: the host's memory and
    CPU use (%), measured when not given."""
    recover_lost(ctx)
    gate = ctx.stores.admission
    gate.due(time.time())
    if jobs.pending():  # admitted builds not yet taken: a free worker takes those first
        return None
    if not gate.waiting(1):
        return None
    reason = shortage(snapshot(ctx, set(gate.active()), usage), ctx.settings)
    build_id = None if reason else gate.admit(limits(ctx))
    if build_id is None:
        _explain_waits(ctx, gate, reason)
        return None
    with ctx.session() as session:
        build = session.get(BuildJob, build_id)
        if build is None or build.status != Status.QUEUED:
            gate.release(build_id)  # cancelled while it waited
            return None
        build.attempts += 1
        build.wait_reason = None
        session.add(build)
        attempt = build.attempts
    jobs.start(build_id, attempt)
    return build_id
