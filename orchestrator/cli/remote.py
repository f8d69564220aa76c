"""The commands that talk to a running service over its HTTP API: submit, push, status, logs
(registered on the `orchestrator` app by orchestrator.cli.app)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from orchestrator.cli.common import console, fail, plain, shown
from orchestrator.config import Settings
from orchestrator.core.exceptions import OrchestratorError
from orchestrator.core.status import EventType, Status

ServerOption = Annotated[str | None, typer.Option(help="API address [env: ORCHESTRATOR_URL]")]
TokenOption = Annotated[str | None, typer.Option(help="API token [env: ORCHESTRATOR_TOKEN]")]


def _server_url(server: str | None) -> str:
    """The API to talk to: --server, else ORCHESTRATOR_URL, else this installation's own."""
    if server or os.environ.get("ORCHESTRATOR_URL"):
        return server or os.environ["ORCHESTRATOR_URL"]
    settings = Settings()
    return f"http://{settings.api_host}:{settings.api_port}"


def _client(server: str | None, token: str | None):  # type: ignore[no-untyped-def]
    from orchestrator.cli.client import ApiClient

    try:
        return ApiClient(_server_url(server), token or os.environ.get("ORCHESTRATOR_TOKEN"))
    except OrchestratorError as exc:
        fail(exc)


def _print_outcome(final: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(final, indent=2))
    elif final["status"] == Status.RUNNING:
        console.print(f"[green]Preview live:[/green] {shown(final['previewUrl'])}")
        print(final["previewUrl"])
    else:
        console.print(f"[red]Build {final['status']}:[/red] {shown(final.get('error') or '')}")
        for line in final.get("logs", [])[-15:]:
            console.print(f"  {plain(line)}", markup=False, highlight=False)
    if final["status"] != Status.RUNNING:
        raise typer.Exit(1)


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
                    f"Uploaded [bold]{shown(accepted['website']['name'])}[/bold] "
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
                        if kind == EventType.LOG:
                            bar.console.print(plain(data["line"]), markup=False, highlight=False)
                        elif kind in (EventType.PROGRESS, EventType.STATUS):
                            bar.update(
                                task,
                                completed=data.get("progress", 0),
                                description=shown(data.get("currentStep") or data.get("status", "")),
                            )
            else:
                for _ in client.events(job):
                    pass
            final = client.status(job)
        except OrchestratorError as exc:
            fail(exc)
    _print_outcome(final, as_json)


def push(
    path: Annotated[Path, typer.Argument(help="The project folder")],
    website: Annotated[str, typer.Option(help="The website to edit (its id)")],
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Send what changed in PATH since the website's last upload or edit (compared by SHA-256)
    to its live preview, as a live edit: changed and new files, and deletions. Hot reload shows
    it at once; the type check runs afterwards (`orchestrator status BUILD`)."""
    import hashlib

    from orchestrator.cli.client import folder_files

    with _client(server, token) as client:
        try:
            local = {rel: file.read_bytes() for rel, file in folder_files(path).items()}
            remote = client.request("GET", f"/api/websites/{website}/files")["files"]
            changed = sorted(
                p for p, data in local.items() if remote.get(p) != hashlib.sha256(data).hexdigest()
            )
            deleted = sorted(p for p in remote if p not in local)
            if not changed and not deleted:
                console.print("Nothing changed since the last upload or edit.")
                return
            applied = client.request(
                "PATCH",
                f"/api/websites/{website}/files",
                files=[("files", (p, local[p])) for p in changed] or None,
                data={"delete": deleted} if deleted else None,
            )
        except OrchestratorError as exc:
            fail(exc)
    for name in applied["changed"]:
        console.print(f"  changed {shown(name)}")
    for name in applied["deleted"]:
        console.print(f"  deleted {shown(name)}")
    check = "its type check is running" if applied["typeCheck"] == "running" else "no type check"
    console.print(f"Edit {applied['edit']} applied to build {applied['buildId']} ({check}).")


def status(
    job: Annotated[str | None, typer.Argument(help="A build id; none lists your websites")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    system: Annotated[
        bool, typer.Option("--system", help="The service's health: database, Redis, Docker, workers")
    ] = False,
) -> None:
    """Show a build, or list your websites with their newest build; --system: the service's health
    (exit 1 when builds cannot run)."""
    from rich.table import Table

    if system:
        _print_health(server, as_json)
        return
    with _client(server, token) as client:
        try:
            found = client.status(job) if job else client.request("GET", "/api/websites")
        except OrchestratorError as exc:
            fail(exc)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    out = Console()
    if job:
        eta = found.get("estimatedTimeRemaining")
        out.print(
            f"[bold]{found['status']}[/bold] {found['progress']}% {shown(found.get('currentStep') or '')}"
            + (f" (about {eta:.0f} s left)" if eta else "")
        )
        for key in ("previewUrl", "websiteUrl", "error", "queuePosition"):
            if found.get(key):
                out.print(f"{key}: {shown(found[key])}")
        check = found.get("editCheck")
        if check and check.get("status") not in (None, "none"):
            out.print(f"type check of edit {check['edit']}: {shown(check['status'])}")
            for line in check.get("errors", [])[:10]:
                out.print(f"  {plain(line)}", markup=False, highlight=False)
        return
    table = Table("website", "type", "status", "preview", "build")
    for site in found:
        table.add_row(  # Text cells: a name is never read as markup
            *(
                Text(plain(str(value or "")))
                for value in (
                    site["name"],
                    site["type"],
                    site.get("status"),
                    site.get("previewUrl"),
                    site.get("buildJobId"),
                )
            )
        )
    out.print(table)


def _print_health(server: str | None, as_json: bool) -> None:
    import httpx
    from rich.table import Table

    url = _server_url(server)
    try:
        found = httpx.get(f"{url.rstrip('/')}/api/health", timeout=30).json()
    except (httpx.HTTPError, ValueError) as exc:
        fail(OrchestratorError(f"cannot reach the API at {url}: {exc}"))
    if as_json:
        print(json.dumps(found, indent=2))
    else:
        table = Table("part", "state", "detail", title=f"service: {found['status']}")
        for name, check in found["checks"].items():
            table.add_row(shown(name), "ok" if check["ok"] else "[red]down[/red]", shown(check["detail"]))
        Console().print(table)
        for name, ago in found.get("workers", {}).items():
            Console().print(f"worker {shown(name)}: last seen {ago} s ago")
    if found["status"] != "ok":
        raise typer.Exit(1)


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
                    if kind == EventType.LOG:
                        print(plain(data["line"]), flush=True)
            else:
                for line in client.request("GET", f"/api/builds/{job}")["logs"]:
                    print(plain(line))
        except OrchestratorError as exc:
            fail(exc)
