"""The process's context and what is wired from it: the port pool, the entry points' context,
the scheduled gc, the host snapshot (over the in-memory context)."""

from __future__ import annotations

from orchestrator import context as process
from orchestrator.adapters.runtime import HOLD, ContainerSpec
from orchestrator.cli.worker import scheduled_gc
from orchestrator.context import Context
from orchestrator.scheduling.dispatcher import snapshot
from orchestrator.scheduling.queue import MemoryJobs


def test_the_port_pool_hands_out_the_settings_range(ctx: Context) -> None:
    pool = ctx.port_pool()
    assert pool.ports == [41000, 41001, 41002, 41003, 41004]
    assert pool.allocate("a") == 41000 and pool.allocate("b") == 41001
    assert ctx.stores.ports.owner(41001) == "b"


def test_the_memory_context_migrates_without_a_lock(ctx: Context) -> None:
    with ctx.migration_lock():
        ctx.check_redis()  # nothing to check in memory
    assert ctx.redis is None


def test_entry_points_read_back_the_installed_context(ctx: Context) -> None:
    saved = process._process
    try:
        assert process.install(ctx) is ctx and process.current() is ctx
    finally:
        process._process = saved


def test_memory_jobs_are_alive_until_taken() -> None:
    jobs = MemoryJobs()
    jobs.start("b", 1)
    assert jobs.pending() == 1 and jobs.alive("b", 1) and not jobs.alive("b", 2)
    jobs.taken = 1
    assert jobs.pending() == 0 and not jobs.alive("b", 1)


def test_the_scheduled_gc_runs_once_per_interval(ctx: Context) -> None:
    ctx.settings.gc_interval = 60
    ctx.stores.ports.claim(41000, "nobody")
    scheduled_gc(ctx)
    assert ctx.stores.ports.owner(41000) is None
    ctx.stores.ports.claim(41001, "nobody")
    scheduled_gc(ctx)  # within the interval: another worker's turn is over, nothing runs
    assert ctx.stores.ports.owner(41001) == "nobody"


def test_no_scheduled_gc_when_its_interval_is_zero(ctx: Context) -> None:
    ctx.settings.gc_interval = 0
    ctx.stores.ports.claim(41000, "nobody")
    scheduled_gc(ctx)
    assert ctx.stores.ports.owner(41000) == "nobody"


def test_the_snapshot_counts_previews_by_use_and_builds_by_their_containers(ctx: Context) -> None:
    preview = ctx.runtime.create_build_container(ContainerSpec("live", "w", None, {}, {}, command=HOLD))
    building = ctx.runtime.create_build_container(ContainerSpec("busy", "w", None, {}, {}, command=HOLD))
    ctx.runtime.start(preview)
    ctx.runtime.start(building)
    seen = snapshot(ctx, {"busy"}, usage=(40.0, 20.0))
    assert (seen.host_memory_percent, seen.cpu_percent, seen.building) == (40.0, 20.0, 1)
    assert seen.previews_memory_mb == 50.0  # the memory runtime's container uses 50 MB


def test_the_stores_are_reconciled_with_the_database_once_per_interval(ctx: Context, alice) -> None:
    import io

    from orchestrator.cli.worker import scheduled_reconcile
    from orchestrator.service.submissions import create_website
    from tests.unit.conftest import site_zip

    with ctx.session() as session:
        _, build = create_website(ctx, session, alice, [("site.zip", io.BytesIO(site_zip()))])
    ctx.stores.admission.withdraw(build.id)  # as if Redis had lost it
    jobs = MemoryJobs()
    assert scheduled_reconcile(ctx, jobs) == [build.id]
    ctx.stores.admission.withdraw(build.id)
    assert scheduled_reconcile(ctx, jobs) == []  # not this interval again
    assert ctx.stores.admission.waiting() == []


def test_between_jobs_an_outage_reaches_the_loop_and_other_faults_are_logged(ctx: Context, caplog) -> None:
    import pytest
    from redis.exceptions import ConnectionError as RedisDown

    from orchestrator.cli.worker import between_jobs

    class Broken:
        def __getattr__(self, name: str):
            raise ValueError("a bug in the round")

    ctx.runtime = Broken()  # type: ignore[assignment]
    ctx.stores.admission.add("b", 1, 0.0)  # something to admit: the round asks the runtime
    between_jobs(ctx, MemoryJobs())  # logged, not raised
    assert "dispatch_round failed" in caplog.text

    class Down:
        def __getattr__(self, name: str):
            def fail(*_: object, **__: object) -> None:
                raise RedisDown("Connection refused")

            return fail

    ctx.stores.signals = Down()  # type: ignore[assignment]
    with pytest.raises(RedisDown):
        between_jobs(ctx, MemoryJobs())
