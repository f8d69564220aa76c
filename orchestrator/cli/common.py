"""What every command shares: the console, failing with a reason, and the process's context."""

from __future__ import annotations

import typer
from rich.console import Console

from orchestrator.config import Settings
from orchestrator.context import Context, install
from orchestrator.core.exceptions import OrchestratorError

console = Console(stderr=True)


def fail(exc: OrchestratorError) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


def context() -> Context:
    """This command's context: one per process, made here and passed down."""
    return install(Context.connect(Settings()))
