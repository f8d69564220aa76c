"""The preview gateway, end to end: a stack with its own gateway process, real previews.

Every request goes to the gateway on loopback with the preview's host name in Host (browsers
resolve ``*.localhost`` themselves; this host's resolver may not)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import redis_test_url
from tests.integration.conftest import (
    ARTIFACTS,
    Stack,
    Watched,
    chromium_path,
    run_cli,
    small_stack,
    upload,
    zip_dir,
)

pytestmark = pytest.mark.integration

SLOW_START = """// Starts 2.5 s late, every time (a wake too): long enough to see the "waking up" page.
await new Promise((resolve) => setTimeout(resolve, 2500));
export default { legacy: { skipWebSocketTokenCheck: true } };
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, runtime) -> Iterator[Stack]:
    with small_stack(
        "gateway", tmp_path_factory.mktemp("gateway"), 2, (42780, 42819), runtime, workers=4
    ) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: Stack) -> httpx.Client:
    return stack.client("user", "gateway-user")


def static_site(folder: Path, text: str) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(f"<!doctype html><title>{text}</title><h1>{text}</h1>")
    return zip_dir(folder)


def live(watched: Watched) -> dict:
    final = watched.wait(180)
    assert final["status"] == "running", final
    return watched.client.get(f"/api/websites/{watched.website_id}/build-status").json()


def gc(stack: Stack, *args: str) -> dict:
    return json.loads(run_cli("gc", "--json", *args, env=stack.env).stdout)


def status(client: httpx.Client, build_id: str) -> str:
    return client.get(f"/api/builds/{build_id}").json()["status"]


def test_a_preview_sleeps_and_wakes_on_request(stack: Stack, client: httpx.Client, runtime, tmp_path) -> None:
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "index.html").write_text("<!doctype html><h1>slow starter</h1>")
    (folder / "package.json").write_text(
        json.dumps({"name": "slow", "private": True, "devDependencies": {"vite": "^8.0.0"}})
    )
    (folder / "vite.config.mjs").write_text(SLOW_START)
    state = live(upload(client, [("slow.zip", zip_dir(folder))]))
    build_id, url = state["jobId"], state["websiteUrl"]
    assert url.endswith(f".preview.localhost:{stack.gateway_port}/") and state["websiteId"] in url
    assert "slow starter" in stack.through_gateway(url).text
    container = client.get(f"/api/builds/{build_id}").json()["containerId"]

    report = gc(stack, "--sleep-after", "0")
    assert ("sleep preview", build_id) in [(a["action"], a["target"]) for a in report["actions"]]
    assert status(client, build_id) == "sleeping"
    state = runtime.state(container)
    assert state is not None and not state.running  # stopped: its memory and CPU are freed
    assert runtime.memory_used(container) in (None, 0)
    assert client.get(f"/api/builds/{build_id}").json()["allocatedPort"] > 0  # the port stays its own
    assert [s["buildId"] for s in gc(stack)["sleeping"]] == [build_id]

    # A browser gets the waking page after a second; its reload then finds the preview awake.
    browser = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate"}
    started = time.monotonic()
    waking = stack.through_gateway(url, headers=browser)
    assert waking.status_code == 503 and "Waking up" in waking.text and 'http-equiv="refresh"' in waking.text
    assert 0.9 <= time.monotonic() - started < 2.5
    answered = stack.through_gateway(url)  # any other client simply waits
    assert answered.status_code == 200 and "slow starter" in answered.text
    assert status(client, build_id) == "running"

    # Over a websocket: the upgrade itself wakes it, and is sent on once Vite answers.
    gc(stack, "--sleep-after", "0")
    assert status(client, build_id) == "sleeping"
    host = httpx.URL(url).netloc.decode()
    sock = socket.create_connection(("127.0.0.1", stack.gateway_port))
    with connect(f"ws://{host}/", sock=sock, subprotocols=["vite-hmr"], open_timeout=60) as ws:
        assert ws.subprotocol == "vite-hmr"
        assert json.loads(ws.recv(timeout=10))["type"] == "connected"
    assert status(client, build_id) == "running"

    # A real browser: the waking page first, whose own reload then shows the preview.
    from playwright.sync_api import sync_playwright

    gc(stack, "--sleep-after", "0")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu", "--no-proxy-server"]
        )
        page = browser.new_page()
        page.goto(url)  # Chromium resolves *.localhost to loopback itself
        assert "Waking up" in page.content()
        page.wait_for_selector("text=slow starter", timeout=30_000)
        (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "screenshots" / "woken-preview.png"))
        browser.close()
    assert status(client, build_id) == "running"
    assert stack.leaks(runtime, client) == []

    # Asleep past its lifetime, it is removed: container, port and URLs.
    gc(stack, "--sleep-after", "0")
    time.sleep(1.1)
    report = json.loads(run_cli("gc", "--json", env={**stack.env, "ORCHESTRATOR_SLEEP_LIFETIME": "1"}).stdout)
    assert ("stop preview", build_id) in [(a["action"], a["target"]) for a in report["actions"]]
    record = client.get(f"/api/builds/{build_id}").json()
    assert record["stopReason"] == "slept-out" and record["allocatedPort"] is None
    assert runtime.state(container) is None
    assert stack.through_gateway(url).status_code == 404


