"""Unit tests of the control logic run over the in-memory context: the scripted runtime, the
memory stores and an in-memory SQLite (orchestrator.state.schema.memory_context)."""

from __future__ import annotations

import io
import zipfile

import pytest

from orchestrator.config import Settings
from orchestrator.context import Context
from orchestrator.service.auth import Role, create_token
from orchestrator.state.models import ApiToken, BuildJob
from orchestrator.state.schema import memory_context


@pytest.fixture(autouse=True)
def _defaults_only(clean_environment: None) -> None:
    """Every unit test's settings come from their defaults (tests/conftest.py)."""


@pytest.fixture
def ctx(tmp_path) -> Context:
    """The in-memory context."""
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
    return memory_context(settings)


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
