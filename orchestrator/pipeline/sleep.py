"""Previews that sleep and wake: a preview nobody used for a while has its container stopped
(no memory, no CPU; its files, port and URLs kept), and the first request through the gateway
starts it again.

Sleeping and waking one preview never overlap: each holds the preview's wake claim (a Redis
key with an expiry, Signals.due) while it works, so that two gateways waking it at once start
it once, and gc never stops a preview that is waking.
"""

from __future__ import annotations

import contextlib
import time

from orchestrator.adapters.host import memory_percent
from orchestrator.context import Context
from orchestrator.core.exceptions import HostBusy, OrchestratorError
from orchestrator.core.plan import ProjectType, serve_command
from orchestrator.core.resources import wake_shortage
from orchestrator.core.status import Status
from orchestrator.pipeline.preview import revive
from orchestrator.state.models import BuildJob, utcnow
from orchestrator.state.recorder import BuildRecorder, claim

CLAIM_SECONDS = 120
"""Longest a sleep or a wake may hold a preview (then the claim expires by itself)."""

WAKE_POLL = 0.02
"""Seconds between two looks at a waking preview."""


def _claim(build_id: str) -> str:
    return f"wake:{build_id}"


def _read(ctx: Context, build_id: str) -> BuildJob | None:
    with ctx.session() as session:
        return session.get(BuildJob, build_id)


def put_to_sleep(ctx: Context, build_id: str, why: str) -> bool:
    """Stop an awake preview's container and record it ``sleeping``; False when it is not awake
    (or it is waking or going to sleep already)."""
    task = _claim(build_id)
    if not ctx.stores.signals.due(task, CLAIM_SECONDS):
        return False
    try:
        build = _read(ctx, build_id)
        if build is None or build.status != Status.RUNNING or not build.container_id:
            return False
        if not claim(ctx, build_id, Status.RUNNING, Status.SLEEPING, slept_at=utcnow()):
            return False
        ctx.runtime_for(build.host_id).stop(build.container_id)
        BuildRecorder(ctx, build_id).announce(
            f"Preview asleep: {why}. Its files, port and URLs are kept; the next request wakes it."
        )
        return True
    finally:
        ctx.stores.signals.done(task)


def wake(ctx: Context, build_id: str, wait: float = 60.0) -> str | None:
    """Start a sleeping preview again with the build's CPU boost, and record it ``running`` once
    its server answers. None once it is awake (also when another process woke it); else why it
    could not be woken. HostBusy when the host is short of memory (then try again later). The
    caller drops the CPU to the preview's share (settle)."""
    task, deadline = _claim(build_id), time.monotonic() + wait
    while not ctx.stores.signals.due(task, CLAIM_SECONDS):  # another waker (or a sleep) has it
        build = _read(ctx, build_id)
        if build is not None and build.status == Status.RUNNING:
            return None
        if time.monotonic() > deadline:
            return f"it did not wake within {wait:.0f} s"
        time.sleep(WAKE_POLL)
    try:
        build = _read(ctx, build_id)
        if build is None:
            return "no such build"
        if build.status == Status.RUNNING:
            return None
        if build.status != Status.SLEEPING or not build.container_id or build.allocated_port is None:
            return f"its preview is {build.status}"
        # (another host's memory is not measured from here: its own builds' admission guards it)
        short = wake_shortage(memory_percent(), ctx.settings) if ctx.is_here(build.host_id) else None
        if short is not None:
            raise HostBusy(short)
        serve = serve_command(ProjectType(build.project_type), build.allocated_port)
        started = time.monotonic()
        with contextlib.suppress(OrchestratorError):  # the boost only makes it quicker
            ctx.runtime_for(build.host_id).set_cpus(build.container_id, ctx.settings.build_nano_cpus)
        boosted = time.monotonic()
        wait = max(1.0, deadline - time.monotonic())
        why = revive(ctx, build, serve, wait=wait, poll=WAKE_POLL, settle=False)
        if why is not None:
            return why
        answered = time.monotonic()
        if not claim(ctx, build_id, Status.SLEEPING, Status.RUNNING, woke_at=utcnow()):
            return "it was stopped while it woke"
        took = time.monotonic() - started
        BuildRecorder(ctx, build_id).announce(
            f"Preview awake again in {took:.2f} s (its container and server {answered - boosted:.2f} s)"
        )
        return None
    finally:
        ctx.stores.signals.done(task)


def settle(ctx: Context, build_id: str) -> None:
    """Back to the preview's CPU share after a wake's boost."""
    build = _read(ctx, build_id)
    if build is not None and build.status == Status.RUNNING and build.container_id:
        with contextlib.suppress(OrchestratorError):  # gone meanwhile (or its host)
            ctx.runtime_for(build.host_id).set_cpus(build.container_id, ctx.settings.nano_cpus)
