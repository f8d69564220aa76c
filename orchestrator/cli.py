"""`orchestrator`: run the service, its workers and its maintenance."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Annotated

import typer
from rich.console import Console

from orchestrator.auth import Role, create_token
from orchestrator.config import get_settings
from orchestrator.exceptions import OrchestratorError

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
    from orchestrator.db import migrate
    from orchestrator.redis_conn import check_redis
    from orchestrator.runtime import Runtime

    try:
        check_redis()
        migrate()
        if check_runtime:
            Runtime(get_settings()).check()
    except OrchestratorError as exc:
        _fail(exc)


def _isolate_builds() -> None:
    from orchestrator.firewall import ensure_host_isolation
    from orchestrator.runtime import Runtime

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
    from orchestrator.db import session_scope

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
        "api.main:app", host=host or settings.api_host, port=port or settings.api_port, log_level="info"
    )


@app.command()
def worker(
    burst: Annotated[bool, typer.Option(help="Exit once the queue is empty")] = False,
) -> None:
    """Run a build worker (RQ): takes builds from the queue, one at a time."""
    from rq import Worker
    from rq.serializers import JSONSerializer

    from orchestrator.db import get_engine
    from orchestrator.jobs import get_queue, requeue_lost
    from orchestrator.redis_conn import get_redis

    _prepare()
    _isolate_builds()
    lost = requeue_lost()
    if lost:
        console.print(f"Re-queued {len(lost)} builds that the queue had lost.")
    get_engine().dispose()  # each job runs in a forked process: it opens its own connections
    Worker([get_queue()], connection=get_redis(), serializer=JSONSerializer).work(with_scheduler=False)


@app.command()
def up(
    workers: Annotated[int, typer.Option(help="Build workers to run beside the API")] = 2,
    host: Annotated[str | None, typer.Option(help="Address the API listens on")] = None,
    port: Annotated[int | None, typer.Option(help="Port the API listens on")] = None,
) -> None:
    """Run the API and build workers in the foreground (Ctrl-C stops all)."""
    import uvicorn
    from sqlmodel import select

    from orchestrator.db import get_engine, session_scope
    from orchestrator.models import ApiToken

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
            "api.main:app", host=host or settings.api_host, port=port or settings.api_port, log_level="info"
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the actions as JSON")] = False,
) -> None:
    """Remove leftovers: containers with no live build, builds whose container is gone, stray ports."""
    import json

    from orchestrator.gc import collect

    _prepare(check_runtime=False)
    try:
        actions = collect(get_settings(), dry_run=dry_run)
    except OrchestratorError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps([a.__dict__ for a in actions], indent=2))
        return
    from rich.table import Table

    table = Table("action", "target", "why", title="gc" + (" (dry run)" if dry_run else ""))
    for action in actions:
        table.add_row(action.action, action.target, action.reason)
    Console().print(table if actions else "Nothing to collect.")


@image_app.command("build")
def image_build(
    force: Annotated[bool, typer.Option(help="Rebuild even when the image is current")] = False,
) -> None:
    """Build the Node image unless it is already current."""
    from orchestrator.image import ensure_image
    from orchestrator.runtime import Runtime

    settings = get_settings()
    try:
        built = ensure_image(Runtime(settings), settings, force=force)
    except OrchestratorError as exc:
        _fail(exc)
    console.print(f"{settings.node_image}: {'built' if built else 'current'}")


if __name__ == "__main__":
    app()
