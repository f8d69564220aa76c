"""gc, stopping previews and the dependency cache over the in-memory context."""

from __future__ import annotations

import time

import pytest

from orchestrator.adapters.memory_runtime import MemoryRuntime
from orchestrator.adapters.runtime import HOLD, KIND_DEPS, ContainerSpec
from orchestrator.adapters.visits import MemoryVisits
from orchestrator.context import Context
from orchestrator.core import defaults
from orchestrator.core.exceptions import Conflict
from orchestrator.core.expiry import Activity, StopReason
from orchestrator.core.ports import attempt_owner
from orchestrator.core.status import Status
from orchestrator.pipeline.cache import DependencyCache, image_ref
from orchestrator.service.gc import collect
from orchestrator.service.purge import purge
from orchestrator.state.models import ApiToken, BuildJob, Website, utcnow
from orchestrator.state.previews import mark_live, retire_replaced, stop_preview
from tests.unit.conftest import record

NS = defaults.LABEL_NAMESPACE


def memory(ctx: Context) -> MemoryRuntime:
    assert isinstance(ctx.runtime, MemoryRuntime)
    return ctx.runtime


def live_preview(
    ctx: Context, owner: ApiToken, website_id: str | None = None, port: int = 41000, image: str | None = None
) -> BuildJob:
    """A build whose preview is live: its container running, its port held, its activity now."""
    with ctx.session() as session:
        if website_id is None:
            site = Website(owner_id=owner.id or 0, name="site", type="static")
            session.add(site)
            session.flush()
            website_id = site.id
        build = BuildJob(website_id=website_id, owner_id=owner.id or 0, project_type="static")
        container = ctx.runtime.create_build_container(
            ContainerSpec(build.id, website_id, port, {}, {}, image=image, command=HOLD)
        )
        ctx.runtime.start(container)
        build.status, build.container_id, build.allocated_port = Status.RUNNING, container, port
        build.attempts = 1
        build.preview_url, build.completed_at = f"http://localhost:{port}/", utcnow()
        session.add(build)
    ctx.stores.ports.claim(port, attempt_owner(build.id, 1))
    ctx.stores.activity.save(build.id, Activity(0, time.time()))
    return build


def test_stopping_a_preview_removes_its_container_and_frees_its_port(ctx: Context, alice: ApiToken) -> None:
    build = live_preview(ctx, alice)
    stopped = stop_preview(ctx, build.id, StopReason.IDLE, "no traffic")
    assert stopped is not None and stopped.port == 41000
    done = record(ctx, build.id)
    assert done.status == Status.STOPPED and done.stop_reason == "idle" and done.allocated_port is None
    assert memory(ctx).list_ours() == [] and ctx.stores.ports.owner(41000) is None
    assert ctx.stores.activity.load(build.id) is None


def test_a_preview_is_stopped_once(ctx: Context, alice: ApiToken) -> None:
    build = live_preview(ctx, alice)
    assert stop_preview(ctx, build.id, StopReason.IDLE, "x") is not None
    assert stop_preview(ctx, build.id, StopReason.IDLE, "x") is None


def test_only_the_newest_preview_of_a_website_stays(ctx: Context, alice: ApiToken) -> None:
    old = live_preview(ctx, alice, port=41000)
    new = live_preview(ctx, alice, website_id=old.website_id, port=41001)
    assert retire_replaced(ctx, old.website_id) == [old.id]
    assert record(ctx, old.id).stop_reason == "replaced" and record(ctx, new.id).status == Status.RUNNING


def test_gc_stops_an_idle_preview(ctx: Context, alice: ApiToken) -> None:
    build = live_preview(ctx, alice)
    ctx.stores.activity.save(build.id, Activity(0, time.time() - 3600))
    report = collect(ctx, idle_ttl=60)
    assert [(a.action, a.target) for a in report.actions] == [("stop preview", build.id)]
    assert record(ctx, build.id).stop_reason == "idle"


def quiet_for_an_hour(ctx: Context, owner: ApiToken) -> BuildJob:
    """A live preview whose visits the host counts, last visited an hour ago."""
    build = live_preview(ctx, owner)
    assert build.container_id
    mark_live(ctx, build.id, build.container_id, 41000)
    ctx.stores.activity.save(build.id, Activity(0, time.time() - 3600))
    return build


def test_a_preview_that_requests_itself_is_still_reaped_as_idle(ctx: Context, alice: ApiToken) -> None:
    build = quiet_for_an_hour(ctx, alice)
    assert build.container_id
    memory(ctx).containers[build.container_id].traffic += 500  # its own requests, inside it
    report = collect(ctx, idle_ttl=60)
    assert [(a.action, a.target) for a in report.actions] == [("stop preview", build.id)]
    assert record(ctx, build.id).stop_reason == "idle"


