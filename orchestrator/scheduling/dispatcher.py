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
from orchestrator.core.exceptions import OrchestratorError, Superseded
from orchestrator.core.hosts import Placement, place
from orchestrator.core.ports import attempt_owner, owner_build
from orchestrator.core.priority import build_score
from orchestrator.core.resources import Snapshot, free_ports, shortage, split_containers
from orchestrator.core.status import Status
from orchestrator.pipeline.containers import remove_containers_of
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
    holders = {owner_build(owner) for owner in held.values()}
    ports_left = free_ports(ctx.settings, len(held), len(admitted_here(ctx, active - holders)))
    folders = [ctx.settings.data_dir, *([Path(root)] if (root := ctx.runtime.data_root()) else [])]
    return Snapshot(memory_percent, cpu_percent, used / 2**20, building, ports_left, disk_free(folders))


def admitted_here(ctx: Context, build_ids: set[str]) -> list[str]:
    """Those of ``build_ids`` admitted to this host (their port is to come from its pool)."""
    if not build_ids:
        return []
    with ctx.session() as session:
        ids = col(BuildJob.id).in_(list(build_ids))
        here = select(BuildJob.id).where(ids, BuildJob.host_id == ctx.host_id)
        return list(session.exec(here).all())


def lost_builds(ctx: Context) -> list[BuildJob]:
    """Builds marked building whose attempt's heartbeat stopped (its worker died or stalled),
    changing nothing. The lease is judged by Redis' clock alone (the heartbeat key's expiry):
    an attempt beats before it marks the build building, so no grace period by any host's own
    clock is needed. Nothing is lost while Redis has been up for less than HEARTBEAT_TTL: a
    restarted Redis forgot every heartbeat, and the live workers have not all beaten again yet."""
    signals = ctx.stores.signals
    if signals.kept_for() < keys.HEARTBEAT_TTL:
        return []
    with ctx.session() as session:
        building = session.exec(select(BuildJob).where(BuildJob.status == Status.BUILDING)).all()
    return [build for build in building if not signals.alive(build.id, build.attempts)]


def recover_lost(ctx: Context) -> dict[str, str]:
    """Builds whose attempt was lost: each is re-queued or, after max_attempts, failed with
    "worker lost"; cancelled if someone asked. The move is fenced on the attempt that was seen
    lost, and made before its containers are removed and its port freed: should that attempt
    still be running, it finds itself superseded at its next write and stops. Returns build id
    → what was done."""
    settings, signals = ctx.settings, ctx.stores.signals
    recovered = {}
    gate = ctx.stores.admission
    for build in lost_builds(ctx):
        if not signals.claim_recovery(build.id, build.attempts):
            continue  # another worker is recovering it
        # Its slot first: once the build is queued again, nothing must take the slot it still
        # holds for an RQ job to re-send (orchestrator.scheduling.queue.reconcile).
        gate.release(build.id)
        recorder = BuildRecorder(ctx, build.id, build.attempts)
        cancelled_by = signals.cancel_requested(build.id)
        try:
            if cancelled_by is not None:
                recorder.cancelled(cancelled_by)
                recovered[build.id] = "cancelled"
            elif build.attempts < settings.max_attempts:
                recorder.requeued(
                    f"The worker running this build was lost: queued again (attempt {build.attempts + 1} "
                    f"of {settings.max_attempts})"
                )
                recovered[build.id] = "queued again"
            else:
                recorder.fail(None, f"worker lost {build.attempts} times: giving up", infrastructure=True)
                recovered[build.id] = "failed"
        except Superseded:
            continue  # the attempt ended meanwhile, by itself
        try:  # its build container and its dependency-cache filler, whichever it had, on its host
            remove_containers_of(ctx, build.id, build.host_id)
        except OrchestratorError as exc:  # its host's gc removes them (no live build owns them)
            log.warning("could not remove the containers of lost build %s: %s", build.id, exc)
        if build.allocated_port is not None:
            owner = attempt_owner(build.id, build.attempts)
            ctx.port_pool(build.host_id).release(build.allocated_port, owner)
        if recovered[build.id] == "queued again":
            gate.add(build.id, build.owner_id, build_score(build, settings.aging_seconds))
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
    ctx.stores.hosts.report_room(ctx.host_id, reason)
    build_id = None if reason else gate.admit(limits(ctx))
    if build_id is None:
        _explain_waits(ctx, gate, reason)
        return None
    placement = choose_host(ctx, build_id, jobs)
    attempt = next_attempt(ctx, build_id, placement)
    if attempt is None:
        gate.release(build_id)  # cancelled while it waited
        return None
    jobs.start(build_id, attempt, placement.host)
    if placement.host != ctx.host_id:
        ctx.stores.signals.wake()  # that host's idle workers
    return build_id


def choose_host(ctx: Context, build_id: str, jobs: Jobs) -> Placement:
    """Where an admitted build runs (core.hosts.place): here, or on the host of its website's
    previous build when that host lives, has room and no build waiting for its workers (a busy
    host's queue does not grow while this one is free)."""
    with ctx.session() as session:
        build = session.get(BuildJob, build_id)
        previous = None
        if build is not None:
            previous = session.exec(
                select(BuildJob.host_id)
                .where(
                    BuildJob.website_id == build.website_id,
                    BuildJob.id != build.id,
                    col(BuildJob.host_id).is_not(None),
                )
                .order_by(col(BuildJob.created_at).desc())
            ).first()
    hosts = ctx.stores.hosts
    room = hosts.room(previous) if previous else (False, None)
    if previous and previous != ctx.host_id and room == (True, None) and jobs.pending(previous):
        room = (True, "its workers have a build still to start")
    lost_on = build.host_id if build is not None and build.attempts > 0 else None
    return place(ctx.host_id, previous, room, set(hosts.live()) | {ctx.host_id}, lost_on)


def next_attempt(ctx: Context, build_id: str, placement: Placement | None = None) -> int | None:
    """An admitted build's next attempt: its number, counted in the database (the attempt's
    fencing token: orchestrator.pipeline.job), and the host it goes to, with why (the build's
    log says it). None when the build is not queued any more."""
    placement = placement or Placement(ctx.host_id, "its worker was free and the host had room")
    with ctx.session() as session:
        build = session.get(BuildJob, build_id)
        if build is None or build.status != Status.QUEUED:
            return None
        build.attempts += 1
        build.wait_reason = None
        build.host_id = placement.host
        build.placement = placement.why
        session.add(build)
        return build.attempts
