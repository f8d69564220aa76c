"""What every command shares: the console, failing with a reason, and the process's context."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from orchestrator.config import Settings
from orchestrator.context import Context, install
from orchestrator.core.exceptions import OrchestratorError

console = Console(stderr=True)


_CONTROL = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)])
"""C0 and C1 control characters but tab and newline."""


def plain(text: str) -> str:
    """Text a build wrote (its log lines), safe to print on a terminal: escape sequences are
    decoded away by Rich, every other control character is dropped (tab and newline kept)."""
    return Text.from_ansi(text).plain.translate(_CONTROL)


def shown(text: object) -> str:
    """Text from users or builds (names, errors) inside Rich markup: escaped, and plain."""
    return escape(plain(str(text)))


def fail(exc: OrchestratorError) -> None:
    console.print(f"[red]error:[/red] {shown(exc)}")
    raise typer.Exit(1)


def context() -> Context:
    """This command's context: one per process, made here and passed down."""
    return install(Context.connect(Settings()))
