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
    """The newest build's status."""
    preview_url: str | None = None
    """The live preview: the newest build's once it is live, until then the previous one's."""
    live_build_id: str | None = None
    """The build serving preview_url."""
    website_url: str | None = None
    """The gateway's stable address of the website: always its newest live (or sleeping)
    build's preview, woken on request."""
    preview_access: str | None = None
    """"open", or "protected" (a share link or the owner's token opens its previews)."""


class WebsiteDeleted(CamelModel):
    id: str
    deleted_at: datetime
    cancelled_builds: list[str]
    """Builds that were waiting or in progress, now cancelled."""
    stopped_builds: list[str]
    """Builds whose live preview was stopped (reason ``deleted``)."""


class PreviewPublic(CamelModel):
    build_id: str
    website_id: str
    website_name: str
    owner: str
    status: str
    """running (awake) or sleeping (its container stopped; the next request wakes it)."""
    url: str | None
    website_url: str
    """The website's stable address at the gateway."""
    port: int | None
    memory_bytes: int | None
    """What the preview's container uses now (its working set); none while it sleeps."""
    idle_seconds: float
    """Since anyone last sent the preview a request."""
    age_seconds: float
    """Since the preview went live."""


class HostPublic(CamelModel):
    """A host builds run on (GET /api/hosts, admins only)."""

    id: str
    state: str
    """live (a worker beat within 30 s), silent (no beat yet declared lost) or lost (its
    previews were stopped: host-lost)."""
    address: str
    """Where the gateway reaches its preview ports."""
    engine: str
    public_host: str
    memory_bytes: int
    cpus: int
    port_range: tuple[int, int]
    running: int
    sleeping: int
    building: int
    admission: str | None
    """What its workers' last dispatch round found: "room for a build", or why a build would
    wait there; null when no worker of the host reported lately (all busy, or none runs)."""
    first_seen: datetime
    last_seen: datetime
    lost_at: datetime | None


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
    stop_reason: str | None = None
    """Why a live preview was stopped: idle, expired, replaced, deleted or gc."""
    reused_from: str | None = None
    """The identical build whose outcome this one reused."""
    website_url: str | None = None
    """The website's stable address at the gateway (whichever build is live)."""
    build_url: str | None = None
    """This build's own address at the gateway, while it has a preview."""
    edits: int = 0
    """Live edits applied to its preview."""
    edit_check: dict[str, Any] | None = None
    """The type check of the newest live edit: {"edit", "status", "errors"}."""
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
    container_id: str | None
    """The build's Docker container (its preview's, once live)."""
    files_hash: str | None
    steps: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    stopped_at: datetime | None
    stop_reason: str | None
    """idle, expired, replaced, deleted or gc, once a live preview was stopped."""
    attempts: int
    wait_reason: str | None
    cancelled_by: str | None
    rebuild: bool
    """Asked for with …/rebuild: never answered by reusing an identical build."""
    reused_from: str | None
    """The build with identical files whose outcome (live preview, failure, type check) was reused."""
    deps_key: str | None
    """Dependency-cache key of its node_modules."""
    host_id: str | None = None
    """The host it was admitted to (GET /api/hosts); its log says why."""
    build_url: str | None = None
    """Its own address at the gateway, while it has a preview."""
    slept_at: datetime | None = None
    woke_at: datetime | None = None
    edits: int = 0
    edit_check: dict[str, Any] | None = None


def multipart_form(required: tuple[str, ...] = (), **fields: dict) -> dict:
    """OpenAPI for a route that reads its multipart form itself (``openapi_extra``)."""
    schema: dict = {"type": "object", "properties": fields}
    if required:
        schema["required"] = list(required)
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def files_field(description: str) -> dict:
    """A form field of many files."""
    return {"type": "array", "items": {"type": "string", "format": "binary"}, "description": description}
