"""``python -m orchestrator.cli``: the same commands as ``orchestrator``."""

from orchestrator.cli.app import app

app()
