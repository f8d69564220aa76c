"""Garbage collection: stop previews nobody uses, and make Docker, the port pool, the files and
the database agree again.

One run, in order:
1. builds whose worker was lost are queued again (dispatcher.recover_lost);
2. awake previews go to sleep when idle (or awake too long), or are stopped when their website
   was deleted or their container exited or went; sleeping ones are removed past their
   lifetime (previews.stop_preview: a conditional status move, so concurrent runs stop each
   preview once);
3. containers with our labels that no live build owns are removed;
4. ports held by no live build are freed;
5. workspaces of builds not in progress, and uploads nobody can use any more, are deleted;
6. the dependency cache is brought within its disk budget (least recently used first).

Each host's gc looks at its own engine, its own ports and its own previews only (a build's
``host_id``); previews of a host whose workers are all gone are stopped by the workers that
remain (orchestrator.state.hosts.stop_lost_hosts). Removing what is already gone is success,
so two runs at once (two workers, a worker and an operator) do no harm. Whatever is about to
be taken is read again just before: a build that starts meanwhile keeps its port, workspace
and container.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from sqlmodel import col, select

from orchestrator.adapters.runtime import SERVE_LABEL
from orchestrator.adapters.uploads import PART_SUFFIX
from orchestrator.context import Context
from orchestrator.core import defaults
from orchestrator.core.disk_quota import DiskQuota
from orchestrator.core.expiry import Policy, StopReason, explain, reap_reason, sleep_reason, sleeper_reason
from orchestrator.core.ports import owner_build
from orchestrator.core.status import ACTIVE, PREVIEW, Status
from orchestrator.pipeline.preview import revive
from orchestrator.pipeline.sleep import put_to_sleep
from orchestrator.scheduling.dispatcher import lost_builds, recover_lost
from orchestrator.service.gc_report import Report, Sleeper, _status
from orchestrator.service.gc_storage import StorageCollection
from orchestrator.state.models import BuildJob, Website
from orchestrator.state.previews import asleep_since, live_since, observe_activity, stop_preview
from orchestrator.state.recorder import BuildRecorder

LIVE = (Status.BUILDING.value, Status.RUNNING.value, Status.SLEEPING.value)
_BUILD_LABEL = f"{defaults.LABEL_NAMESPACE}.build-id"

REVIVE_INTERVAL = 600
"""Seconds between two restarts of one preview whose container keeps stopping (a crash loop)."""


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class Collector(StorageCollection):
    def run(self) -> Report:
        started = time.monotonic()
        self.lost_builds()
        containers = self.runtime.list_ours()  # before the records: a newer container's build is live
        with self.ctx.session() as session:
            found = session.exec(select(BuildJob).where(col(BuildJob.status).in_(LIVE))).all()
            live = {b.id: b for b in found}
            deleted = set(session.exec(select(Website.id).where(col(Website.deleted_at).is_not(None))).all())
        self.previews(live, {c["Id"]: c for c in containers}, deleted)
        self.containers(containers, live)
        self.ports()
        self.files()
        self.dependency_cache()
        self.step_images()
        self.package_store()
        self.report.seconds = time.monotonic() - started
        return self.report

    # -- 1. lost builds ------------------------------------------------------------

    def lost_builds(self) -> None:
        if self.dry_run:
            for build in lost_builds(self.ctx):
                self.add("recover build", build.id, "its worker stopped sending heartbeats")
            return
        for build_id, outcome in recover_lost(self.ctx).items():
            self.add("recover build", build_id, f"its worker was lost: {outcome}")

    # -- 2. previews ---------------------------------------------------------------

    def previews(self, live: dict[str, BuildJob], containers: dict[str, dict], deleted: set[str]) -> None:
        now = time.time()
        running = [b for b in live.values() if b.status == Status.RUNNING]
        newest: dict[str, BuildJob] = {}
        for build in sorted(running, key=lambda b: b.created_at):
            newest[build.website_id] = build
        for build in running:
            if not self.ctx.is_here(build.host_id):
                continue  # another host's: its own gc looks after it
            self.report.previews_checked += 1
            container = containers.get(build.container_id or "")
            successor = newest[build.website_id]
            # (a successor that went live seconds ago: its worker is stopping this one after a drain)
            draining = now - live_since(successor) <= self.settings.replace_drain_seconds + 10
            if successor is not build and not draining:
                self.stop(build, StopReason.REPLACED, f"build {successor.id} of this website is live")
            elif container is None:
                self.stop(build, StopReason.GC, "its container is gone")
            elif container.get("State") != "running":
                self.restart_or_stop(build, container)
            elif (wrote := self.past_disk_quota(build)) is not None:
                self.stop(build, StopReason.DISK_QUOTA, wrote)
            else:
                activity = observe_activity(self.ctx, build, now, save=not self.dry_run)
                age, idle = now - live_since(build), now - activity.active_at
                reason = reap_reason(self.policy, age, idle, build.website_id in deleted)
                if reason is not None:
                    self.stop(build, reason, explain(reason, self.policy, age, idle))
                elif (why := sleep_reason(self.policy, age, idle)) is not None:
                    self.sleep(build, why)
        sleeping = [b for b in live.values() if b.status == Status.SLEEPING and self.ctx.is_here(b.host_id)]
        for build in sleeping:
            self.sleeper(build, containers.get(build.container_id or ""), newest, deleted, now)

    def sleep(self, build: BuildJob, why: str) -> None:
        memory = self.runtime.memory_used(build.container_id) if build.container_id else None
        if self.dry_run or put_to_sleep(self.ctx, build.id, why):
            self.add("sleep preview", build.id, why, memory_bytes=memory)

    def sleeper(
        self,
        build: BuildJob,
        container: dict | None,
        newest: dict[str, BuildJob],
        deleted: set[str],
        now: float,
    ) -> None:
        """A sleeping preview: kept (and listed with its disk) until its lifetime is over."""
        self.report.previews_checked += 1
        asleep = now - asleep_since(build)
        successor = newest.get(build.website_id)
        reason = sleeper_reason(self.policy, asleep, build.website_id in deleted)
        if successor is not None and successor.created_at > build.created_at:
            self.stop(build, StopReason.REPLACED, f"build {successor.id} of this website is live")
        elif container is None:
            self.stop(build, StopReason.GC, "its container is gone")
        elif reason is not None:
            self.stop(build, reason, explain(reason, self.policy, 0, asleep))
        else:
            disk = self.runtime.disk_used(build.container_id) if build.container_id else None
            left = self.policy.sleep_lifetime - asleep
            self.report.sleeping.append(Sleeper(build.id, build.allocated_port, disk, asleep, left))

    def past_disk_quota(self, build: BuildJob) -> str | None:
        """Why a live preview must stop for what it wrote, None while within its quota."""
        quota = DiskQuota(self.settings.disk_quota_mb << 20)
        if quota.limit <= 0 or not build.container_id:
            return None
        used = self.runtime.disk_used(build.container_id)
        why = quota.observe([used or 0], 0)
        return None if why is None else f"it {why}"

    def restart_or_stop(self, build: BuildJob, container: dict) -> None:
        """A live preview whose container stopped under it (a host reboot; its server crashed):
        started again, at most once every REVIVE_INTERVAL, else stopped, saying so."""
        state = container.get("State")
        serve = (container.get("Labels") or {}).get(SERVE_LABEL)
        why: str | None
        if self.dry_run:
            self.add("restart preview", build.id, f"its container is {state}", port=build.allocated_port)
            return
        if serve is None:
            why = "it was made before containers kept their server's command"
        elif not self.ctx.stores.signals.due(f"revive:{build.id}", REVIVE_INTERVAL):
            why = f"it was started again less than {REVIVE_INTERVAL // 60} minutes ago"
        elif (why := revive(self.ctx, build, serve)) is None:
            detail = f"its container was {state}, stopped outside the orchestrator (a host reboot, say)"
            container["State"] = "running"  # as it is now: the containers' pass keeps it
            BuildRecorder(self.ctx, build.id).announce(f"Preview started again: {detail}")
            self.add("restart preview", build.id, detail, port=build.allocated_port)
            return
        detail = f"its container stopped outside the orchestrator ({state}) and did not start again: {why}"
        self.stop(build, StopReason.ENGINE_RESTART, detail)

    def stop(self, build: BuildJob, reason: StopReason, detail: str) -> None:
        why = f"{reason.value}: {detail}"
        self.stopping.add(build.id)
        if self.dry_run:
            memory = self.runtime.memory_used(build.container_id) if build.container_id else None
            self.add("stop preview", build.id, why, memory_bytes=memory, port=build.allocated_port)
            return
        stopped = stop_preview(self.ctx, build.id, reason, detail)
        if stopped is None:
            return  # stopped meanwhile by someone else
        self.add(
            "stop preview",
            build.id,
            why,
            memory_bytes=stopped.memory_bytes,
            disk_bytes=stopped.disk_bytes,
            port=stopped.port,
        )

    # -- 3. containers -------------------------------------------------------------

    def containers(self, containers: list[dict], live: dict[str, BuildJob]) -> None:
        # A container belongs to the live build that names it (a preview handed over to an
        # identical build keeps its first build's labels), or, while a build has not recorded
        # its container yet, to the building build of its label (its build or cache filler).
        owners = {b.container_id: b for b in live.values() if b.container_id}
        for container in containers:
            build_id = (container.get("Labels") or {}).get(_BUILD_LABEL, "")
            owner = owners.get(container["Id"])
            if owner is not None and owner.id in self.stopping:
                continue  # goes (or went) with its preview
            if owner is not None and (
                owner.status in (Status.BUILDING, Status.SLEEPING) or container.get("State") == "running"
            ):
                continue  # being built, a live preview, or a sleeping one (stopped, kept)
            build = live.get(build_id)
            if build is not None and build.status == Status.BUILDING:
                continue  # its build is running (the build container or its cache filler)
            reason = (
                "no live build owns it"
                if build is None
                else f"its build is {build.status} and the container {container.get('State')}"
            )
            running = container.get("State") == "running"
            memory = self.runtime.memory_used(container["Id"]) if running else None
            disk = self.runtime.disk_used(container["Id"])
            if not self.dry_run:
                self.runtime.remove(container["Id"])
            self.add("remove container", container["Id"][:12], reason, memory_bytes=memory, disk_bytes=disk)

    # -- 4. ports ------------------------------------------------------------------

    def ports(self) -> None:
        pool = self.ctx.port_pool()
        for port, owner in sorted(pool.store.held().items()):
            if _status(self.ctx, owner_build(owner)) in LIVE:
                continue  # read now: a build that started since the run began keeps its port
            if self.dry_run or pool.release(port, owner):
                self.add(
                    "free port",
                    str(port),
                    f"held by build {owner_build(owner)[:12]}, which is not live",
                    port=port,
                )
        if not self.dry_run:  # a port nobody holds has nobody's visits to count
            self.ctx.visits.keep(set(pool.store.held()))

    # -- 5. files ------------------------------------------------------------------

    def files(self) -> None:
        workspaces = self.settings.workspaces_dir
        for path in sorted(workspaces.iterdir()) if workspaces.is_dir() else []:
            if _status(self.ctx, path.name) == Status.BUILDING:
                continue
            self.remove_path(path, "workspace", "its build is not in progress")
        uploads = self.settings.uploads_dir
        for path in sorted(uploads.glob("*.zip")) if uploads.is_dir() else []:
            why = self.unused_upload(path)
            if why:
                self.remove_path(path, "upload", why)
        for path in sorted(uploads.glob(f"*{PART_SUFFIX}")) if uploads.is_dir() else []:
            if time.time() - path.stat().st_mtime > 3600:
                self.remove_path(path, "upload", "never finished: the API stopped while receiving it")

    def unused_upload(self, path: Path) -> str | None:
        """Why an upload is no longer needed, or None to keep it. Kept: builds still to run, the
        live previews', and each website's newest build's (what a rebuild starts from)."""
        build_id = path.stem
        with self.ctx.session() as session:
            build = session.get(BuildJob, build_id)
            if build is None:
                old = time.time() - path.stat().st_mtime > 3600
                return "no build was recorded for it" if old else None  # else: being uploaded
            website = session.get(Website, build.website_id)
            if website is not None and website.deleted_at is not None:
                return "its website was deleted"
            if Status(build.status) in ACTIVE or Status(build.status) in PREVIEW:
                return None
            if website is not None and website.build_job_id == build.id:
                return None
            return "a newer build of its website replaced it"

    def remove_path(self, path: Path, what: str, why: str) -> None:
        size = _size(path)
        if not self.dry_run:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self.add(f"delete {what}", path.name, why, disk_bytes=size)


def collect(
    ctx: Context,
    dry_run: bool = False,
    idle_ttl: float | None = None,
    max_age: float | None = None,
    scheduled: bool = False,
    sleep_after: float | None = None,
) -> Report:
    """One gc run; ``idle_ttl``, ``max_age`` and ``sleep_after`` override the settings for this run.
    ``scheduled``: the service's own run (measures the package store every ten minutes only)."""
    settings = ctx.settings
    policy = Policy(
        idle_ttl=settings.idle_ttl if idle_ttl is None else idle_ttl,
        max_age=settings.max_age if max_age is None else max_age,
        sleep_after=(settings.sleep_after or None) if sleep_after is None else sleep_after,
        sleep_lifetime=settings.sleep_lifetime,
    )
    return Collector(ctx, policy, dry_run, scheduled).run()
