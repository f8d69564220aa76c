"""`orchestrator`: run the service, its workers and its maintenance."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Annotated

import typer
from rich.console import Console

from orchestrator.cli import remote
from orchestrator.cli.common import console, context, fail, plain, shown
from orchestrator.context import Context
from orchestrator.core.exceptions import OrchestratorError
from orchestrator.service.auth import Role, create_token

app = typer.Typer(
    help="Container-isolated build orchestrator for a website builder.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
image_app = typer.Typer(help="The Node image build containers run.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(image_app, name="image")
for command in (remote.submit, remote.push, remote.status, remote.logs):
    app.command()(command)


def _prepare(check_runtime: bool = True) -> Context:
    """This process's context, the database migrated and Redis (and Docker) checked; exits
    with the reason otherwise."""
    from orchestrator.state.schema import migrate

    ctx = context()
    try:
        ctx.check_redis()
        migrate(ctx)
        if check_runtime:
            ctx.runtime.check()
    except OrchestratorError as exc:
        fail(exc)
    return ctx


def _isolate_builds(ctx: Context) -> None:
    """The builds' network, and registry-only egress from it: a worker that cannot enforce
    that exits saying why (unless the operator opened egress)."""
    from orchestrator.adapters.docker_runtime import DockerRuntime
    from orchestrator.adapters.host import reserve_ports
    from orchestrator.adapters.network import registry_access
    from orchestrator.pipeline.egress import confine_egress

    runtime = ctx.runtime
    assert isinstance(runtime, DockerRuntime)
    try:
        runtime.ensure_network()
        console.print(f"Egress: {shown(confine_egress(ctx, registry_access(ctx.settings)))}")
    except OrchestratorError as exc:
        fail(exc)
    if not runtime.on_this_host:
        return  # the previews' ports are on the engine's host: its operator reserves them
    reserved = reserve_ports(ctx.settings.port_range_start, ctx.settings.port_range_end)
    console.print(f"Preview ports: {shown(reserved)}")


@token_app.command("create")
def token_create(
    role: Annotated[Role, typer.Option(help="admin sees every website; user only their own")] = Role.USER,
    name: Annotated[str, typer.Option(help="Who the token is for")] = "",
) -> None:
    """Create an API token; prints it as the last line (it is not shown again)."""
    ctx = _prepare(check_runtime=False)
    with ctx.session() as session:
        record, token = create_token(session, role, name or f"{role.value} token")
    console.print(f"Created {role.value} token #{record.id} ({shown(record.name)}).")
    print(token)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Run the HTTP API."""
    _serve_api(_prepare(check_runtime=False), host, port)


def _serve_api(ctx: Context, host: str | None, port: int | None) -> None:
    """Run uvicorn's API processes (each makes its own context at start-up)."""
    import uvicorn

    settings = ctx.settings
    ctx.close()
    uvicorn.run(
        "api.main:app",
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level="info",
        workers=settings.api_processes,
    )


@app.command()
def gateway(
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: settings]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: settings, 8800]")] = None,
) -> None:
    """Run the preview gateway: every preview by its website's or build's host name, woken on
    request when it sleeps, its traffic counted (docs/previews.md)."""
    from orchestrator.gateway.proxy import serve

    ctx = _prepare()
    settings = ctx.settings
    console.print(f"Gateway on http://{host or settings.gateway_host}:{port or settings.gateway_port}/")
    serve(ctx, host or settings.gateway_host, port or settings.gateway_port)


@app.command()
def worker() -> None:
    """Run a build worker: admits builds in priority order and runs them (RQ), one at a time."""
    from orchestrator.cli.worker import run
    from orchestrator.scheduling.queue import RQJobs, reconcile
    from orchestrator.service.gc import collect
    from orchestrator.state.hosts import register, this_host

    ctx = _prepare()
    _isolate_builds(ctx)
    try:
        host = ctx.host_record = this_host(ctx)
        warnings = register(ctx, host)
        fixed = reconcile(ctx, RQJobs(ctx))
        cleaned = collect(ctx, scheduled=True)
    except OrchestratorError as exc:
        fail(exc)
    console.print(
        f"Host {host.id}: previews reached at {host.address}, engine {host.engine}, "
        f"{host.cpus} CPUs, {host.memory_bytes / 2**30:.1f} GB",
        markup=False,
        highlight=False,
    )
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {shown(warning)}")
    if fixed:
        console.print(f"Put back {len(fixed)} builds that the queue had lost.")
    for action in cleaned.actions:
        console.print(f"gc: {action.action} {action.target} ({action.reason})", markup=False, highlight=False)
    ctx.database.after_fork()  # each job runs in a forked process: it opens its own connections
    run(ctx)


