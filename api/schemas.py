"""What the API returns: JSON in camelCase, as the website builder's frontend expects."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class WebsitePublic(CamelModel):
    id: str
    name: str
    type: str
    build_job_id: str | None
    created_at: datetime | None = None
    status: str | None = None
    preview_url: str | None = None


class UploadAccepted(CamelModel):
    success: bool = True
    website: WebsitePublic
    message: str


class BuildStatus(CamelModel):
    website_id: str
    job_id: str
    status: str
    progress: int
    current_step: str | None
    logs: list[str]
    preview_url: str | None
    error: str | None
    estimated_time_remaining: float | None
    error_step: str | None = None
    queue_position: int | None = None
    """1 = next to start; set while queued."""
    wait_reason: str | None = None
    """Why a queued build is not starting yet."""
    priority: int | None = None
    cancelled_by: str | None = None
    project_type: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


class BuildSummary(CamelModel):
    id: str
    website_id: str
    project_type: str
    status: str
    progress: int
    current_step: str | None
    error: str | None
    preview_url: str | None
    created_at: datetime
    completed_at: datetime | None


class BuildPublic(CamelModel):
    id: str
    website_id: str
    project_type: str
    status: str
    priority: int
    progress: int
    current_step: str | None
    logs: list[str]
    error: str | None
    error_step: str | None
    allocated_port: int | None
    preview_url: str | None
    files_hash: str | None
    steps: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    stopped_at: datetime | None
    stop_reason: str | None
    attempts: int
    wait_reason: str | None
    cancelled_by: str | None
