"""Unit tests of the control logic run over the in-memory context: the scripted runtime, the
memory stores and an in-memory SQLite (orchestrator.state.schema.memory_context)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

from orchestrator.config import Settings
from orchestrator.context import Context
from orchestrator.service.auth import Role, create_token
from orchestrator.state.models import ApiToken, BuildJob
from orchestrator.state.schema import memory_context, migrate
from tests.conftest import postgres_test_url


@pytest.fixture(autouse=True)
def _defaults_only(clean_environment: None) -> None:
    """Every unit test's settings come from their defaults (tests/conftest.py)."""


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The tests' PostgreSQL database (scripts/dev test starts one), its schema made afresh by
    the migrations once per run."""
    url = postgres_test_url()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    migrating = Context.in_memory(database_url=url)
    migrate(migrating)
    migrating.close()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Every unit test that touches the database runs on both: an in-memory SQLite, and the
    PostgreSQL database emptied first."""
    if request.param == "sqlite":
        return "sqlite://"
    url: str = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    tables = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def ctx(tmp_path, database_url: str) -> Iterator[Context]:
    """The in-memory context, on each database."""
    settings = Settings(
        data_dir=tmp_path,
        npm_registry="http://127.0.0.1:4873/",  # an address: the build resolves no name (no DNS)
        redis_url="redis://unused.example.com:6379/0",
        instance_id="unit",
        port_range_start=41000,
        port_range_end=41004,
        build_memory_budget_mb=16384,
        replace_drain_seconds=0,
    )
    context = memory_context(settings, database_url)
    yield context
    context.database.close()  # its engine (the PostgreSQL pass opens connections)


def token(ctx: Context, role: Role = Role.USER, name: str = "alice") -> tuple[ApiToken, str]:
    with ctx.session() as session:
        return create_token(session, role, name)


@pytest.fixture
def alice(ctx: Context) -> ApiToken:
    return token(ctx, Role.USER, "alice")[0]


def site_zip(files: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in (files or {"index.html": "<h1>hi</h1>"}).items():
            archive.writestr(name, text)
    return buffer.getvalue()


def record(ctx: Context, build_id: str) -> BuildJob:
    """The build's record as the database has it now."""
    with ctx.session() as session:
        found = session.get(BuildJob, build_id)
    assert found is not None
    return found
