"""Previews: how recently anyone used them, and stopping them.

A preview is a build in status ``running`` (awake) or ``sleeping`` and its container. Stopping
one is a conditional move to stopped (orchestrator.state.recorder.claim): whoever wins removes
the container and frees the port, so two stoppers at once (two gc runs, a gc and a DELETE)
stop it once. Sleep and wake are orchestrator.pipeline.sleep.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlmodel import col, select

from orchestrator.adapters.runtime import Runtime
from orchestrator.context import Context
from orchestrator.core.exceptions import OrchestratorError, RuntimeUnavailable
from orchestrator.core.expiry import Activity, StopReason, observe
from orchestrator.core.ports import attempt_owner
from orchestrator.core.status import PREVIEW, Status
from orchestrator.state.models import BuildJob, as_utc, utcnow
from orchestrator.state.recorder import BuildRecorder, claim

log = logging.getLogger(__name__)


# -- activity ----------------------------------------------------------------------


def traffic(
    ctx: Context, container_id: str | None, port: int | None, host_id: str | None = None
) -> int | None:
    """The preview's traffic counter: what reached its port from outside its container (the
    host's count, which the preview cannot move by requesting itself); where the host counts
    nothing (no iptables), what its network namespace received. None for a preview on another
    host (whose own workers count it; the gateway's counts still say when it was used)."""
    if not ctx.is_here(host_id):
        return None
    counted = ctx.visits.count(port) if port is not None else None
    if counted is not None:
        return counted
    return ctx.runtime.traffic(container_id) if container_id else None


def mark_live(
    ctx: Context,
    build_id: str,
    container_id: str,
    port: int | None,
    settle: bool = True,
    host_id: str | None = None,
) -> None:
    """A preview just went live: that is activity, and the counter to compare with later. The
    counter is read once the readiness probe's last segments have arrived (two equal reads), so
    that the probe does not count as someone's visit; not when it was woken by a visit
    (``settle`` False: a wake is waited on)."""
    if port is not None and ctx.is_here(host_id):
        ctx.visits.watch(port)  # (another host's workers count their own ports' visits)
    counter = traffic(ctx, container_id, port, host_id)
    for _ in range(10 if settle and counter is not None else 0):
        time.sleep(0.1)
        again = traffic(ctx, container_id, port, host_id)
        if again == counter:
            break
        counter = again
    ctx.stores.activity.save(build_id, Activity(counter, time.time()))


def observe_activity(ctx: Context, build: BuildJob, now: float, save: bool = True) -> Activity:
    """Read the preview's traffic counter and the gateway's last request to it, and return
    when it was last used."""
    previous = ctx.stores.activity.load(build.id)
    counter = traffic(ctx, build.container_id, build.allocated_port, build.host_id)
    seen = ctx.stores.traffic.get(build.id)
    current = observe(previous, counter, now, seen.last_request if seen else 0.0)
    if save and current != previous:
        ctx.stores.activity.save(build.id, current)
    return current


def live_since(build: BuildJob) -> float:
    """Since when the preview has been awake (its last wake, else going live)."""
    moment = build.woke_at or build.completed_at or build.started_at or build.created_at
    return as_utc(moment).timestamp()


def asleep_since(build: BuildJob) -> float:
    moment = build.slept_at or build.updated_at
    return as_utc(moment).timestamp()


# -- stopping ----------------------------------------------------------------------


@dataclass(frozen=True)
class Stopped:
    build_id: str
    port: int | None
    memory_bytes: int | None
    disk_bytes: int | None


def stop_preview(ctx: Context, build_id: str, reason: StopReason, detail: str) -> Stopped | None:
    """Stop a preview (awake or asleep) for ``reason``; None when it was not one (or someone
    stopped it first)."""
    with ctx.session() as session:
        build = session.get(BuildJob, build_id)
    if build is None or build.status not in PREVIEW:
        return None
    container, port = build.container_id, build.allocated_port
    runtime: Runtime | None = None
    memory = disk = None
    try:
        runtime = ctx.runtime_for(build.host_id)
        if container:
            memory = runtime.memory_used(container) if build.status == Status.RUNNING else None
            disk = runtime.disk_used(container)
    except RuntimeUnavailable as exc:
        runtime = None  # its host is lost: its gc removes the container, should it come back
        log.warning("stopping preview %s without removing its container: %s", build_id, exc)
    if not claim(
        ctx,
        build_id,
        Status(build.status),
        Status.STOPPED,
        stopped_at=utcnow(),
        stop_reason=reason.value,
        allocated_port=None,
    ):
        return None
    # From here this process alone owns the stop. Should it die midway, gc finds the container
    # without a live build and the port without a live owner, and frees both.
    if container and runtime is not None:
        try:
            runtime.remove(container)
        except RuntimeUnavailable as exc:  # its host's gc removes it (no live build owns it)
            log.warning("preview %s stopped, its container not removed: %s", build_id, exc)
    if port is not None:
        ctx.port_pool(build.host_id).release(port, attempt_owner(build_id, build.attempts))
    ctx.stores.activity.forget(build_id)
    ctx.stores.traffic.forget(build_id)
    BuildRecorder(ctx, build_id).announce(f"Preview stopped ({reason.value}): {detail}")
    return Stopped(build_id, port, memory, disk)


def retire_replaced(ctx: Context, website_id: str) -> list[str]:
    """Once a build of the website is live, stop the website's other live previews: only the
    newest build's preview stays. Called after the new preview answered, so the website is
    never without one. Returns the builds stopped."""
    with ctx.session() as session:
        live = session.exec(
            select(BuildJob)
            .where(BuildJob.website_id == website_id, col(BuildJob.status).in_(PREVIEW))
            .order_by(col(BuildJob.created_at).desc())
        ).all()
    if len(live) < 2:
        return []
    newest, older = live[0], live[1:]
    time.sleep(ctx.settings.replace_drain_seconds)  # requests sent to the old address just before the switch
    stopped = []
    for build in older:
        try:
            if stop_preview(ctx, build.id, StopReason.REPLACED, f"build {newest.id} of this website is live"):
                stopped.append(build.id)
        except OrchestratorError as exc:  # gc retries: its container has no live build any more
            log.warning("could not stop the replaced preview of build %s: %s", build.id, exc)
    return stopped
