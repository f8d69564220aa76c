"""Container-isolated build orchestrator: one Docker container per website build."""

__version__ = "0.1.0"
