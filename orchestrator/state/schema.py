"""The database schema: alembic migrations (orchestrator/state/migrations), run once at a time."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.config import Settings
from orchestrator.context import Context
from orchestrator.core.exceptions import ServiceUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(ctx: Context) -> None:
    """Bring the schema to the newest revision. Safe to call from several processes at once:
    they take the migration lock first."""
    url = ctx.database.url
    try:
        with ctx.migration_lock():
            command.upgrade(alembic_config(url), "head")
    except SQLAlchemyError as exc:
        where = make_url(url).render_as_string(hide_password=True)
        cause = getattr(exc, "orig", None) or exc
        raise ServiceUnavailable(f"the database {where} cannot be reached: {cause}") from exc


def memory_context(settings: Settings | None = None, database_url: str = "sqlite://") -> Context:
    """The in-memory context (orchestrator.context) with the tables created: for unit tests."""
    from sqlmodel import SQLModel

    from orchestrator.state import models  # noqa: F401 (registers the tables)

    ctx = Context.in_memory(settings, database_url=database_url)
    SQLModel.metadata.create_all(ctx.database.engine)
    return ctx
