"""Garbage collection: make Docker, the port pool and the database agree again.

Removing what is already gone is success, so two collections at once do no harm.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from orchestrator import defaults
from orchestrator.build import port_pool
from orchestrator.config import Settings
from orchestrator.db import session_scope
from orchestrator.models import BuildJob, utcnow
from orchestrator.runtime import Runtime
from orchestrator.states import Status, can_transition

LIVE = (Status.BUILDING.value, Status.RUNNING.value)


@dataclass
class Action:
    action: str
    target: str
    reason: str


def collect(settings: Settings, dry_run: bool = False, runtime: Runtime | None = None) -> list[Action]:
    runtime = runtime or Runtime(settings)
    actions: list[Action] = []
    containers = runtime.list_ours()
    present = {c["Id"] for c in containers}
    with session_scope() as session:
        live = {b.id: b for b in session.exec(select(BuildJob).where(col(BuildJob.status).in_(LIVE))).all()}

        for container in containers:
            build_id = (container.get("Labels") or {}).get(f"{defaults.LABEL_NAMESPACE}.build-id", "")
            build = live.get(build_id)
            if (
                build is not None
                and build.status == Status.BUILDING
                and build.container_id in (None, container["Id"])
            ):
                continue  # being built right now
            if (
                build is not None
                and build.container_id == container["Id"]
                and container.get("State") == "running"
            ):
                continue
            reason = "no live build owns it" if build is None else f"container {container.get('State')}"
            actions.append(Action("remove container", container["Id"][:12], reason))
            if not dry_run:
                runtime.remove(container["Id"])
                present.discard(container["Id"])

        for build in live.values():
            if build.container_id is None or build.container_id in present:
                continue
            new = Status.STOPPED if build.status == Status.RUNNING else Status.FAILED
            actions.append(Action(f"mark {new.value}", build.id, "its container is gone"))
            if not dry_run and can_transition(build.status, new):
                build.status = new.value
                if new is Status.STOPPED:
                    build.stopped_at, build.stop_reason = utcnow(), "gc"
                else:
                    build.error = build.error or "the build container disappeared"
                    build.completed_at = utcnow()
                build.allocated_port = None
                session.add(build)

    pool = port_pool(settings)
    still_live = {
        b.id
        for b in live.values()
        if b.status in LIVE and (b.container_id is None or b.container_id in present)
    }
    for port, owner in sorted(pool.store.held().items()):
        if owner not in still_live:
            actions.append(Action("free port", str(port), f"held by build {owner[:12]}, which is not live"))
            if not dry_run:
                pool.release(port, owner)
    return actions
