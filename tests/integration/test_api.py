"""The HTTP contract with a real API process, database and Redis: auth, ownership, and bad
input answered with a 4xx that says what to fix, leaving nothing behind."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import api_client, make_token

pytestmark = pytest.mark.integration


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def users(api_url: str):
    clients = {name: api_client(api_url, make_token("user", name)) for name in ("alice", "bob")}
    yield clients
    for client in clients.values():
        client.close()


def data_dir() -> Path:
    return Path(os.environ["ORCHESTRATOR_DATA_DIR"])


def test_health_needs_no_token_and_checks_every_part_builds_need(api_url: str) -> None:
    found = httpx.get(f"{api_url}/api/health")
    assert found.status_code == 200, found.text
    assert found.json()["status"] == "ok" and found.json()["down"] == []
    assert set(found.json()["checks"]) == {"database", "redis", "docker", "workers"}
    assert len(found.json()["workers"]) >= 1


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wob_not-a-real-token"}])
def test_everything_else_needs_a_valid_token(api_url: str, headers: dict) -> None:
    for method, path in [("GET", "/api/websites"), ("POST", "/api/websites"), ("GET", "/api/builds/x")]:
        response = httpx.request(method, f"{api_url}{path}", headers=headers)
        assert response.status_code == 401
        assert "token" in response.json()["detail"]


def test_users_see_only_their_own_websites_and_admins_see_all(users, admin: httpx.Client) -> None:
    site = zipped({"index.html": b"<h1>alice</h1>"})
    accepted = users["alice"].post("/api/websites", files={"files": ("a.zip", site)})
    assert accepted.status_code == 202
    website = accepted.json()["website"]
    assert users["bob"].get(f"/api/websites/{website['id']}").status_code == 404
    assert users["bob"].get(f"/api/websites/{website['id']}/build-status").status_code == 404
    assert users["bob"].get(f"/api/builds/{website['buildJobId']}").status_code == 404
    assert website["id"] not in [w["id"] for w in users["bob"].get("/api/websites").json()]
    assert website["id"] in [w["id"] for w in users["alice"].get("/api/websites").json()]
    assert admin.get(f"/api/websites/{website['id']}").status_code == 200
    assert admin.get(f"/api/builds/{website['buildJobId']}").json()["websiteId"] == website["id"]


@pytest.mark.parametrize(
    ("files", "status", "message"),
    [
        ([], 400, "no files in the upload"),
        ([("site.zip", b"")], 400, "is empty"),
        ([("site.zip", b"PK\x03\x04 broken")], 400, "valid zip"),
        ([("site.tar.gz", b"\x1f\x8b")], 400, "could not be read as a tar archive"),
        ([("site.7z", b"7z")], 400, "not supported"),
        ([("notes.txt", b"hello")], 400, "no package.json and no index.html"),
        ([("package.json", b'{"name": "x"')], 400, "package.json is not valid JSON"),
        ([("package.json", b'{"dependencies": {"react": "19"}}')], 400, "does not depend on vite"),
        ([("index.html", b"x"), ("../escape.txt", b"x")], 400, "leaving the upload"),
        ([("index.html", b"x"), ("/etc/cron.d/x", b"x")], 400, "absolute path"),
    ],
)
def test_bad_uploads_get_a_4xx_that_says_what_to_fix(users, files, status, message) -> None:
    before = sorted(p.name for p in (data_dir() / "uploads").glob("*"))
    response = users["alice"].post(
        "/api/websites",
        files=[("files", f) for f in files] or None,
        data={"name": "x"} if not files else None,
    )
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert sorted(p.name for p in (data_dir() / "uploads").glob("*")) == before  # nothing left behind
    assert not list(data_dir().parent.rglob("escape.txt"))


def test_zip_slip_is_refused_and_nothing_is_written_outside(users) -> None:
    evil = zipped({"index.html": b"x", "../../../../tmp/wob-zip-slip.txt": b"owned"})
    response = users["alice"].post("/api/websites", files={"files": ("evil.zip", evil)})
    assert response.status_code == 400
    assert "leaving the upload" in response.json()["detail"]
    assert not Path("/tmp/wob-zip-slip.txt").exists()


def test_unknown_ids_are_404(users) -> None:
    assert users["alice"].get("/api/websites/nope").status_code == 404
    assert users["alice"].get("/api/builds/nope").json()["detail"] == "no build with id nope"
