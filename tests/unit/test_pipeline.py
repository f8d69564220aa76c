"""A whole build job over the in-memory context: the scripted runtime plays the containers, a
tiny HTTP server on loopback plays the dev server's answer."""

from __future__ import annotations

import http.server
import io
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from orchestrator.adapters.egress import MemoryEgress
from orchestrator.adapters.memory_runtime import MemoryRuntime
from orchestrator.adapters.memory_scripts import Script
from orchestrator.adapters.uploads import make_folder
from orchestrator.context import Context
from orchestrator.coordination.admission import SlotLimits
from orchestrator.core.egress import Destination
from orchestrator.core.exceptions import Superseded
from orchestrator.core.ports import attempt_owner
from orchestrator.core.status import Outcome, Status
from orchestrator.pipeline.job import build
from orchestrator.scheduling.dispatcher import next_attempt, recover_lost
from orchestrator.service.submissions import create_website
from orchestrator.state import logs
from orchestrator.state.models import ApiToken, BuildJob
from orchestrator.state.recorder import BuildRecorder
from tests.unit.conftest import record, site_zip

SERVER_RUNS = {"--strictPort": Script(("VITE v7 ready in 300 ms",), exit_code=None)}
SERVER_EXITS = {"--strictPort": Script(("Error: Cannot find module 'vite'",), exit_code=1)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def port(ctx: Context) -> int:
    found = free_port()
    ctx.settings.port_range_start = ctx.settings.port_range_end = found
    return found


@pytest.fixture
def answering(port: int) -> Iterator[int]:
    """Something answering on the preview's port, as the dev server would."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield port
    server.shutdown()
    server.server_close()


def scripted(ctx: Context, scripts: dict[str, Script]) -> MemoryRuntime:
    runtime = ctx.runtime
    assert isinstance(runtime, MemoryRuntime)
    runtime.scripts.update(scripts)
    return runtime


def queued(ctx: Context, owner: ApiToken) -> str:
    with ctx.session() as session:
        _, record = create_website(ctx, session, owner, [("site.zip", io.BytesIO(site_zip()))])
    return admitted(ctx, record.id)


def admitted(ctx: Context, build_id: str, attempt: int = 1) -> str:
    """Admit the build and count its attempt, as a dispatch round does."""
    assert ctx.stores.admission.admit(SlotLimits(10, 10)) == build_id
    assert next_attempt(ctx, build_id) == attempt
    return build_id


def log_of(ctx: Context, build_id: str) -> list[str]:
    with ctx.session() as session:
        return logs.tail(session, build_id, 1000)


def test_a_static_site_goes_live_and_drops_to_the_preview_cpu(
    ctx: Context, alice: ApiToken, answering: int
) -> None:
    runtime = scripted(ctx, SERVER_RUNS)
    build_id = queued(ctx, alice)
    assert build(ctx, build_id, 1) == f"http://localhost:{answering}/"
    done = record(ctx, build_id)
    assert done.status == Status.RUNNING and done.progress == 100 and done.allocated_port == answering
    assert done.steps["install"]["status"] == Outcome.SKIPPED and done.steps["serve"]["status"] == Outcome.OK
    assert done.container_id and runtime.limits(done.container_id)["nano_cpus"] == ctx.settings.nano_cpus
    assert "VITE v7 ready in 300 ms" in log_of(ctx, build_id)
    assert ctx.stores.ports.owner(answering) == attempt_owner(build_id, 1)
    assert ctx.stores.admission.active() == {}
    assert ctx.stores.activity.load(build_id) is not None


def test_a_server_that_exits_fails_the_build_and_leaves_nothing(
    ctx: Context, alice: ApiToken, port: int
) -> None:
    runtime = scripted(ctx, SERVER_EXITS)
    build_id = queued(ctx, alice)
    assert build(ctx, build_id, 1) is None
    done = record(ctx, build_id)
    assert done.status == Status.FAILED and done.error_step == "serve"
    assert done.error == (
        "starting the development server failed: the server exited before it answered (exit code 1): "
        "Error: Cannot find module 'vite'"
    )
    assert runtime.list_ours() == [] and ctx.stores.ports.owner(port) is None
    assert not (ctx.settings.workspaces_dir / build_id).exists()


def test_an_engine_outage_defers_a_retry_instead_of_sleeping(
    ctx: Context, alice: ApiToken, port: int
) -> None:
    runtime = scripted(ctx, SERVER_RUNS)
    build_id = queued(ctx, alice)
    runtime.available = False
    assert build(ctx, build_id, 1) is None
    done = record(ctx, build_id)
    assert done.status == Status.QUEUED
    assert "the engine is down (memory runtime). Retrying in 2 s (attempt 2 of 3)" in (done.wait_reason or "")
    assert ctx.stores.admission.waiting() == [] and ctx.stores.admission.active() == {}
    assert ctx.stores.admission.due(now=10**12) == [build_id]


def test_a_cancel_asked_before_the_container_starts_cancels(ctx: Context, alice: ApiToken, port: int) -> None:
    runtime = scripted(ctx, SERVER_RUNS)
    build_id = queued(ctx, alice)
    ctx.stores.signals.request_cancel(build_id, "alice")
    assert build(ctx, build_id, 1) is None
    done = record(ctx, build_id)
    assert done.status == Status.CANCELLED and done.cancelled_by == "alice"
    assert runtime.list_ours() == [] and ctx.stores.signals.cancel_requested(build_id) is None
    assert "Cancelled by alice" in log_of(ctx, build_id)


def test_a_build_no_longer_queued_is_not_run(ctx: Context, alice: ApiToken, port: int) -> None:
    build_id = queued(ctx, alice)
    with ctx.session() as session:
        found = session.get(BuildJob, build_id)
        assert found is not None
        found.status = Status.CANCELLED
    assert build(ctx, build_id, 1) is None
    assert ctx.stores.admission.active() == {}


def test_an_identical_upload_takes_over_the_live_preview(
    ctx: Context, alice: ApiToken, answering: int
) -> None:
    scripted(ctx, SERVER_RUNS)
    first = queued(ctx, alice)
    build(ctx, first, 1)
    website_id = record(ctx, first).website_id
    with ctx.session() as session:
        from orchestrator.service.lookups import get_website

        site = get_website(session, alice, website_id)
        _, again = create_website(
            ctx, session, alice, [("site.zip", io.BytesIO(site_zip()))], website_id=site.id
        )
    assert build(ctx, admitted(ctx, again.id), 1) == f"http://localhost:{answering}/"
    assert record(ctx, first).status == Status.STOPPED and record(ctx, first).stop_reason == "replaced"
    second = record(ctx, again.id)
    assert second.reused_from == first and second.container_id == record(ctx, first).container_id
    assert ctx.stores.ports.owner(answering) == attempt_owner(again.id, 1)


# -- a Vite project whose install cannot be cached (a file: dependency): every step runs ---------

VITE_FILES = {
    "package.json": (
        '{"name": "app", "dependencies": {"local-lib": "file:./lib"},'
        ' "devDependencies": {"typescript": "5.9.0", "vite": "7.1.5"}}'
    ),
    "tsconfig.json": "{}",
    "index.html": "<script type=module src=/src/main.ts></script>",
    "src/main.ts": "export {}",
}


def vite_build(ctx: Context, owner: ApiToken) -> str:
    with ctx.session() as session:
        _, queued_build = create_website(ctx, session, owner, [("app.zip", io.BytesIO(site_zip(VITE_FILES)))])
    return admitted(ctx, queued_build.id)


def test_every_step_of_a_vite_project_runs_and_its_check_passes(
    ctx: Context, alice: ApiToken, answering: int
) -> None:
    scripted(
        ctx,
        {
            **SERVER_RUNS,
            "npm install": Script(("added 31 packages in 4s",)),
            "tsc --noEmit": Script((), seconds=0.2),
        },
    )
    build_id = vite_build(ctx, alice)
    assert build(ctx, build_id, 1) == f"http://localhost:{answering}/"
    steps = record(ctx, build_id).steps
    assert {name: steps[name]["status"] for name in ("install", "typecheck", "serve")} == {
        "install": Outcome.OK,
        "typecheck": Outcome.OK,
        "serve": Outcome.OK,
    }
    lines = log_of(ctx, build_id)
    assert "added 31 packages in 4s" in lines
    assert "Dependency cache not used: a dependency on a local folder (file:)" in lines
    assert "Type check: tsconfig.json found: running tsc --noEmit" in lines
    assert len(memory_runtime(ctx).list_ours()) == 1  # the check's container is gone, the preview stays


def memory_runtime(ctx: Context) -> MemoryRuntime:
    assert isinstance(ctx.runtime, MemoryRuntime)
    return ctx.runtime


def test_a_type_error_fails_the_build_with_its_first_diagnostic(
    ctx: Context, alice: ApiToken, answering: int
) -> None:
    scripted(
        ctx,
        {
            **SERVER_RUNS,
            "tsc --noEmit": Script(
                ("src/main.ts(1,7): error TS2322: Type 'number' is not assignable to type 'string'.",),
                exit_code=2,
            ),
        },
    )
    build_id = vite_build(ctx, alice)
    assert build(ctx, build_id, 1) is None
    done = record(ctx, build_id)
    assert done.status == Status.FAILED and done.error_step == "typecheck"
    assert done.error == (
        "type checking failed (exit code 2): src/main.ts(1,7): error TS2322: "
        "Type 'number' is not assignable to type 'string'."
    )
    assert done.steps["serve"]["status"] == Outcome.STOPPED
    assert (
        memory_runtime(ctx).list_ours() == []
        and memory_runtime(ctx).images("org.website-orchestrator.kind=step-image") == []
    )


def test_a_type_check_out_of_memory_says_so(ctx: Context, alice: ApiToken, answering: int) -> None:
    scripted(ctx, {**SERVER_RUNS, "tsc --noEmit": Script(oom=True)})
    build_id = vite_build(ctx, alice)
    assert build(ctx, build_id, 1) is None
    assert (
        record(ctx, build_id).error == "type checking failed: the type check ran out of memory (512 MB limit)"
    )


def test_an_install_that_fails_names_npms_complaint(ctx: Context, alice: ApiToken, port: int) -> None:
    scripted(
        ctx,
        {
            "npm install": Script(
                (
                    "npm error code E404",
                    "npm error 404 Not Found - GET http://127.0.0.1:4873/local-lib - Not found",
                ),
                exit_code=1,
            )
        },
    )
    build_id = vite_build(ctx, alice)
    assert build(ctx, build_id, 1) is None
    done = record(ctx, build_id)
    assert done.error_step == "install" and "404 Not Found - GET http://127.0.0.1:4873/local-lib" in (
        done.error or ""
    )


def test_an_install_over_its_timeout_fails(ctx: Context, alice: ApiToken, port: int) -> None:
    ctx.settings.install_timeout = 1
    scripted(ctx, {"npm install": Script(("resolving…",), seconds=30)})
    build_id = vite_build(ctx, alice)
    assert build(ctx, build_id, 1) is None
    assert record(ctx, build_id).error == "timed out while installing dependencies after 1 s"


def test_an_install_writing_past_the_disk_quota_fails_and_nothing_of_it_is_kept(
    ctx: Context, alice: ApiToken, port: int
) -> None:
    ctx.settings.disk_quota_mb = 1
    runtime = scripted(ctx, {"npm install": Script(("filling the disk…",), seconds=30, writes=3 << 20)})
    images_before = len(runtime.images_by_id)
    build_id = vite_build(ctx, alice)
    started = time.monotonic()
    assert build(ctx, build_id, 1) is None
    assert time.monotonic() - started < 5  # caught while it ran, not at its 30 s end
    done = record(ctx, build_id)
    assert done.status == Status.FAILED and done.error_step == "install"
    assert done.error == (
        "installing dependencies failed: wrote more than 1 MB (a build's disk quota); "
        "nothing it wrote was kept"
    )
    assert runtime.list_ours() == [] and len(runtime.images_by_id) == images_before  # nothing committed


def test_a_vulnerable_vite_pin_is_refused_before_anything_is_installed(
    ctx: Context, alice: ApiToken, port: int
) -> None:
    runtime = scripted(ctx, SERVER_RUNS)
    files = {**VITE_FILES, "package.json": '{"devDependencies": {"vite": "6.2.0"}}'}
    with ctx.session() as session:
        _, queued_build = create_website(ctx, session, alice, [("app.zip", io.BytesIO(site_zip(files)))])
    build_id = admitted(ctx, queued_build.id)
    assert build(ctx, build_id, 1) is None
    done = record(ctx, build_id)
    assert done.status == Status.FAILED and done.error_step == "install" and not done.infrastructure_fault
    assert (done.error or "").startswith("Vite 6.2.0 has published security holes in its development server")
    assert "GHSA-x574-m823-4x7w (CVE-2025-30208" in (done.error or "")
    assert "Upgrade Vite to 6.3.6 or newer" in (done.error or "")
    assert runtime.list_ours() == []  # no container was made


def test_a_registry_that_cannot_be_reached_is_retried(ctx: Context, alice: ApiToken, port: int) -> None:
    scripted(ctx, {"npm install": Script(("npm error code EAI_AGAIN",), exit_code=1)})
    build_id = vite_build(ctx, alice)
    assert build(ctx, build_id, 1) is None
    done = record(ctx, build_id)
    assert done.status == Status.QUEUED and "the package registry could not be reached" in (
        done.wait_reason or ""
    )


def test_egress_is_confined_to_the_registry_before_any_container_starts(
    ctx: Context, alice: ApiToken, answering: int
) -> None:
    scripted(ctx, SERVER_RUNS)
    build_id = queued(ctx, alice)
    assert build(ctx, build_id, 1)
    assert isinstance(ctx.egress, MemoryEgress)
    assert ctx.egress.allowed() == [Destination("127.0.0.1", 4873)]  # the settings' registry
    assert "Egress: only 127.0.0.1:4873 (the registry and proxy)" in log_of(ctx, build_id)
    assert (
        "Disk: each container may write 2 GB on top of its image, measured every 1 to 10 s and "
        "stopped past it (the engine does not enforce a size)"
    ) in log_of(ctx, build_id)


def test_a_host_that_cannot_confine_egress_builds_nothing(ctx: Context, alice: ApiToken, port: int) -> None:
    runtime = scripted(ctx, SERVER_RUNS)
    assert isinstance(ctx.egress, MemoryEgress)
    ctx.egress.broken = "iptables is not installed"
    build_id = queued(ctx, alice)
    assert build(ctx, build_id, 1) is None
    done = record(ctx, build_id)
    assert done.status == Status.QUEUED  # the host's fault: retried, perhaps by another worker
    assert "cannot confine build containers to the registry: iptables is not installed" in (
        done.wait_reason or ""
    )
    assert runtime.list_ours() == [] and ctx.stores.ports.owner(port) is None


def test_an_operator_may_open_egress_and_the_log_says_so(
    ctx: Context, alice: ApiToken, answering: int
) -> None:
    scripted(ctx, SERVER_RUNS)
    assert isinstance(ctx.egress, MemoryEgress)
    ctx.egress.broken = "iptables is not installed"
    ctx.settings.open_egress = True
    build_id = queued(ctx, alice)
    assert build(ctx, build_id, 1)
    assert ctx.egress.allowed() is None
    assert any(line.startswith("Egress: open") for line in log_of(ctx, build_id))


def test_a_build_that_finds_no_free_port_is_retried_not_failed(
    ctx: Context, alice: ApiToken, port: int
) -> None:
    scripted(ctx, SERVER_RUNS)
    build_id = queued(ctx, alice)
    ctx.stores.ports.claim(port, "someone-else")  # taken between admission and the build's start
    assert build(ctx, build_id, 1) is None
    done = record(ctx, build_id)
    assert done.status == Status.QUEUED and "preview ports" in (done.wait_reason or "")
    assert ctx.stores.admission.due(now=10**12) == [build_id]


def test_a_build_that_gave_up_on_the_engine_is_marked_as_the_infrastructures(
    ctx: Context, alice: ApiToken, port: int
) -> None:
    runtime = scripted(ctx, SERVER_RUNS)
    build_id = queued(ctx, alice)
    with ctx.session() as session:
        found = session.get(BuildJob, build_id)
        assert found is not None
        found.attempts = ctx.settings.max_attempts
    runtime.available = False
    assert build(ctx, build_id, ctx.settings.max_attempts) is None
    done = record(ctx, build_id)
    assert done.status == Status.FAILED and done.infrastructure_fault
    assert "gave up after 3 attempts" in (done.error or "")


# -- fenced attempts: one declared lost while it still ran ------------------------------------


def test_an_attempt_declared_lost_while_it_ran_ends_quietly_and_leaves_its_successor_alone(
    ctx: Context, alice: ApiToken, port: int
) -> None:
    ctx.settings.serve_timeout = 2  # the stale attempt's next write: the server's timeout verdict
    runtime = scripted(ctx, SERVER_RUNS)  # a server that never answers: the build waits on it
    build_id = queued(ctx, alice)
    results: list[str | None] = []
    stale = threading.Thread(target=lambda: results.append(build(ctx, build_id, 1)))
    stale.start()
    deadline = time.monotonic() + 10
    # (watched through its events: the in-memory database's one connection is not for two threads at once)
    while time.monotonic() < deadline and not any(
        event.data.get("step") == "serve" for event in ctx.stores.events.read(build_id)
    ):
        time.sleep(0.02)
    # Its worker paused past the heartbeat's expiry: a dispatcher finds the attempt lost.
    ctx.stores.signals.stop_beating(build_id, 1)
    assert recover_lost(ctx) == {build_id: "queued again"}
    admitted(ctx, build_id, attempt=2)  # the successor is admitted; it holds a port and a folder
    successor_port = ctx.port_pool().allocate(attempt_owner(build_id, 2))
    make_folder(ctx.settings.workspaces_dir / build_id / "2")  # as its extraction does

    stale.join(15)
    assert results == [None]
    done = record(ctx, build_id)
    assert (done.status, done.attempts, done.error) == (Status.QUEUED, 2, None)
    assert not any("failed" in line.lower() for line in log_of(ctx, build_id))
    assert ctx.stores.admission.active() == {build_id: str(alice.id)}  # the successor's slot
    assert ctx.stores.ports.owner(successor_port) == attempt_owner(build_id, 2)
    assert (ctx.settings.workspaces_dir / build_id / "2").is_dir()
    assert not (ctx.settings.workspaces_dir / build_id / "1").exists()
    assert runtime.list_ours() == []  # its own container: removed by the recovery


def test_a_stale_attempts_writes_are_refused(ctx: Context, alice: ApiToken) -> None:
    build_id = queued(ctx, alice)
    stale = BuildRecorder(ctx, build_id, 1, flush_interval=3600)
    assert stale.begin() is not None
    stale.start_step("install")
    stale.log("added 1 package")
    ctx.stores.signals.stop_beating(build_id, 1)
    assert recover_lost(ctx) == {build_id: "queued again"}
    admitted(ctx, build_id, attempt=2)
    for write in (
        stale.flush,
        lambda: stale.start_step("serve"),
        lambda: stale.fail("install", "the process was killed (exit code 137)"),
        lambda: stale.running("http://localhost:1/"),
    ):
        with pytest.raises(Superseded):
            write()
    stale.log("dropped")  # after a refusal, lines are dropped rather than raised
    done = record(ctx, build_id)
    assert (done.status, done.attempts, done.error) == (Status.QUEUED, 2, None)
    assert "added 1 package" not in log_of(ctx, build_id)
    assert BuildRecorder(ctx, build_id, 1).begin() is None  # nor can the old attempt start again
    assert BuildRecorder(ctx, build_id, 2).begin() is not None


def test_redis_away_when_a_build_takes_its_port_retries_it_as_the_infrastructures(
    ctx: Context, alice: ApiToken, port: int
) -> None:
    from redis.exceptions import ConnectionError as RedisDown

    class Down:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            def fail(*_: object, **__: object) -> None:
                raise RedisDown("Connection refused")

            return fail

    runtime = scripted(ctx, SERVER_RUNS)
    build_id = queued(ctx, alice)
    ctx.stores.ports = Down()  # type: ignore[assignment]
    assert build(ctx, build_id, 1) is None
    done = record(ctx, build_id)
    assert done.status == Status.QUEUED and done.error is None
    assert "Redis cannot be reached (Connection refused). Retrying in 2 s" in (done.wait_reason or "")
    assert runtime.list_ours() == [] and ctx.stores.admission.active() == {}
