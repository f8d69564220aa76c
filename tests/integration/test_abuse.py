"""The abuse suite: what a stranger's upload or request tries, and the specific outcome of each
(docs/security.md). The egress probes live in test_isolation.py, beside the other probes made
from inside a build container."""

from __future__ import annotations

import json
import select
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.integration.conftest import Stack, small_stack, upload, vite_project, zip_dir

pytestmark = pytest.mark.integration

GB = 1 << 30


# -- 1 GB bodies, anonymous and with a token -----------------------------------------------


PART = (
    b'--cut\r\nContent-Disposition: form-data; name="files"; filename="big.zip"\r\n'
    b"Content-Type: application/zip\r\n\r\n"
)


def flood(url: str, token: str | None, chunked: bool) -> tuple[str, bytes, int]:
    """POST a 1 GB upload to /api/websites over a raw socket, sending until the API answers;
    its status line, what followed it, and how many body bytes it took to get that answer."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = [
        "POST /api/websites HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: multipart/form-data; boundary=cut",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {GB}",
    ]
    if token:
        head.append(f"Authorization: Bearer {token}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    chunk = b"\0" * (1 << 20)
    frame = (lambda data: b"%x\r\n%s\r\n" % (len(data), data)) if chunked else (lambda data: data)
    sock.sendall(frame(PART))
    framed = frame(chunk)
    sent = len(PART)
    answer = b""
    while sent < GB:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
        try:
            sock.sendall(framed)
        except OSError:  # the API closed the connection: its answer is waiting
            break
        sent += len(chunk)
    sock.settimeout(30)
    try:
        while b"}" not in answer:  # the JSON error after the headers
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sock.close()
    status, _, rest = answer.partition(b"\r\n")
    return status.decode(), rest, sent


def api_process(main_stack: Stack) -> psutil.Process:
    return psutil.Process(main_stack.procs["api"].pid)


def footprint(main_stack: Stack) -> int:
    """The API's memory: its processes' resident bytes, together."""
    parent = api_process(main_stack)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])


@pytest.mark.parametrize(
    ("chunked", "answer"),
    [(False, "HTTP/1.1 413 Request Entity Too Large"), (True, "HTTP/1.1 401 Unauthorized")],
    ids=["declared-length", "chunked"],
)
def test_a_gigabyte_posted_anonymously_is_refused_before_it_is_read(
    main_stack: Stack, chunked: bool, answer: str
) -> None:
    """A declared length over the limit is refused before anything else; without one, the
    missing token is."""
    before = footprint(main_stack)
    status, _, sent = flood(main_stack.url, None, chunked)
    assert status == answer
    assert sent < 64 << 20, f"the API took {sent >> 20} MB before refusing"
    assert footprint(main_stack) - before < 64 << 20


@pytest.mark.parametrize("chunked", [False, True], ids=["declared-length", "chunked"])
def test_a_gigabyte_posted_with_a_token_is_cut_off_at_the_limit(main_stack: Stack, chunked: bool) -> None:
    token = main_stack.token("user", "flooder")
    before = footprint(main_stack)
    status, rest, sent = flood(main_stack.url, token, chunked)
    assert status == "HTTP/1.1 413 Request Entity Too Large"
    assert b"an upload may be at most 100 MB" in rest  # the limit, named
    assert sent < (100 << 20) + (64 << 20), f"the API took {sent >> 20} MB before refusing"
    assert footprint(main_stack) - before < 64 << 20


# -- known-vulnerable dev servers ---------------------------------------------------------------


def project_with_vite(folder: Path, wanted: str) -> bytes:
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<h1>old vite</h1>")
    (folder / "package.json").write_text(json.dumps({"name": "old", "devDependencies": {"vite": wanted}}))
    return zip_dir(folder)


def test_a_vulnerable_vite_pin_is_refused_before_anything_is_installed(
    main_stack: Stack, tmp_path: Path
) -> None:
    client = main_stack.client("user", "old-vite")
    build = upload(client, [("site.zip", project_with_vite(tmp_path / "pinned", "6.2.0"))])
    assert build.wait()["status"] == "failed"
    record = build.record()
    assert record["errorStep"] == "install"
    assert record["error"].startswith("Vite 6.2.0 has published security holes in its development server")
    assert "CVE-2025-30208" in record["error"] and "Upgrade Vite to 6.3.6 or newer" in record["error"]
    assert not any(line.startswith("added ") for line in record["logs"])  # npm never ran


def test_a_range_that_installs_a_vulnerable_vite_is_refused_before_it_serves(
    main_stack: Stack, tmp_path: Path
) -> None:
    client = main_stack.client("user", "old-vite-range")
    build = upload(client, [("site.zip", project_with_vite(tmp_path / "ranged", "6.2.0 - 6.2.2"))])
    assert build.wait()["status"] == "failed"
    record = build.record()
    assert record["error"].startswith("Vite 6.2.2 has published security holes"), record["error"]
    assert record["errorStep"] == "install" and record["previewUrl"] is None


# -- disk quota ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_stack(runtime, tmp_path_factory: pytest.TempPathFactory):
    """A stack of this module's: a 200 MB disk quota, and gc run by the tests alone."""
    with small_stack(
        "abuse",
        tmp_path_factory.mktemp("abuse"),
        3,
        (42740, 42759),
        runtime,
        ORCHESTRATOR_DISK_QUOTA_MB="200",
    ) as stack:
        yield stack


