"""Real builds end to end: upload → RQ worker → one container → live preview.

All the projects are uploaded at once (the module fixture) and built side by side by the
test stack's workers; each test then waits for its own build.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.integration.conftest import Watched, upload, vite_project, zip_dir

pytestmark = pytest.mark.integration

STATIC_INDEX = (
    b"<!doctype html><html><body><h1>Plain static site</h1><script src='app.js'></script></body></html>"
)


def _react_ts(templates: Path, tmp_path: Path, name: str) -> Path:
    project = tmp_path / name
    shutil.copytree(templates / "template-react-ts", project)
    return project


@pytest.fixture(scope="module")
def builds(
    admin: httpx.Client, templates: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Watched]:
    tmp = tmp_path_factory.mktemp("projects")
    good = _react_ts(templates, tmp, "good")

    typo = _react_ts(templates, tmp, "type-error")
    app = typo / "src" / "App.tsx"
    app.write_text(app.read_text() + '\nexport const broken: number = "not a number"\n')

    missing = vite_project(
        tmp / "missing-dep", "missing-dep", dependencies={"wob-no-such-package-4242": "1.0.0"}
    )
    hungry = vite_project(
        tmp / "out-of-memory",
        "out-of-memory",
        scripts={"preinstall": 'node -e "const a=[];for(;;)a.push(Buffer.alloc(32*1024*1024,1))"'},
    )

    static = tmp / "static"
    (static / "css").mkdir(parents=True)
    (static / "index.html").write_bytes(STATIC_INDEX)
    (static / "app.js").write_text("console.log('hello')")
    (static / "css" / "site.css").write_text("h1 { color: teal }")

    return {
        "react-ts": upload(admin, [("react-ts.zip", zip_dir(good))]),
        "type-error": upload(admin, [("broken.zip", zip_dir(typo))]),
        "missing-dep": upload(admin, [("missing.zip", zip_dir(missing))]),
        "oom": upload(admin, [("hungry.zip", zip_dir(hungry))]),
        "static-zip": upload(admin, [("site.zip", zip_dir(static, prefix="my-site/"))]),
        "static-folder": upload(
            admin,
            [
                (f.relative_to(static).as_posix(), f.read_bytes())
                for f in sorted(static.rglob("*"))
                if f.is_file()
            ],
            name="folder upload",
        ),
    }


def test_react_ts_goes_live(builds: dict[str, Watched], runtime) -> None:
    build = builds["react-ts"]
    final = build.wait()
    assert final["status"] == "running", final
    statuses = [h["status"] for h in build.history]
    seen = [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]
    assert seen[-2:] == ["building", "running"] and seen[0] in ("queued", "building")
    progress = [h["progress"] for h in build.history]
    assert progress == sorted(progress), "progress must only rise"
    assert progress[-1] == 100 and final["currentStep"] == "Ready"

    page = httpx.get(final["previewUrl"], timeout=10)
    assert page.status_code == 200 and '<div id="root">' in page.text
    module = httpx.get(final["previewUrl"] + "src/main.tsx", timeout=30)
    assert module.status_code == 200
    assert "javascript" in module.headers["content-type"]
    assert "jsxDEV" in module.text and "/node_modules/.vite/deps/react" in module.text  # transformed

    record = build.record()
    assert set(record["steps"]) == {"extract", "install", "typecheck", "serve"}
    # (its dependencies may come from the cache, filled by a build of the same dependencies)
    assert record["steps"]["install"]["status"] in ("ok", "cached")
    assert all(step["status"] in ("ok", "cached") and step["endedAt"] for step in record["steps"].values())
    assert any("tsc -b" in line for line in record["logs"])
    limits = runtime.limits(record_container(record, runtime))
    assert limits["memory"] == 512 * 1024 * 1024
    assert limits["nano_cpus"] == 250_000_000
    assert limits["pids_limit"] > 0


def record_container(record: dict, runtime) -> str:
    ours = [
        c for c in runtime.list_ours() if c["Labels"].get("org.website-orchestrator.build-id") == record["id"]
    ]
    assert len(ours) == 1, ours
    assert ours[0]["Labels"]["org.website-orchestrator.website-id"] == record["websiteId"]
    return ours[0]["Id"]


def test_upload_answers_before_the_build_runs(builds: dict[str, Watched]) -> None:
    build = builds["react-ts"]
    assert build.response["website"]["status"] == "queued"
    assert build.response["website"]["type"] == "vite"
    build.wait()
    install_started = datetime.fromisoformat(build.record()["steps"]["install"]["startedAt"])
    assert build.received_at < install_started.timestamp()


def test_hot_reload_works_through_the_preview_url(builds: dict[str, Watched], runtime) -> None:
    final = builds["react-ts"].wait()
    port = int(final["previewUrl"].rstrip("/").rsplit(":", 1)[1])
    client_js = httpx.get(final["previewUrl"] + "@vite/client", timeout=10).text
    token = re.search(r'const wsToken = "([^"]+)"', client_js)
    assert token, "Vite's client carries its websocket token"
    with connect(
        f"ws://localhost:{port}/?token={token[1]}", subprotocols=["vite-hmr"], open_timeout=10
    ) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "connected"
        container = record_container(builds["react-ts"].record(), runtime)
        code, out = runtime.exec(container, ["sh", "-c", "echo '/* edited */' >> /app/src/App.tsx"])
        assert code == 0, out
        while True:
            message = json.loads(ws.recv(timeout=20))
            if message["type"] == "update":
                break
        assert any(u["path"].endswith("App.tsx") for u in message["updates"])


def test_type_error_fails_at_type_checking(builds: dict[str, Watched], runtime) -> None:
    final = builds["type-error"].wait()
    assert final["status"] == "failed"
    record = builds["type-error"].record()
    assert record["errorStep"] == "typecheck"
    assert final["error"].startswith("type checking failed")
    assert "src/App.tsx" in final["error"] and "TS2322" in final["error"]
    assert any("src/App.tsx" in line and "error TS2322" in line for line in final["logs"])
    assert record["allocatedPort"] is None
    assert not [
        c for c in runtime.list_ours() if c["Labels"]["org.website-orchestrator.build-id"] == record["id"]
    ]


def test_missing_dependency_fails_at_install_with_npms_message(builds: dict[str, Watched]) -> None:
    final = builds["missing-dep"].wait()
    assert final["status"] == "failed"
    assert builds["missing-dep"].record()["errorStep"] == "install"
    assert final["error"].startswith("installing dependencies failed")
    assert "404" in final["error"] and "wob-no-such-package-4242" in final["error"]


def test_out_of_memory_is_reported_as_such(builds: dict[str, Watched]) -> None:
    final = builds["oom"].wait()
    assert final["status"] == "failed"
    assert "ran out of memory (512 MB limit)" in final["error"] or "exit code 137" in final["error"], final


def test_static_sites_go_live_side_by_side_on_their_own_ports(builds: dict[str, Watched]) -> None:
    zipped, folder = builds["static-zip"].wait(), builds["static-folder"].wait()
    assert zipped["status"] == folder["status"] == "running", (zipped, folder)
    assert zipped["previewUrl"] != folder["previewUrl"]
    for final in (zipped, folder):
        assert "Plain static site" in httpx.get(final["previewUrl"], timeout=10).text
        assert "teal" in httpx.get(final["previewUrl"] + "css/site.css", timeout=10).text
    assert builds["static-zip"].response["website"]["type"] == "static"
    assert builds["static-folder"].response["website"]["name"] == "folder upload"
    steps = builds["static-folder"].record()["steps"]
    assert steps["install"]["status"] == steps["typecheck"]["status"] == "skipped"


def test_the_preview_works_in_a_real_browser(builds: dict[str, Watched]) -> None:
    from playwright.sync_api import sync_playwright

    from tests.integration.conftest import ARTIFACTS, chromium_path

    final = builds["react-ts"].wait()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(final["previewUrl"])
        button = page.locator("#root button").first
        button.wait_for(timeout=30_000)
        button.click()
        assert "Count is 1" in page.inner_text("#root")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "react-ts-preview.png")
        browser.close()


def test_a_rebuild_is_given_an_estimate_from_the_first_builds_steps(
    builds: dict[str, Watched], admin: httpx.Client
) -> None:
    import threading
    import time

    first = builds["react-ts"]
    assert first.wait()["status"] == "running"
    started = time.time()
    response = admin.post(f"/api/websites/{first.website_id}/rebuild")
    assert response.status_code == 202, response.text
    job = response.json()["website"]["buildJobId"]
    assert job != first.job_id
    rebuilt = Watched(admin, first.website_id, job, response.json(), time.time())
    threading.Thread(target=rebuilt.follow, args=(300,), daemon=True).start()
    final = rebuilt.wait()
    took = time.time() - started
    assert final["status"] == "running", final
    estimates = [
        h["estimatedTimeRemaining"] for h in rebuilt.history if h["status"] in ("queued", "building")
    ]
    assert estimates and estimates[0] is not None and estimates[0] > 0  # known before any step ran
    assert all(e is None or e >= 0 for e in estimates), estimates
    # How close it comes is a measurement, not a test's claim (timings vary with the machine's load).
    print(f"rebuild: estimated {estimates[0]:.1f} s at the start, took {took:.1f} s")
    assert admin.get(f"/api/websites/{first.website_id}").json()["buildJobId"] == job