def test_a_visit_from_outside_keeps_a_preview_alive(ctx: Context, alice: ApiToken) -> None:
    build = quiet_for_an_hour(ctx, alice)
    assert isinstance(ctx.visits, MemoryVisits)
    ctx.visits.visit(41000)
    assert collect(ctx, idle_ttl=60).actions == []
    assert record(ctx, build.id).status == Status.RUNNING


def test_gc_stops_counting_visits_to_ports_nobody_holds(ctx: Context, alice: ApiToken) -> None:
    build = live_preview(ctx, alice)
    assert build.container_id
    ctx.visits.watch(41000)
    ctx.visits.watch(41999)  # a preview stopped since
    collect(ctx)
    assert ctx.visits.count(41000) is not None and ctx.visits.count(41999) is None


def test_gc_keeps_a_preview_in_use(ctx: Context, alice: ApiToken) -> None:
    build = live_preview(ctx, alice)
    assert collect(ctx, idle_ttl=60).actions == []
    assert record(ctx, build.id).status == Status.RUNNING


def test_gc_stops_an_expired_preview_when_previews_do_not_sleep(ctx: Context, alice: ApiToken) -> None:
    ctx.settings.sleep_after = 0
    build = live_preview(ctx, alice)
    report = collect(ctx, max_age=0)
    assert record(ctx, build.id).stop_reason == "expired" and report.actions[0].port == 41000


def test_gc_stops_a_preview_that_wrote_past_its_disk_quota(ctx: Context, alice: ApiToken) -> None:
    ctx.settings.disk_quota_mb = 1
    build = live_preview(ctx, alice)
    assert build.container_id
    assert collect(ctx).actions == []  # within its quota
    memory(ctx).containers[build.container_id].written = 2 << 20
    report = collect(ctx)
    assert [(a.action, a.reason) for a in report.actions] == [
        ("stop preview", "disk-quota: it wrote more than 1 MB (a build's disk quota)")
    ]
    assert record(ctx, build.id).stop_reason == "disk-quota" and memory(ctx).list_ours() == []


def test_a_dry_run_changes_nothing(ctx: Context, alice: ApiToken) -> None:
    build = live_preview(ctx, alice)
    report = collect(ctx, dry_run=True, max_age=0)
    assert [a.action for a in report.actions] == ["sleep preview"]
    report = collect(ctx, dry_run=True, idle_ttl=0)
    assert [a.action for a in report.actions] == ["stop preview"]
    assert record(ctx, build.id).status == Status.RUNNING and memory(ctx).list_ours() != []


def test_gc_removes_a_container_no_live_build_owns(ctx: Context) -> None:
    orphan = ctx.runtime.create_build_container(ContainerSpec("no-such-build", "no-such-site", None, {}, {}))
    report = collect(ctx)
    assert ("remove container", orphan[:12]) in [(a.action, a.target) for a in report.actions]
    assert ctx.runtime.state(orphan) is None


def test_gc_frees_a_port_no_live_build_holds(ctx: Context) -> None:
    ctx.stores.ports.claim(41003, "no-such-build")
    report = collect(ctx)
    assert ("free port", "41003") in [(a.action, a.target) for a in report.actions]
    assert ctx.stores.ports.owner(41003) is None


def test_gc_stops_a_preview_whose_container_is_gone(ctx: Context, alice: ApiToken) -> None:
    build = live_preview(ctx, alice)
    assert build.container_id
    ctx.runtime.remove(build.container_id)
    collect(ctx)
    assert record(ctx, build.id).status == Status.STOPPED


def test_gc_stops_a_preview_whose_container_stopped_and_cannot_start_again_saying_why(
    ctx: Context, alice: ApiToken
) -> None:
    from orchestrator.adapters.memory_scripts import Process, Script

    build = live_preview(ctx, alice)  # made without its server's command (no label to start it)
    assert build.container_id is not None
    memory(ctx).containers[build.container_id].process = Process(Script(exit_code=137), time.monotonic())
    report = collect(ctx)
    done = record(ctx, build.id)
    assert (done.status, done.stop_reason) == (Status.STOPPED, StopReason.ENGINE_RESTART)
    [action] = [a for a in report.actions if a.action == "stop preview"]
    assert "its container stopped outside the orchestrator (exited) and did not start again" in action.reason


def test_gc_deletes_the_workspace_of_a_build_not_in_progress(ctx: Context) -> None:
    workspace = ctx.settings.workspaces_dir / "gone-build"
    workspace.mkdir(parents=True)
    (workspace / "index.html").write_text("x")
    report = collect(ctx)
    assert "delete workspace" in [a.action for a in report.actions] and not workspace.exists()


def test_gc_reports_a_summary(ctx: Context) -> None:
    ctx.stores.ports.claim(41002, "nobody")
    summary = collect(ctx).as_dict()
    assert summary["freed"] == {"memoryBytes": 0, "diskBytes": 0, "ports": [41002]}


