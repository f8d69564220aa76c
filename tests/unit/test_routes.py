"""The API's routes over the in-memory context (FastAPI's TestClient): status codes, the
answers' shapes, and who sees what."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from orchestrator.context import Context
from orchestrator.service.auth import Role
from tests.unit.conftest import site_zip, token


@pytest.fixture
def client(ctx: Context):
    with TestClient(create_app(ctx)) as client:
        client.headers["Authorization"] = f"Bearer {token(ctx, Role.USER, 'alice')[1]}"
        yield client


def upload(client: TestClient, files: dict[str, str] | None = None) -> dict:
    response = client.post("/api/websites", files={"files": ("site.zip", site_zip(files), "application/zip")})
    assert response.status_code == 202, response.text
    return response.json()


def test_health_needs_no_token(ctx: Context) -> None:
    with TestClient(create_app(ctx)) as anonymous:
        ctx.stores.signals.worker_seen("worker-1")
        assert anonymous.get("/api/health").json()["status"] == "ok"


def test_a_request_without_a_token_is_refused(ctx: Context) -> None:
    with TestClient(create_app(ctx)) as anonymous:
        response = anonymous.get("/api/websites")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"] == "Unauthorized"


def test_an_upload_answers_at_once_with_the_website_and_its_build(client: TestClient) -> None:
    accepted = upload(client)
    assert accepted["success"] is True and accepted["website"]["type"] == "static"
    assert accepted["website"]["buildJobId"]


def test_the_build_status_of_a_queued_build(client: TestClient) -> None:
    website = upload(client)["website"]
    status = client.get(f"/api/websites/{website['id']}/build-status").json()
    assert status["status"] == "queued" and status["queuePosition"] == 1 and status["progress"] == 0


def test_a_build_is_read_by_its_id(client: TestClient) -> None:
    job = upload(client)["website"]["buildJobId"]
    assert client.get(f"/api/builds/{job}").json()["id"] == job
    assert client.get(f"/api/builds/{job}/status").json()["jobId"] == job


def test_an_upload_that_is_not_a_site_gets_a_400_that_says_why(client: TestClient) -> None:
    response = client.post("/api/websites", files={"files": ("site.zip", b"garbage", "application/zip")})
    assert response.status_code == 400 and response.json()["detail"]


def test_an_upload_without_files_gets_a_400(client: TestClient) -> None:
    response = client.post("/api/websites", data={"name": "empty"})
    assert response.status_code == 400


def test_an_unknown_website_is_a_404(client: TestClient) -> None:
    response = client.get("/api/websites/nope/build-status")
    assert response.status_code == 404 and response.json()["detail"] == "no website with id nope"


def test_a_queued_build_is_cancelled(client: TestClient) -> None:
    job = upload(client)["website"]["buildJobId"]
    response = client.post(f"/api/builds/{job}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert client.post(f"/api/builds/{job}/cancel").status_code == 409


def test_websites_are_listed_newest_first(client: TestClient) -> None:
    first = upload(client)["website"]["id"]
    second = upload(client)["website"]["id"]
    assert [w["id"] for w in client.get("/api/websites").json()] == [second, first]


def test_a_deleted_website_is_gone_and_its_builds_stay_as_history(client: TestClient) -> None:
    website = upload(client)["website"]
    deleted = client.delete(f"/api/websites/{website['id']}").json()
    assert deleted["cancelledBuilds"] == [website["buildJobId"]]
    assert client.get(f"/api/websites/{website['id']}").status_code == 404
    assert client.get(f"/api/builds/{website['buildJobId']}").json()["status"] == "cancelled"


def test_another_users_build_is_a_404(ctx: Context, client: TestClient) -> None:
    job = upload(client)["website"]["buildJobId"]
    client.headers["Authorization"] = f"Bearer {token(ctx, Role.USER, 'bob')[1]}"
    assert client.get(f"/api/builds/{job}").status_code == 404


def test_no_previews_are_live_at_first(client: TestClient) -> None:
    assert client.get("/api/previews").json() == []


def test_the_events_of_a_cancelled_build_end_with_its_status(client: TestClient) -> None:
    job = upload(client)["website"]["buildJobId"]
    client.post(f"/api/builds/{job}/cancel")
    body = client.get(f"/api/builds/{job}/events").text
    assert "event: status" in body and '"cancelled"' in body


def test_a_rebuild_queues_the_same_files_again(client: TestClient) -> None:
    website = upload(client)["website"]
    response = client.post(f"/api/websites/{website['id']}/rebuild")
    assert response.status_code == 202
    again = response.json()["website"]
    assert again["id"] == website["id"] and again["buildJobId"] != website["buildJobId"]


def test_a_rebuild_of_files_no_longer_kept_says_to_upload_again(ctx: Context, client: TestClient) -> None:
    website = upload(client)["website"]
    (ctx.settings.uploads_dir / f"{website['buildJobId']}.zip").unlink()
    response = client.post(f"/api/websites/{website['id']}/rebuild")
    assert response.status_code == 400 and "upload it again" in response.json()["detail"]


def test_a_new_version_keeps_the_website_and_supersedes_its_waiting_build(client: TestClient) -> None:
    first = upload(client)["website"]
    response = client.post(
        "/api/websites",
        files={"files": ("site.zip", site_zip({"index.html": "<h1>v2</h1>"}), "application/zip")},
        data={"websiteId": first["id"]},
    )
    second = response.json()["website"]
    assert second["id"] == first["id"]
    assert client.get(f"/api/builds/{first['buildJobId']}").json()["status"] == "cancelled"


def test_a_users_priority_is_clamped_to_what_the_role_may_ask(client: TestClient) -> None:
    response = client.post(
        "/api/websites",
        files={"files": ("site.zip", site_zip(), "application/zip")},
        data={"priority": "10"},
    )
    job = response.json()["website"]["buildJobId"]
    assert client.get(f"/api/builds/{job}/status").json()["priority"] == 4


def test_builds_are_listed_by_website(client: TestClient) -> None:
    one = upload(client)["website"]
    upload(client)
    listed = client.get("/api/builds", params={"websiteId": one["id"]}).json()
    assert [b["id"] for b in listed] == [one["buildJobId"]]


def test_the_status_shows_the_upload_notes_in_its_log(client: TestClient) -> None:
    website = upload(client, {"index.html": "<h1>x</h1>", ".DS_Store": "junk"})["website"]
    status = client.get(f"/api/websites/{website['id']}/build-status").json()
    assert any("the operating system added" in line for line in status["logs"])


def test_events_resume_after_the_last_event_seen(client: TestClient) -> None:
    job = upload(client)["website"]["buildJobId"]
    client.post(f"/api/builds/{job}/cancel")
    first = client.get(f"/api/builds/{job}/events").text
    first_id = next(line.split(": ", 1)[1] for line in first.splitlines() if line.startswith("id: "))
    rest = client.get(f"/api/builds/{job}/events", headers={"Last-Event-ID": first_id}).text
    assert f"id: {first_id}\n" not in rest and '"cancelled"' in rest


def test_an_open_event_stream_holds_no_database_connection(tmp_path, ctx: Context) -> None:
    from sqlmodel import SQLModel

    from orchestrator.adapters.database import Database
    from orchestrator.core.status import EventType
    from orchestrator.state import models  # noqa: F401

    database = Database(f"sqlite:///{tmp_path / 'pool.db'}")  # a real connection pool
    SQLModel.metadata.create_all(database.engine)
    pooled = Context(ctx.settings, database, ctx.stores, ctx.runtime, port_is_free=ctx.port_is_free)
    with TestClient(create_app(pooled)) as client:
        client.headers["Authorization"] = f"Bearer {token(pooled, Role.USER, 'alice')[1]}"
        job = upload(client)["website"]["buildJobId"]
        with client.stream("GET", f"/api/builds/{job}/events") as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: status"
            assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            pooled.stores.events.publish(job, [(EventType.STATUS, {"status": "cancelled"})])
            assert any('"cancelled"' in line for line in lines)
    database.close()


def test_the_page_confines_what_it_loads_and_frames_only_previews(ctx: Context) -> None:
    with TestClient(create_app(ctx)) as client:
        page = client.get("/")
    policy = page.headers["Content-Security-Policy"]
    assert page.status_code == 200 and "frame-ancestors 'none'" in policy
    assert "default-src 'self'" in policy and "frame-src http://localhost:*" in policy
    assert 'sandbox="allow-scripts allow-same-origin' in page.text  # the preview's frame