def test_a_build_writing_past_its_disk_quota_fails_and_its_disk_is_freed(
    own_stack: Stack, runtime, tmp_path: Path
) -> None:
    writer = "dd if=/dev/zero of=filler bs=1M count=400 status=none && sleep 120"
    folder = vite_project(tmp_path / "writer", "writer", scripts={"postinstall": writer})
    client = own_stack.client("user", "writer")
    started = time.monotonic()
    build = upload(client, [("site.zip", zip_dir(folder))])
    assert build.wait()["status"] == "failed"
    took = time.monotonic() - started
    record = build.record()
    assert "wrote more than 200 MB (a build's disk quota); nothing it wrote was kept" in record["error"]
    assert took < 100, f"caught after {took:.0f} s: not while it wrote"  # its script sleeps 120 s
    assert own_stack.leaks(runtime, client) == []  # its containers, and their layers, are gone
    print(f"disk quota: caught and cleaned up {took:.1f} s after the upload")


def test_a_preview_requesting_itself_is_still_reaped_as_idle(own_stack: Stack, runtime) -> None:
    from tests.integration.conftest import run_cli

    client = own_stack.client("user", "self-visitor")
    site = upload(client, [("index.html", b"<h1>I visit myself</h1>")])
    final = site.wait()
    assert final["status"] == "running"
    port = int(final["previewUrl"].rstrip("/").rsplit(":", 1)[1])
    container = container_of(site)
    visit_myself = f"setInterval(() => fetch('http://127.0.0.1:{port}/').catch(() => {{}}), 200)"
    code, out = runtime.exec(container, ["sh", "-c", f'node -e "{visit_myself}" >/dev/null 2>&1 &'])
    assert code == 0, out
    before = runtime.traffic(container)
    time.sleep(3)
    assert runtime.traffic(container) > before + 20  # it does request itself, again and again
    done = json.loads(run_cli("gc", "--json", "--idle-ttl", "2", env=own_stack.env).stdout)
    [stop] = [a for a in done["actions"] if a["target"] == site.job_id]
    assert stop["action"] == "stop preview" and stop["reason"].startswith("idle: no traffic for")
    assert client.get(f"/api/builds/{site.job_id}").json()["stopReason"] == "idle"


# -- one identity per build: a flood of inotify instances stays its own ----------------------


def container_of(build) -> str:
    found = build.record()["containerId"]
    assert found, build.record()
    return found


def hot_reloads(preview_url: str, runtime, container: str) -> bool:
    """Whether Vite's HMR tells a connected client to reload when index.html changes."""
    import re

    from websockets.sync.client import connect

    client_js = httpx.get(preview_url + "@vite/client", timeout=10).text
    token = re.search(r'const wsToken = "([^"]+)"', client_js)
    assert token, "Vite's client carries its websocket token"
    port = int(preview_url.rstrip("/").rsplit(":", 1)[1])
    with connect(
        f"ws://localhost:{port}/?token={token[1]}", subprotocols=["vite-hmr"], open_timeout=10
    ) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "connected"
        code, out = runtime.exec(container, ["sh", "-c", "echo '<p>edited</p>' >> /app/index.html"])
        assert code == 0, out
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            except TimeoutError:
                return False
            if message["type"] in ("full-reload", "update"):
                return True
    return False


def test_an_inotify_flood_in_one_build_leaves_another_builds_hot_reload_working(
    main_stack: Stack, runtime, tmp_path: Path
) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    client = main_stack.client("user", "inotify")
    flooder = upload(client, [("index.html", b"<h1>flood</h1>")])
    assert flooder.wait()["status"] == "running"
    flood = container_of(flooder)
    opened = (
        # tail -f watches with inotify on tmpfs (on overlayfs it polls)
        f"echo > /dev/shm/watched; for i in $(seq {limit + 10}); do "
        "tail -f /dev/shm/watched >/dev/null 2>&1 & done; sleep 1; "
        "ls -l /proc/[0-9]*/fd 2>/dev/null | grep -c inotify"
    )
    code, out = runtime.exec(flood, ["sh", "-c", opened])
    assert int(out.split()[-1]) == limit, out  # its UID holds every inotify instance the kernel allows it

    other = upload(client, [("site.zip", zip_dir(vite_project(tmp_path / "other", "other")))])
    final = other.wait()
    assert final["status"] == "running", final
    assert hot_reloads(final["previewUrl"], runtime, container_of(other))
    for build in (flooder, other):
        assert client.delete(f"/api/websites/{build.website_id}").status_code in (200, 202, 204)
