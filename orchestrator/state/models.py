"""Database tables: API tokens, websites and their build jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Text
from sqlmodel import Field, SQLModel

from orchestrator.core.status import Status


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A moment read back from the database, in UTC (SQLite gives it back without its zone)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class ApiToken(SQLModel, table=True):
    """One caller of the API: a user or an admin. Only a hash of the token is kept."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str
    role: str = Field(index=True)
    token_hash: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class Website(SQLModel, table=True):
    __tablename__ = "websites"

    id: str = Field(default_factory=new_id, primary_key=True)
    owner_id: int = Field(foreign_key="api_tokens.id", index=True)
    name: str
    type: str
    build_job_id: str | None = Field(default=None)
    """The newest build of this website."""
    created_at: datetime = Field(default_factory=utcnow)
    deleted_at: datetime | None = Field(default=None, index=True)
    """Set by DELETE: the website is gone for its owner; its builds stay as history."""
    preview_access: str | None = None
    """"open" or "protected" (a share link or the owner's token) through the gateway; None:
    Settings.default_preview_access."""


class ShareLink(SQLModel, table=True):
    """A link that opens a website's previews without an API token (orchestrator.core.sharing
    signs it; this row is what revokes it)."""

    __tablename__ = "share_links"

    id: str = Field(default_factory=new_id, primary_key=True)
    website_id: str = Field(foreign_key="websites.id", index=True)
    created_by: int = Field(foreign_key="api_tokens.id")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class BuildJob(SQLModel, table=True):
    __tablename__ = "build_jobs"

    id: str = Field(default_factory=new_id, primary_key=True)
    website_id: str = Field(foreign_key="websites.id", index=True)
    owner_id: int = Field(foreign_key="api_tokens.id", index=True)
    project_type: str
    status: str = Field(default=Status.PENDING.value, index=True)
    priority: int = 0
    progress: int = 0
    current_step: str | None = None
    error: str | None = None
    error_step: str | None = None
    infrastructure_fault: bool = False
    """The build failed through no fault of its files (engine, registry, lost worker…)."""
    allocated_port: int | None = None
    preview_url: str | None = None
    container_id: str | None = None
    files_hash: str | None = Field(default=None, index=True)
    steps: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """Per step: {"startedAt", "endedAt", "status"} as ISO times, for estimates."""
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    """When the build ended: went live, failed or was cancelled."""
    stopped_at: datetime | None = None
    stop_reason: str | None = None
    attempts: int = 0
    """Times a worker took this build (more than one after a lost worker or an engine fault)."""
    wait_reason: str | None = None
    """Why a queued build is not starting yet (limits, resources), for the status."""
    cancelled_by: str | None = None
    rebuild: bool = False
    """Asked for explicitly (POST …/rebuild): never answered by reusing an identical build."""
    reused_from: str | None = None
    """The build with identical files whose outcome this one reused."""
    deps_key: str | None = None
    """The dependency-cache key of its node_modules."""
    slept_at: datetime | None = None
    """When its preview last went to sleep."""
    woke_at: datetime | None = None
    """When its preview last woke (its awake lifetime counts from here)."""
    edits: int = 0
    """Live edits applied to its preview (PATCH …/files): its files' version."""
    edit_check: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """The type check of its newest live edit: {"edit", "status", "errors"}."""
    host_id: str | None = Field(default=None, index=True)
    """The host it was admitted to, where its containers are (orchestrator.core.hosts)."""
    placement: str | None = None
    """Why it went to that host (core.hosts.place), for its log."""
    updated_at: datetime = Field(default_factory=utcnow)


class Host(SQLModel, table=True):
    """A host (a Docker engine and its workers) ever seen: what it said at its last beat. Whether
    it is alive is Redis' to say (orchestrator.coordination.hosts); ``lost_at`` is set once its
    previews were stopped for it."""

    __tablename__ = "hosts"

    id: str = Field(primary_key=True)
    address: str
    engine: str
    public_host: str
    memory_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    cpus: int
    port_range_start: int
    port_range_end: int
    first_seen: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)
    lost_at: datetime | None = None


class BuildLogLine(SQLModel, table=True):
    """One line of a build's log. Lines are only ever appended (orchestrator.state.logs); the
    newest Settings.log_lines_kept of a build are kept."""

    __tablename__ = "build_log_lines"

    id: int | None = Field(default=None, primary_key=True)
    build_id: str = Field(foreign_key="build_jobs.id", index=True)
    line: str = Field(sa_column=Column(Text, nullable=False))
