"""`orchestrator`: run the service, its workers and its maintenance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from orchestrator.config import get_settings
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
console = Console(stderr=True)


def _fail(exc: OrchestratorError) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


def _prepare(check_runtime: bool = True) -> None:
    """Migrate the database and check Redis (and Docker); exit with the reason otherwise."""
    from orchestrator.adapters.database import migrate
    from orchestrator.adapters.redis_client import check_redis
    from orchestrator.adapters.runtime import Runtime

    try:
        check_redis()
        migrate()
        if check_runtime:
            Runtime(get_settings()).check()
    except OrchestratorError as exc:
        _fail(exc)


def _isolate_builds() -> None:
    from orchestrator.adapters.firewall import ensure_host_isolation
    from orchestrator.adapters.runtime import Runtime

    try:
        Runtime(get_settings()).ensure_network()
    except OrchestratorError as exc:
        _fail(exc)
    warning = ensure_host_isolation()
    if warning:
        console.print(f"[yellow]warning:[/yellow] {warning}")


@token_app.command("create")
def token_create(
    role: Annotated[Role, typer.Option(help="admin sees every website; user only their own")] = Role.USER,
    name: Annotated[str, typer.Option(help="Who the token is for")] = "",
) -> None:
    """Create an API token; prints it as the last line (it is not shown again)."""
    from orchestrator.adapters.database import session_scope

    _prepare(check_runtime=False)
    with session_scope() as session:
        record, token = create_token(session, role, name or f"{role.value} token")
    console.print(f"Created {role.value} token #{record.id} ({record.name}).")
    print(token)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    settings = get_settings()
    _prepare(check_runtime=False)
    uvicorn.run(
        "api.main:app",
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level="info",
        workers=settings.api_processes,
    )


@app.command()
def worker() -> None:
    """Run a build worker: admits builds in priority order and runs them (RQ), one at a time."""
    from orchestrator.adapters.database import get_engine
    from orchestrator.cli.worker import run
    from orchestrator.scheduling.queue import reconcile
    from orchestrator.service.gc import collect

    _prepare()
    _isolate_builds()
    try:
        fixed = reconcile()
        cleaned = collect(get_settings(), scheduled=True)
    except OrchestratorError as exc:
        _fail(exc)
    if fixed:
        console.print(f"Put back {len(fixed)} builds that the queue had lost.")
    for action in cleaned.actions:
        console.print(f"gc: {action.action} {action.target} ({action.reason})", markup=False, highlight=False)
    get_engine().dispose()  # each job runs in a forked process: it opens its own connections
    run(get_settings())


@app.command()
def up(
    workers: Annotated[int, typer.Option(help="Build workers to run beside the API")] = 2,
    host: Annotated[str | None, typer.Option(help="Address the API listens on")] = None,
    port: Annotated[int | None, typer.Option(help="Port the API listens on")] = None,
) -> None:
    """Run the API and build workers in the foreground (Ctrl-C stops all)."""
    import uvicorn
    from sqlmodel import select

    from orchestrator.adapters.database import get_engine, session_scope
    from orchestrator.state.models import ApiToken

    settings = get_settings()
    _prepare()
    with session_scope() as session:
        first_start = session.exec(select(ApiToken)).first() is None
        if first_start:
            _, token = create_token(session, Role.ADMIN, "first admin")
    get_engine().dispose()
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "worker"]) for _ in range(workers)]
    address = f"http://{host or settings.api_host}:{port or settings.api_port}"
    console.print(f"[bold]API[/bold] {address}  (docs: {address}/docs), {workers} build workers")
    if first_start:
        console.print("First start: an admin token was created (it is not shown again):")
        print(token, flush=True)
    # uvicorn re-raises SIGTERM once it has shut down: turn it into an exit, so that the
    # workers below are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            "api.main:app",
            host=host or settings.api_host,
            port=port or settings.api_port,
            log_level="info",
            workers=settings.api_processes,
        )
    finally:
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Stop idle and expired previews; remove orphan containers, stray ports, old workspaces.

    Exits 0 when it ran (even with nothing to do), 1 when Docker, Redis or the database
    cannot be reached."""
    from sqlalchemy.exc import SQLAlchemyError

    from orchestrator.adapters.runtime import Runtime
    from orchestrator.service.gc import collect

    settings = get_settings()
    _prepare(check_runtime=False)
    runtime = Runtime(settings)
    try:
        runtime.ping()
        report = collect(settings, dry_run=dry_run, runtime=runtime, idle_ttl=idle_ttl, max_age=max_age)
    except OrchestratorError as exc:
        _fail(exc)
    except SQLAlchemyError as exc:
        console.print(f"[red]error:[/red] the database cannot be reached: {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps({"dryRun": dry_run, **report.as_dict()}, indent=2))
        return
    _print_gc(report, dry_run)


def _print_gc(report, dry_run: bool) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    def size(value: int | None) -> str:
        return "" if not value else f"{value / 2**20:.0f} MB" if value >= 2**20 else f"{value / 1024:.0f} KB"

    out = Console()
    title = "gc" + (" (dry run: nothing was changed)" if dry_run else "")
    if report.actions:
        table = Table("what", "target", "why", "memory", "disk", "port", title=title)
        for a in report.actions:
            freed = (size(a.memory_bytes), size(a.disk_bytes), str(a.port or ""))
            table.add_row(a.action, a.target, a.reason, *freed)
        out.print(table)
    else:
        out.print(f"{title}: nothing to collect.")
    totals = report.as_dict()["freed"]
    assert isinstance(totals, dict)
    verb = "would free" if dry_run else "freed"
    out.print(
        f"{report.previews_checked} live previews checked in {report.seconds:.2f} s; {verb} "
        f"{size(totals['memoryBytes']) or '0 MB'} memory, {size(totals['diskBytes']) or '0 MB'} disk, "
        f"{len(totals['ports'])} ports."
    )


ServerOption = Annotated[str | None, typer.Option(help="API address [env: ORCHESTRATOR_URL]")]
TokenOption = Annotated[str | None, typer.Option(help="API token [env: ORCHESTRATOR_TOKEN]")]
ENDED = ("running", "failed", "cancelled", "stopped")


def _client(server: str | None, token: str | None):  # type: ignore[no-untyped-def]
    from orchestrator.cli.client import ApiClient

    settings = get_settings()
    server = server or os.environ.get("ORCHESTRATOR_URL") or f"http://{settings.api_host}:{settings.api_port}"
    try:
        return ApiClient(server, token or os.environ.get("ORCHESTRATOR_TOKEN"))
    except OrchestratorError as exc:
        _fail(exc)


def _print_outcome(final: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(final, indent=2))
    elif final["status"] == "running":
        console.print(f"[green]Preview live:[/green] {final['previewUrl']}")
        print(final["previewUrl"])
    else:
        console.print(f"[red]Build {final['status']}:[/red] {final.get('error') or ''}")
        for line in final.get("logs", [])[-15:]:
            console.print(f"  {line}", markup=False, highlight=False)
    if final["status"] != "running":
        raise typer.Exit(1)


@app.command()
def submit(
    path: Annotated[Path, typer.Argument(help="A project folder or a .zip")],
    name: Annotated[str | None, typer.Option(help="Website name (default: from package.json)")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final status as JSON only")] = False,
) -> None:
    """Upload a website and follow its build to a live preview (exit 0) or a failure (exit 1)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from orchestrator.cli.client import pack

    with _client(server, token) as client:
        try:
            filename, payload = pack(path)
            accepted = client.upload(filename, payload, name)
            job = accepted["website"]["buildJobId"]
            if not as_json:
                console.print(
                    f"Uploaded [bold]{accepted['website']['name']}[/bold] "
                    f"({accepted['website']['type']}, {len(payload) // 1024} KB): build {job}"
                )
                columns = (
                    TextColumn("{task.description}"),
                    BarColumn(),
                    TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(),
                )
                with Progress(*columns, console=console, transient=True) as bar:
                    task = bar.add_task("Queued", total=100)
                    for kind, data in client.events(job):
                        if kind == "log":
                            bar.console.print(data["line"], markup=False, highlight=False)
                        elif kind in ("progress", "status"):
                            bar.update(
                                task,
                                completed=data.get("progress", 0),
                                description=data.get("currentStep") or data.get("status", ""),
                            )
            else:
                for _ in client.events(job):
                    pass
            final = client.status(job)
        except OrchestratorError as exc:
            _fail(exc)
    _print_outcome(final, as_json)


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(help="A build id; none lists your websites")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Show a build, or list your websites with their newest build."""
    from rich.table import Table

    with _client(server, token) as client:
        try:
            found = client.status(job) if job else client.request("GET", "/api/websites")
        except OrchestratorError as exc:
            _fail(exc)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    out = Console()
    if job:
        eta = found.get("estimatedTimeRemaining")
        out.print(
            f"[bold]{found['status']}[/bold] {found['progress']}% {found.get('currentStep') or ''}"
            + (f" (about {eta:.0f} s left)" if eta else "")
        )
        for key in ("previewUrl", "error", "queuePosition"):
            if found.get(key):
                out.print(f"{key}: {found[key]}")
        return
    table = Table("website", "type", "status", "preview", "build")
    for site in found:
        table.add_row(
            site["name"],
            site["type"],
            site.get("status") or "",
            site.get("previewUrl") or "",
            site.get("buildJobId") or "",
        )
    out.print(table)


@app.command()
def logs(
    job: Annotated[str, typer.Argument(help="A build id")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the build ends")
    ] = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Print a build's log (the newest lines kept); --follow streams it live."""
    with _client(server, token) as client:
        try:
            if follow:
                for kind, data in client.events(job):
                    if kind == "log":
                        print(data["line"], flush=True)
            else:
                for line in client.request("GET", f"/api/builds/{job}")["logs"]:
                    print(line)
        except OrchestratorError as exc:
            _fail(exc)


@image_app.command("build")
def image_build(
    force: Annotated[bool, typer.Option(help="Rebuild even when the image is current")] = False,
) -> None:
    """Build the Node image unless it is already current."""
    from orchestrator.adapters.image import ensure_image
    from orchestrator.adapters.runtime import Runtime

    settings = get_settings()
    try:
        built = ensure_image(Runtime(settings), settings, force=force)
    except OrchestratorError as exc:
        _fail(exc)
    console.print(f"{settings.node_image}: {'built' if built else 'current'}")