# -- the dependency cache ----------------------------------------------------------------


def cache_entry(ctx: Context, key: str, size_mb: int, used: float) -> str:
    base_size = int((ctx.runtime.image(ctx.settings.node_image) or {})["Size"])
    labels = {f"{NS}.kind": KIND_DEPS, f"{NS}.instance": ctx.settings.instance_id, f"{NS}.deps-key": key}
    image = memory(ctx).add_image(image_ref(ctx.settings, key), labels, size=base_size + size_mb * 2**20)
    if used:
        ctx.stores.cache.touch(key)
        memory_index = ctx.stores.cache
        memory_index._used[key] = used  # type: ignore[attr-defined]
    return image


def test_a_cache_hit_marks_the_entry_used(ctx: Context) -> None:
    cache_entry(ctx, "k1", 10, 0)
    cache = DependencyCache(ctx)
    assert cache.lookup("k1") == image_ref(ctx.settings, "k1")
    assert ctx.stores.cache.last_used("k1") is not None
    assert cache.lookup("missing") is None


def test_gc_evicts_the_least_recently_used_entries_beyond_the_budget(ctx: Context) -> None:
    cache_entry(ctx, "old", 6, 1000.0)
    cache_entry(ctx, "new", 6, 2000.0)
    ctx.settings.deps_cache_mb = 10
    report = collect(ctx)
    evicted = [a.target for a in report.actions if a.action == "evict dependencies"]
    assert evicted == ["old"]
    assert ctx.runtime.image(image_ref(ctx.settings, "old")) is None
    assert ctx.runtime.image(image_ref(ctx.settings, "new")) is not None


def test_an_entry_a_live_preview_runs_from_is_not_evicted(ctx: Context, alice: ApiToken) -> None:
    image = cache_entry(ctx, "busy", 6, 1000.0)
    live_preview(ctx, alice, image=image)
    ctx.settings.deps_cache_mb = 0
    collect(ctx)
    assert ctx.runtime.image(image) is not None


@pytest.mark.parametrize("scheduled", [True, False])
def test_only_an_operators_run_sizes_the_package_store(ctx: Context, scheduled: bool) -> None:
    from orchestrator.pipeline.fill import store_name

    name = store_name(ctx.settings.instance_id)
    memory(ctx).volumes[name] = 6 * 2**30
    report = collect(ctx, scheduled=scheduled)
    emptied = [a for a in report.actions if a.action == "empty package store"]
    assert bool(emptied) is not scheduled


def test_gc_removes_an_upload_never_finished_once_it_is_old(ctx: Context) -> None:
    import os

    uploads = ctx.settings.uploads_dir
    uploads.mkdir(parents=True)
    stale, fresh = uploads / "a.zip.part", uploads / "b.zip.part"
    stale.write_bytes(b"PK")
    fresh.write_bytes(b"PK")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    report = collect(ctx)
    assert [(a.action, a.target) for a in report.actions] == [("delete upload", "a.zip.part")]
    assert not stale.exists() and fresh.exists()


def test_purge_takes_the_installation_off_its_host(ctx: Context, alice: ApiToken) -> None:
    preview = live_preview(ctx, alice)
    with ctx.session() as session:
        row = session.get(BuildJob, preview.id)
        assert row is not None
        row.host_id = ctx.host_id
        session.add(row)
        building = BuildJob(website_id=preview.website_id, owner_id=alice.id or 0, project_type="static")
        building.status, building.host_id = Status.BUILDING, ctx.host_id
        session.add(building)
    runtime = memory(ctx)
    ours = {f"{NS}.instance": ctx.settings.instance_id, f"{NS}.kind": KIND_DEPS}
    image = runtime.add_image("website-orchestrator/deps:x", ours)
    theirs = runtime.add_image("website-orchestrator/deps:y", {**ours, f"{NS}.instance": "another"})
    store = runtime.ensure_volume(f"{defaults.NPM_STORE_VOLUME}-{ctx.settings.instance_id}")

    with pytest.raises(Conflict, match=f"1 builds are in progress on host {ctx.host_id}.*{building.id}"):
        purge(ctx)
    assert record(ctx, preview.id).status == Status.RUNNING  # nothing was touched

    with ctx.session() as session:
        row = session.get(BuildJob, building.id)
        assert row is not None
        row.status = Status.FAILED
        session.add(row)
    done = purge(ctx)
    assert [a.action for a in done] == ["stop preview", "remove image", "remove volume"]
    assert record(ctx, preview.id).stop_reason == StopReason.PURGED
    assert runtime.list_ours() == [] and ctx.stores.ports.owner(41000) is None
    assert runtime.image(image) is None and runtime.image(theirs) is not None
    assert store not in runtime.volumes
