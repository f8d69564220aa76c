"""What the CLI prints of text that users and builds wrote: no control sequence reaches the
terminal, and no name is read as Rich markup."""

from __future__ import annotations

import pytest
from rich.console import Console

from orchestrator.cli.common import plain, shown


@pytest.mark.parametrize(
    ("written", "printed"),
    [
        ("\x1b[32mVITE\x1b[0m ready", "VITE ready"),  # colours
        ("\x1b]0;pwned\x07title", "0;pwnedtitle"),  # a window title (OSC … BEL)
        ("a\x1b]8;;http://evil.example.com\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),  # a hyperlink
        ("x\x1b[2J\x1b[Hy", "xy"),  # clear the screen, move the cursor
        ("bell\x07 and\x08 back", "bell and back"),
        ("c1 \x9b31m csi", "c1 31m csi"),  # the 8-bit CSI
        ("tab\tstays", "tab\tstays"),
    ],
)
def test_control_sequences_never_reach_the_terminal(written: str, printed: str) -> None:
    assert plain(written) == printed


def test_a_name_is_printed_as_written_never_as_markup() -> None:
    console = Console(record=True, width=120)
    name = "[/bold] [red]x[/red] \x1b[2J"
    console.print(f"Uploaded [bold]{shown(name)}[/bold]")  # "[/bold]" alone would crash Rich
    assert console.export_text().strip() == "Uploaded [/bold] [red]x[/red]"
