"""Previews that sleep and wake, over the in-memory context (a real HTTP server on loopback
stands in for the preview's dev server, which a wake waits for)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from orchestrator.context import Context
from orchestrator.core.status import Status
from orchestrator.pipeline.sleep import put_to_sleep, settle, wake
from orchestrator.service.gc import collect
from orchestrator.service.removal import delete_website
from orchestrator.state.models import ApiToken, BuildJob, utcnow
from tests.unit.conftest import record
from tests.unit.test_gc_and_previews import live_preview, memory


@pytest.fixture
def dev_server() -> Iterator[int]:
    """An HTTP server on a loopback port: what a woken preview's server answers with."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def asleep(ctx: Context, alice: ApiToken, port: int = 41000) -> BuildJob:
    build = live_preview(ctx, alice, port=port)
    assert put_to_sleep(ctx, build.id, "a test")
    return record(ctx, build.id)


def test_gc_puts_an_idle_preview_to_sleep_and_keeps_its_files_and_port(ctx: Context, alice: ApiToken) -> None:
    ctx.settings.sleep_after = 1
    build = live_preview(ctx, alice)
    assert collect(ctx).actions == []  # used just now
    ctx.stores.activity.save(build.id, ctx.stores.activity.load(build.id).__class__(0, time.time() - 5))  # type: ignore[union-attr]
    report = collect(ctx)
    assert [(a.action, a.target) for a in report.actions] == [("sleep preview", build.id)]
    slept = record(ctx, build.id)
    assert slept.status == Status.SLEEPING and slept.slept_at is not None
    assert slept.allocated_port == 41000 and slept.container_id
    state = ctx.runtime.state(slept.container_id)
    assert state is not None and not state.running  # stopped: no memory, no CPU
    again = collect(ctx)  # kept: neither the container nor the port is taken
    assert again.actions == []
    assert [(s.build_id, s.port) for s in again.sleeping] == [(build.id, 41000)]
    assert ctx.runtime.state(slept.container_id) is not None
    assert 41000 in ctx.stores.ports.held()


def test_gc_removes_a_sleeper_past_its_lifetime(ctx: Context, alice: ApiToken) -> None:
    build = asleep(ctx, alice)
    ctx.settings.sleep_lifetime = 3600
    assert collect(ctx).actions == []
    with ctx.session() as session:
        found = session.get(BuildJob, build.id)
        assert found is not None
        found.slept_at = utcnow() - timedelta(hours=2)
        session.add(found)
    ctx.settings.sleep_lifetime = 3 * 3600
    assert collect(ctx).actions == []
    ctx.settings.sleep_lifetime = 3600
    report = collect(ctx)
    assert [(a.action, a.reason) for a in report.actions] == [
        ("stop preview", "slept-out: asleep for 2 h (sleepers are kept 1 h)")
    ]
    done = record(ctx, build.id)
    assert done.status == Status.STOPPED and done.stop_reason == "slept-out" and done.allocated_port is None
    assert memory(ctx).list_ours() == [] and 41000 not in ctx.stores.ports.held()


def test_a_wake_starts_the_container_with_the_boost_and_records_it_awake(
    ctx: Context, alice: ApiToken, dev_server: int
) -> None:
    build = asleep(ctx, alice, port=dev_server)
    assert build.container_id
    assert wake(ctx, build.id, wait=10) is None
    woke = record(ctx, build.id)
    assert woke.status == Status.RUNNING and woke.woke_at is not None
    assert ctx.runtime.limits(build.container_id)["nano_cpus"] == ctx.settings.build_nano_cpus
    settle(ctx, build.id)
    assert ctx.runtime.limits(build.container_id)["nano_cpus"] == ctx.settings.nano_cpus
    assert wake(ctx, build.id) is None  # awake already: nothing to do


def test_a_wake_says_why_a_preview_cannot_wake(ctx: Context, alice: ApiToken) -> None:
    build = asleep(ctx, alice)
    assert build.container_id
    memory(ctx).remove(build.container_id)
    assert wake(ctx, build.id, wait=1) == f"no such container: {build.container_id[:12]}"
    assert record(ctx, build.id).status == Status.SLEEPING
    assert wake(ctx, "no-such-build") == "no such build"


def test_deleting_a_website_removes_its_sleeping_preview(ctx: Context, alice: ApiToken) -> None:
    build = asleep(ctx, alice)
    with ctx.session() as session:
        done = delete_website(ctx, session, alice, build.website_id)
    assert done.stopped == [build.id]
    assert record(ctx, build.id).stop_reason == "deleted" and memory(ctx).list_ours() == []


def test_a_host_short_of_memory_wakes_nothing_and_says_so(
    ctx: Context, alice: ApiToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orchestrator.pipeline.sleep as sleep
    from orchestrator.core.exceptions import HostBusy

    build = asleep(ctx, alice)
    assert build.container_id
    monkeypatch.setattr(sleep, "memory_percent", lambda: ctx.settings.max_memory_percent + 1)
    with pytest.raises(HostBusy, match=r"memory is \d+% used, and previews wake only below"):
        wake(ctx, build.id, wait=1)
    assert record(ctx, build.id).status == Status.SLEEPING
    assert memory(ctx).state(build.container_id).running is False  # not started
    assert ctx.stores.signals.due(f"wake:{build.id}", 1)  # its wake claim was given back
