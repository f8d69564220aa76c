"""Each user's quotas: uploads a minute, builds waiting or in progress, websites with a live
preview. Past one: 429, the limit in the message, and Retry-After. Admins have none. Through the
API's routes over the in-memory context."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from orchestrator.context import Context
from orchestrator.core.status import Status
from orchestrator.scheduling.dispatcher import dispatch_round
from orchestrator.scheduling.queue import MemoryJobs
from orchestrator.service.auth import Role
from orchestrator.state.models import BuildJob
from tests.unit.conftest import site_zip, token


def client_of(ctx: Context, role: Role, name: str) -> TestClient:
    client = TestClient(create_app(ctx))
    client.headers["Authorization"] = f"Bearer {token(ctx, role, name)[1]}"
    return client


def upload(client: TestClient, **data: str):  # type: ignore[no-untyped-def]
    return client.post("/api/websites", files={"files": ("s.zip", site_zip(), "application/zip")}, data=data)


def test_uploads_past_the_rate_are_429_with_when_to_retry(ctx: Context) -> None:
    ctx.settings.max_uploads_per_minute = 3
    alice = client_of(ctx, Role.USER, "alice")
    assert [upload(alice).status_code for _ in range(3)] == [202, 202, 202]
    refused = upload(alice)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 61
    assert refused.json()["detail"].startswith("at most 3 uploads a minute per user: try again in")
    assert upload(client_of(ctx, Role.USER, "bob")).status_code == 202  # a quota is each user's
    assert upload(client_of(ctx, Role.ADMIN, "root")).status_code == 202


def test_one_user_cannot_fill_the_queue_and_anothers_build_is_admitted_next(ctx: Context) -> None:
    ctx.settings.max_queued_per_user = 20
    mallory, alice = client_of(ctx, Role.USER, "mallory"), client_of(ctx, Role.USER, "alice")
    answers = [upload(mallory).status_code for _ in range(25)]
    assert answers == [202] * 20 + [429] * 5
    assert "20 of your builds are waiting or in progress" in upload(mallory).json()["detail"]
    alices = upload(alice).json()["website"]["buildJobId"]
    jobs, admitted = MemoryJobs(), []
    for _ in range(4):  # 4 slots, 2 per user: mallory's 20 waiting builds hold 2 of them at most
        admitted.append(dispatch_round(ctx, jobs, usage=(0, 0)))
        jobs.taken = len(jobs.started)  # a worker took it
    assert alices in admitted


def test_a_new_website_past_the_live_previews_quota_is_refused_a_new_version_is_not(ctx: Context) -> None:
    ctx.settings.max_previews_per_user = 2
    alice = client_of(ctx, Role.USER, "alice")
    sites = [upload(alice).json()["website"] for _ in range(2)]
    with ctx.session() as session:  # both went live
        for site in sites:
            build = session.get(BuildJob, site["buildJobId"])
            assert build is not None
            build.status = Status.RUNNING
    refused = upload(alice)
    assert refused.status_code == 429 and "2 of your websites have a live preview" in refused.json()["detail"]
    assert upload(alice, websiteId=sites[0]["id"]).status_code == 202  # replaces its own preview


@pytest.mark.parametrize("limit", ["max_queued_per_user", "max_uploads_per_minute"])
def test_a_quota_is_checked_before_the_body_is_read(ctx: Context, limit: str) -> None:
    setattr(ctx.settings, limit, 0)
    refused = client_of(ctx, Role.USER, "alice").post(
        "/api/websites",
        content=b"not even a form",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert refused.status_code == 429  # not a 400 about the body: it was never read