def test_the_website_url_follows_a_new_build_with_no_failed_request(
    stack: Stack, client: httpx.Client, runtime, tmp_path
) -> None:
    first = live(upload(client, [("v1.zip", static_site(tmp_path / "v1", "version one"))]))
    url = first["websiteUrl"]
    answers: list[tuple[int, str]] = []
    polling = threading.Event()

    def poll() -> None:
        while not polling.is_set():
            try:
                got = stack.through_gateway(url, timeout=10)
                answers.append((got.status_code, got.text))
            except httpx.HTTPError as exc:
                answers.append((0, repr(exc)))
            time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    second = client.post(
        "/api/websites",
        files=[("files", ("v2.zip", static_site(tmp_path / "v2", "version two")))],
        data={"websiteId": first["websiteId"]},
    )
    assert second.status_code == 202, second.text
    second_build = second.json()["website"]["buildJobId"]
    deadline = time.monotonic() + 120
    while status(client, first["jobId"]) != "stopped" and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    polling.set()
    poller.join(15)
    assert status(client, second_build) == "running" and status(client, first["jobId"]) == "stopped"
    failed = [(code, text[:200]) for code, text in answers if code != 200]
    assert failed == [], failed
    versions = [("version one" in text, "version two" in text) for _, text in answers]
    assert versions[0] == (True, False) and versions[-1] == (False, True), "it moved from one to two"
    assert len(answers) > 20
    # the old build's own URL went with it; the new one's answers
    assert stack.through_gateway(f"http://{first['jobId']}.b.preview.localhost/").status_code == 404
    build_url = client.get(f"/api/builds/{second_build}").json()["buildUrl"]
    assert "version two" in stack.through_gateway(build_url).text


def test_share_links_open_a_protected_preview_until_they_expire_or_are_revoked(
    stack: Stack, client: httpx.Client, tmp_path
) -> None:
    state = live(upload(client, [("shared.zip", static_site(tmp_path / "shared", "shared site"))]))
    website, url = state["websiteId"], state["websiteUrl"]
    assert client.get(f"/api/websites/{website}").json()["previewAccess"] == "open"  # on loopback
    changed = client.patch(f"/api/websites/{website}", json={"previewAccess": "protected"})
    assert changed.status_code == 200 and changed.json()["previewAccess"] == "protected"
    assert client.patch(f"/api/websites/{website}", json={"previewAccess": "secret"}).status_code == 400
    time.sleep(0.6)  # the gateway's cached route

    refused = stack.through_gateway(url)
    assert refused.status_code == 403 and "share link" in refused.text
    owner = client.headers["Authorization"]
    assert "shared site" in stack.through_gateway(url, headers={"Authorization": owner}).text
    stranger = stack.client("user", "stranger").headers["Authorization"]
    assert stack.through_gateway(url, headers={"Authorization": stranger}).status_code == 403

    made = client.post(f"/api/websites/{website}/share", json={})
    assert made.status_code == 201, made.text
    link = made.json()
    assert link["expiresAt"] is None and link["url"].startswith(url + "?share=")
    path = link["url"][len(url) :]
    opened = stack.through_gateway(url, path)
    assert opened.status_code == 302 and opened.headers["location"] == "/"
    cookie = opened.headers["set-cookie"].split(";")[0]
    assert cookie.startswith("wob_share=") and "HttpOnly" in opened.headers["set-cookie"]
    assert "shared site" in stack.through_gateway(url, headers={"Cookie": cookie}).text
    forged = cookie[:-3] + ("aaa" if not cookie.endswith("aaa") else "bbb")
    assert stack.through_gateway(url, headers={"Cookie": forged}).status_code == 403

    short = client.post(f"/api/websites/{website}/share", json={"expiresIn": 1}).json()
    assert short["expiresAt"] is not None
    time.sleep(2.1)
    expired = stack.through_gateway(url, short["url"][len(url) :])
    assert expired.status_code == 403 and "expired" in expired.text

    revoked = client.delete(f"/api/websites/{website}/share/{link['id']}")
    assert revoked.status_code == 200 and revoked.json()["revokedAt"]
    time.sleep(2.1)  # the gateway remembers a link's answer for 2 s
    gone = stack.through_gateway(url, headers={"Cookie": cookie})
    assert gone.status_code == 403 and "revoked" in gone.text
    assert client.delete(f"/api/websites/{website}/share/no-such-share").status_code == 404
    assert client.post(f"/api/websites/{website}/share", json={"expiresIn": 0}).status_code == 400