@app.command()
def up(
    workers: Annotated[int, typer.Option(help="Build workers to run beside the API")] = 2,
    host: Annotated[str | None, typer.Option(help="Address the API listens on")] = None,
    port: Annotated[int | None, typer.Option(help="Port the API listens on")] = None,
) -> None:
    """Run the API and build workers in the foreground (Ctrl-C stops all). A worker that ends is
    started again (with a back-off while it keeps ending)."""
    import threading

    from sqlmodel import select

    from orchestrator.cli.supervisor import Supervisor, popen
    from orchestrator.state.models import ApiToken

    ctx = _prepare()
    settings = ctx.settings
    with ctx.session() as session:
        first_start = session.exec(select(ApiToken)).first() is None
        if first_start:
            _, token = create_token(session, Role.ADMIN, "first admin")
    supervisor = Supervisor(popen(sys.executable, "-m", "orchestrator.cli", "worker"), workers)
    supervisor.start()
    gateway = Supervisor(popen(sys.executable, "-m", "orchestrator.cli", "gateway"), 1, name="gateway")
    gateway.start()
    stopped = threading.Event()
    watcher, gateway_watcher = supervisor.watch(stopped), gateway.watch(stopped)
    address = f"http://{host or settings.api_host}:{port or settings.api_port}"
    console.print(f"[bold]API[/bold] {address}  (docs: {address}/docs), {workers} build workers")
    previews = f"http://<website id>.{settings.preview_domain}:{settings.gateway_port}/"
    console.print(f"[bold]Previews[/bold] {previews}")
    if first_start:
        console.print("First start: an admin token was created (it is not shown again):")
        print(token, flush=True)
    # uvicorn re-raises SIGTERM once it has shut down: turn it into an exit, so that the
    # workers below are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _serve_api(ctx, host, port)
    finally:
        stopped.set()
        watcher.join(5)  # no restart races the stop
        gateway_watcher.join(5)
        procs = [p for p in supervisor.processes() + gateway.processes() if isinstance(p, subprocess.Popen)]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@app.command()
