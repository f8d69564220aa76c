"""Request bodies are bounded before and while they arrive: the upload's token is checked
before a byte of its body is read, a declared length over the limit is refused unread, and a
body without a length is cut off once past the limit. Driven as an ASGI server would, counting
what the application reads."""

from __future__ import annotations

import json

import anyio
import pytest

from api.main import create_app
from orchestrator.context import Context
from orchestrator.service.auth import Role
from tests.unit.conftest import token

CHUNK = 64 * 1024


def post(ctx: Context, headers: dict[str, str], chunks: int) -> tuple[int, dict, int]:
    """POST /api/websites with ``chunks`` chunks of body; the status, the JSON answer, and how
    many chunks the application read."""
    app = create_app(ctx)
    read = 0
    answer: dict = {"status": None, "body": b""}
    boundary = b"--cut\r\nContent-Disposition: form-data; name=files; filename=big.zip\r\n\r\n"

    async def receive() -> dict:
        nonlocal read
        read += 1
        last = read >= chunks
        body = boundary if read == 1 else b"\0" * CHUNK
        return {"type": "http.request", "body": body, "more_body": not last}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/websites",
        "raw_path": b"/api/websites",
        "query_string": b"",
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "headers": [
            (b"content-type", b"multipart/form-data; boundary=cut"),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ],
    }
    anyio.run(app, scope, receive, send)
    return answer["status"], json.loads(answer["body"]), read


@pytest.fixture
def small(ctx: Context) -> Context:
    ctx.settings.max_upload_bytes = 2 * 2**20
    return ctx


def test_an_anonymous_upload_is_refused_before_its_body_is_read(small: Context) -> None:
    status, body, read = post(small, {}, chunks=16_000)  # 1 GB on offer
    assert status == 401 and body["error"] == "Unauthorized"
    assert read == 0


def test_a_declared_length_over_the_limit_is_refused_unread(small: Context) -> None:
    bearer = {"Authorization": f"Bearer {token(small, Role.USER, 'alice')[1]}", "Content-Length": str(2**30)}
    status, body, read = post(small, bearer, chunks=16_000)
    assert status == 413 and "larger than 3 MB: an upload may be at most 2 MB" in body["detail"]
    assert read == 0


def test_a_body_without_a_length_is_cut_off_past_the_limit(small: Context) -> None:
    bearer = {"Authorization": f"Bearer {token(small, Role.USER, 'alice')[1]}"}
    status, body, read = post(small, bearer, chunks=16_000)
    assert status == 413 and body["error"] == "UploadTooLarge"
    assert read * CHUNK <= 3 * 2**20 + 2 * CHUNK  # no further than the limit
