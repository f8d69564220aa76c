"""Live previews: what they cost, how recently anyone used them, and stopping them.

A preview is a build in status ``running`` and its container. Stopping one is a conditional
move running → stopped (recorder.claim): whoever wins removes the container and frees the
port, so two stoppers at once (two gc runs, a gc and a DELETE) stop it exactly once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from redis import Redis
from sqlmodel import Session, col, select

from orchestrator.adapters.database import session_scope
from orchestrator.adapters.redis_client import get_redis
from orchestrator.adapters.runtime import Runtime
from orchestrator.config import Settings
from orchestrator.core import defaults
from orchestrator.core.exceptions import OrchestratorError
from orchestrator.core.expiry import Activity, StopReason, observe
from orchestrator.core.ports import port_pool
from orchestrator.core.status import Status
from orchestrator.service.auth import is_admin
from orchestrator.state.models import ApiToken, BuildJob, Website, utcnow
from orchestrator.state.recorder import BuildRecorder, claim

log = logging.getLogger(__name__)


# -- activity ----------------------------------------------------------------------


def _load(redis: Redis, build_id: str) -> Activity | None:
    raw = redis.hget(defaults.ACTIVITY_KEY, build_id)
    if raw is None:
        return None
    data = json.loads(raw)
    return Activity(data.get("counter"), float(data["activeAt"]))


def _save(redis: Redis, build_id: str, activity: Activity) -> None:
    redis.hset(
        defaults.ACTIVITY_KEY,
        build_id,
        json.dumps({"counter": activity.counter, "activeAt": activity.active_at}),
    )


def mark_live(runtime: Runtime, build_id: str, container_id: str) -> None:
    """A preview just went live: that is activity, and the counter to compare with later. The
    counter is read once the readiness probe's last segments have arrived (two equal reads), so
    that the probe does not count as someone's visit."""
    counter = runtime.traffic(container_id)
    for _ in range(10):
        time.sleep(0.1)
        again = runtime.traffic(container_id)
        if again == counter:
            break
        counter = again
    _save(get_redis(), build_id, Activity(counter, time.time()))


def move_activity(from_build: str, to_build: str) -> None:
    """A preview handed over to another build keeps its traffic history."""
    redis = get_redis()
    raw = redis.hget(defaults.ACTIVITY_KEY, from_build)
    if raw is not None:
        redis.hset(defaults.ACTIVITY_KEY, to_build, raw)
        redis.hdel(defaults.ACTIVITY_KEY, from_build)


def observe_activity(runtime: Runtime, build: BuildJob, now: float, save: bool = True) -> Activity:
    """Read the preview's traffic counter and return when it last moved."""
    redis = get_redis()
    previous = _load(redis, build.id)
    counter = runtime.traffic(build.container_id) if build.container_id else None
    current = observe(previous, counter, now)
    if save and current != previous:
        _save(redis, build.id, current)
    return current


def live_since(build: BuildJob) -> float:
    moment = build.completed_at or build.started_at or build.created_at
    return moment.timestamp()


# -- stopping ----------------------------------------------------------------------


@dataclass(frozen=True)
class Stopped:
    build_id: str
    port: int | None
    memory_bytes: int | None
    disk_bytes: int | None


def stop_preview(
    settings: Settings, runtime: Runtime, build_id: str, reason: StopReason, detail: str
) -> Stopped | None:
    """Stop a live preview for ``reason``; None when it was not live (or someone stopped it first)."""
    with session_scope() as session:
        build = session.get(BuildJob, build_id)
    if build is None or build.status != Status.RUNNING:
        return None
    container, port = build.container_id, build.allocated_port
    memory = runtime.memory_used(container) if container else None
    disk = runtime.disk_used(container) if container else None
    if not claim(
        build_id,
        Status.RUNNING,
        Status.STOPPED,
        stopped_at=utcnow(),
        stop_reason=reason.value,
        allocated_port=None,
    ):
        return None
    # From here this process alone owns the stop. Should it die midway, gc finds the container
    # without a live build and the port without a live owner, and frees both.
    if container:
        runtime.remove(container)
    if port is not None:
        port_pool(settings).release(port, build_id)
    get_redis().hdel(defaults.ACTIVITY_KEY, build_id)
    BuildRecorder(build_id, settings.log_lines_kept).announce(f"Preview stopped ({reason.value}): {detail}")
    return Stopped(build_id, port, memory, disk)


def retire_replaced(settings: Settings, runtime: Runtime, website_id: str) -> list[str]:
    """Once a build of the website is live, stop the website's other live previews: only the
    newest build's preview stays. Called after the new preview answered, so the website is
    never without one. Returns the builds stopped."""
    with session_scope() as session:
        live = session.exec(
            select(BuildJob)
            .where(BuildJob.website_id == website_id, BuildJob.status == Status.RUNNING)
            .order_by(col(BuildJob.created_at).desc())
        ).all()
    if len(live) < 2:
        return []
    newest, older = live[0], live[1:]
    time.sleep(defaults.REPLACE_DRAIN_SECONDS)  # requests sent to the old address just before the switch
    stopped = []
    for build in older:
        try:
            if stop_preview(
                settings, runtime, build.id, StopReason.REPLACED, f"build {newest.id} of this website is live"
            ):
                stopped.append(build.id)
        except OrchestratorError as exc:  # gc retries: its container has no live build any more
            log.warning("could not stop the replaced preview of build %s: %s", build.id, exc)
    return stopped


# -- listing -----------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    build_id: str
    website_id: str
    website_name: str
    owner: str
    url: str | None
    port: int | None
    memory_bytes: int | None
    idle_seconds: float
    age_seconds: float


def live_previews(session: Session, runtime: Runtime, principal: ApiToken) -> list[Preview]:
    """The live previews the caller may see (an admin: all), newest first."""
    query = (
        select(BuildJob, Website, ApiToken)
        .join(Website, col(Website.id) == BuildJob.website_id)
        .join(ApiToken, col(ApiToken.id) == BuildJob.owner_id)
        .where(BuildJob.status == Status.RUNNING)
        .order_by(col(BuildJob.completed_at).desc())
    )
    if not is_admin(principal):
        query = query.where(BuildJob.owner_id == principal.id)
    now = time.time()
    found = []
    for build, website, owner in session.exec(query).all():
        activity = observe_activity(runtime, build, now)
        found.append(
            Preview(
                build_id=build.id,
                website_id=website.id,
                website_name=website.name,
                owner=owner.name,
                url=build.preview_url,
                port=build.allocated_port,
                memory_bytes=runtime.memory_used(build.container_id) if build.container_id else None,
                idle_seconds=round(now - activity.active_at, 1),
                age_seconds=round(now - live_since(build), 1),
            )
        )
    return found