def all_at_once(stack: Stack, states: list[dict]) -> list[tuple[int, int, str]]:
    """GET each state's website URL through the gateway, all at once, each on its own
    connection: (index into the websites of ``states``, status, text) for each."""
    websites = list(dict.fromkeys(s["websiteUrl"] for s in states))

    async def run() -> list[tuple[int, int, str]]:
        limits = httpx.Limits(max_connections=len(states), max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:

            async def one(state: dict) -> tuple[int, int, str]:
                host = httpx.URL(state["websiteUrl"]).netloc.decode()
                got = await http.get(f"{stack.gateway}/", headers={"Host": host})
                return websites.index(state["websiteUrl"]), got.status_code, got.text

            return await asyncio.gather(*(one(state) for state in states))

    return asyncio.run(run())


def test_twenty_previews_under_200_connections_then_woken_at_once(
    stack: Stack, client: httpx.Client, runtime, tmp_path
) -> None:
    sites = [
        upload(client, [(f"site{i}.zip", static_site(tmp_path / f"s{i}", f"preview number {i}"))])
        for i in range(20)
    ]
    states = [live(site) for site in sites]

    answers = all_at_once(stack, [states[i % 20] for i in range(200)])
    assert [(i, code) for i, code, _ in answers if code != 200] == []
    assert all(f"preview number {i}<" in text for i, _, text in answers)
    time.sleep(1.5)  # the gateway adds its counts to Redis every second
    from redis import Redis

    redis = Redis.from_url(redis_test_url(2))
    for state in states:
        counted = redis.hgetall(f"website-orchestrator:traffic:{state['jobId']}")
        assert int(counted[b"requests"]) >= 10 and int(counted[b"bytesOut"]) > 0
    redis.close()

    slept = gc(stack, "--sleep-after", "0")
    assert sum(a["action"] == "sleep preview" for a in slept["actions"]) >= 20
    assert all(status(client, s["jobId"]) == "sleeping" for s in states)

    woken = all_at_once(stack, states)
    assert [(i, code) for i, code, text in woken if code != 200 or f"preview number {i}<" not in text] == []
    assert all(status(client, s["jobId"]) == "running" for s in states)
    assert stack.leaks(runtime, client) == []


def hmr_token(stack: Stack, url: str) -> str:
    client_js = stack.through_gateway(url, "@vite/client").text
    found = re.search(r'const wsToken = "([^"]+)"', client_js)
    assert found, "Vite's client carries its websocket token"
    return found[1]


def next_update(ws, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message["type"] in ("update", "full-reload"):
            return message


def edit_check(client: httpx.Client, build_id: str, edit: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check = client.get(f"/api/builds/{build_id}/status").json()["editCheck"]
        if check and check["edit"] == edit and check["status"] != "running":
            return check
        time.sleep(0.2)
    raise AssertionError(f"the type check of edit {edit} did not end in {timeout} s")


def test_live_edits_reach_the_preview_as_hmr_updates_and_are_type_checked_after(
    stack: Stack, client: httpx.Client, templates: Path, tmp_path: Path
) -> None:
    project = tmp_path / "vanilla-ts"
    shutil.copytree(templates / "template-vanilla-ts", project)
    state = live(upload(client, [("vanilla-ts.zip", zip_dir(project))]))
    website, build_id, url = state["websiteId"], state["jobId"], state["websiteUrl"]
    host = httpx.URL(url).netloc.decode()
    sock = socket.create_connection(("127.0.0.1", stack.gateway_port))
    counter = (project / "src" / "counter.ts").read_text()
    with connect(
        f"ws://{host}/?token={hmr_token(stack, url)}", sock=sock, subprotocols=["vite-hmr"], open_timeout=20
    ) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "connected"
        edited = counter.replace("Count is", "clicked")
        assert edited != counter
        answer = client.patch(
            f"/api/websites/{website}/files", files=[("files", ("src/counter.ts", edited.encode()))]
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["edit"] == 1 and answer.json()["typeCheck"] == "running"
        update = next_update(ws)
        assert update["type"] == "full-reload" or any(
            u["path"].endswith("counter.ts") for u in update["updates"]
        )
        assert "clicked" in stack.through_gateway(url, "src/counter.ts").text
        assert edit_check(client, build_id, 1)["status"] == "passed"

        broken = edited + '\nexport const wrong: number = "not a number"\n'
        answer = client.patch(
            f"/api/websites/{website}/files", files=[("files", ("src/counter.ts", broken.encode()))]
        )
        assert answer.status_code == 200 and answer.json()["edit"] == 2
        next_update(ws)
        check = edit_check(client, build_id, 2)
        assert check["status"] == "failed" and any("TS2322" in line for line in check["errors"]), check
    assert stack.through_gateway(url).status_code == 200  # marked, not taken down
    assert client.get(f"/api/builds/{build_id}").json()["status"] == "running"

    refused = client.patch(f"/api/websites/{website}/files", files=[("files", ("package.json", b"{}"))])
    assert refused.status_code == 409 and "upload a new version" in refused.json()["detail"]
    assert client.patch(f"/api/websites/{website}/files", data={"delete": ["no/such.ts"]}).status_code == 400
    assert client.patch(f"/api/websites/{website}/files", data={}).status_code == 400

    # The edits are the website's newest version: its files say so, and `push` sends only
    # what differs from them (here: a file changed back, one added, one deleted).
    files = client.get(f"/api/websites/{website}/files").json()["files"]
    assert files["src/counter.ts"] == hashlib.sha256(broken.encode()).hexdigest()
    (project / "src" / "extra.ts").write_text("export const extra = 1\n")
    (project / "public" / "icons.svg").unlink()
    pushed = run_cli("push", str(project), "--website", website, env={**stack.env, **push_env(stack, client)})
    said = pushed.stdout + pushed.stderr
    assert "changed src/counter.ts" in said and "changed src/extra.ts" in said
    assert "deleted public/icons.svg" in said and "Edit 3 applied" in said
    files = client.get(f"/api/websites/{website}/files").json()["files"]
    assert files["src/counter.ts"] == hashlib.sha256(counter.encode()).hexdigest()
    assert "src/extra.ts" in files and "public/icons.svg" not in files
    assert (
        stack.through_gateway(url, "vite.svg").status_code == 404
        or "<svg" not in stack.through_gateway(url, "vite.svg").text
    )
    again = run_cli("push", str(project), "--website", website, env={**stack.env, **push_env(stack, client)})
    assert "Nothing changed" in again.stdout + again.stderr
    assert edit_check(client, build_id, 3)["status"] == "passed"

    # A sleeping preview is woken by an edit, and takes it.
    gc(stack, "--sleep-after", "0")
    assert status(client, build_id) == "sleeping"
    answer = client.patch(
        f"/api/websites/{website}/files", files=[("files", ("src/counter.ts", edited.encode()))]
    )
    assert answer.status_code == 200 and status(client, build_id) == "running"
    assert "clicked" in stack.through_gateway(url, "src/counter.ts").text


def push_env(stack: Stack, client: httpx.Client) -> dict[str, str]:
    return {"ORCHESTRATOR_URL": stack.url, "ORCHESTRATOR_TOKEN": client.headers["Authorization"][7:]}