def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be done, change nothing")
    ] = False,
    idle_ttl: Annotated[
        int | None, typer.Option(help="Stop previews idle this many seconds [default: settings, 1800]")
    ] = None,
    max_age: Annotated[
        int | None, typer.Option(help="Stop previews live this many seconds [default: settings, 86400]")
    ] = None,
    sleep_after: Annotated[
        float | None,
        typer.Option(help="Put previews idle this many seconds to sleep [default: settings, 600]"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Put idle previews to sleep, remove sleepers past their lifetime and previews whose website
    went; remove orphan containers, stray ports, old workspaces. Lists the sleeping previews
    with the disk each keeps.

    Exits 0 when it ran (even with nothing to do), 1 when Docker, Redis or the database
    cannot be reached."""
    from sqlalchemy.exc import SQLAlchemyError

    from orchestrator.service.gc import collect

    ctx = _prepare(check_runtime=False)
    try:
        ctx.runtime.ping()
        report = collect(ctx, dry_run=dry_run, idle_ttl=idle_ttl, max_age=max_age, sleep_after=sleep_after)
    except OrchestratorError as exc:
        fail(exc)
    except SQLAlchemyError as exc:
        console.print(f"[red]error:[/red] the database cannot be reached: {shown(exc)}")
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps({"dryRun": dry_run, **report.as_dict()}, indent=2))
        return
    _print_gc(report, dry_run)


@app.command()
def purge(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone")] = False,
) -> None:
    """Take this installation off this host's engine for good: stop its previews, then remove
    its containers, dependency cache and package store. The records stay in the database.
    Refused while a build is in progress. Run it before `docker compose down -v`."""
    from orchestrator.service.purge import purge as purge_host

    if not yes:
        console.print(
            "[red]error:[/red] purge removes every preview and cache of this installation: pass --yes"
        )
        raise typer.Exit(2)
    ctx = _prepare()
    try:
        done = purge_host(ctx)
    except OrchestratorError as exc:
        fail(exc)
    for action in done:
        console.print(
            f"purge: {action.action} {action.target} ({action.reason})", markup=False, highlight=False
        )
    console.print(f"Purged host {ctx.host_id}: {len(done)} things removed.", markup=False, highlight=False)


def _print_gc(report, dry_run: bool) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table
    from rich.text import Text

    from orchestrator.core.expiry import duration

    def size(value: int | None) -> str:
        return "" if not value else f"{value / 2**20:.0f} MB" if value >= 2**20 else f"{value / 1024:.0f} KB"

    out = Console()
    title = "gc" + (" (dry run: nothing was changed)" if dry_run else "")
    if report.actions:
        table = Table("what", "target", "why", "memory", "disk", "port", title=title)
        for a in report.actions:
            freed = (size(a.memory_bytes), size(a.disk_bytes), str(a.port or ""))
            table.add_row(*(Text(plain(cell)) for cell in (a.action, a.target, a.reason)), *freed)
        out.print(table)
    else:
        out.print(f"{title}: nothing to collect.")
    if report.sleeping:
        asleep = Table("sleeping preview", "port", "disk", "asleep", "removed in", title="sleeping previews")
        for s in report.sleeping:
            asleep.add_row(
                s.build_id,
                str(s.port or ""),
                size(s.disk_bytes),
                duration(s.asleep_seconds),
                duration(s.removed_in_seconds),
            )
        out.print(asleep)
    totals = report.as_dict()["freed"]
    assert isinstance(totals, dict)
    verb = "would free" if dry_run else "freed"
    out.print(
        f"{report.previews_checked} previews checked in {report.seconds:.2f} s; {verb} "
        f"{size(totals['memoryBytes']) or '0 MB'} memory, {size(totals['diskBytes']) or '0 MB'} disk, "
        f"{len(totals['ports'])} ports."
    )


@app.command()
def hosts(as_json: Annotated[bool, typer.Option("--json", help="Print the hosts as JSON")] = False) -> None:
    """The hosts builds run on: live (a worker beat within 30 s), silent, or lost (their
    previews were stopped), with their previews and builds. Reads Redis and the database."""
    from rich.table import Table

    from orchestrator.state.hosts import overview

    ctx = _prepare(check_runtime=False)
    try:
        views = overview(ctx)
    except OrchestratorError as exc:
        fail(exc)
    if as_json:
        print(json.dumps([view.as_json() for view in views], indent=2))
        return
    if not views:
        Console().print("No host has registered yet: start a worker (orchestrator worker).")
        return
    table = Table("host", "state", "address", "CPUs", "memory", "ports")
    for column in ("running", "sleeping", "building", "admission", "seen"):
        table.add_column(column)
    for v in views:
        said = v.record
        table.add_row(
            said.id,
            v.state,
            said.address,
            str(said.cpus),
            f"{said.memory_bytes / 2**30:.1f} GB",
            f"{said.port_range[0]}-{said.port_range[1]}",
            str(v.running),
            str(v.sleeping),
            str(v.building),
            v.admission or "-",
            v.last_seen.strftime("%Y-%m-%d %H:%M:%S"),
        )
    Console().print(table)


@image_app.command("build")
def image_build(
    force: Annotated[bool, typer.Option(help="Rebuild even when the image is current")] = False,
) -> None:
    """Build the Node image unless it is already current."""
    from orchestrator.adapters.docker_runtime import DockerRuntime
    from orchestrator.adapters.image import ensure_image
    from orchestrator.config import Settings

    settings = Settings()
    runtime = DockerRuntime(settings)
    try:
        built = ensure_image(runtime, settings, force=force)
    except OrchestratorError as exc:
        fail(exc)
    finally:
        runtime.close()
    console.print(f"{settings.node_image}: {'built' if built else 'current'}")
