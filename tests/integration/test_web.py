"""The web page in a real browser (Debian's Chromium driven by Playwright): sign in, upload
through the page, watch the build live, see the preview in its frame or the failure panel."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.integration.conftest import ARTIFACTS, chromium_path, make_token, zip_dir

pytestmark = pytest.mark.integration

SHOTS = ARTIFACTS / "screenshots"
BUILD_TIMEOUT = 240_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def token(api_url: str) -> str:
    return make_token("user", "web tests")


def signed_in(browser: Browser, api_url: str, token: str, width: int = 1100) -> Page:
    page = browser.new_page(viewport={"width": width, "height": 1300})
    page.goto(api_url + "/")
    page.fill("#token", token)
    page.click("button[type=submit]")
    expect(page.locator("#drop")).to_be_visible()
    return page


def what_the_preview_answers(page: Page, url: str) -> str:
    """Why the frame shows nothing: what it holds, and what the preview answers outside the browser."""
    frame = page.frame_locator("#b-frame").locator("body")
    try:
        held = frame.inner_html(timeout=2_000)[:500]
    except Exception as error:  # noqa: BLE001 - a diagnostic, any answer will do
        held = f"(unreadable: {error})"
    try:
        answer = httpx.get(url, timeout=10, trust_env=False)
        direct = f"{answer.status_code} {answer.text[:300]!r}"
    except httpx.HTTPError as error:
        direct = f"no answer: {error!r}"
    src = page.get_attribute("#b-frame", "src")
    return f"frame src {src!r} holds {held!r}; GET {url} outside the browser: {direct}"


def test_a_wrong_token_is_refused_with_a_message(browser: Browser, api_url: str) -> None:
    page = browser.new_page()
    page.goto(api_url + "/")
    page.fill("#token", "wob_wrong")
    page.click("button[type=submit]")
    expect(page.locator("#sign-in-error")).to_contain_text("not accepted")
    page.close()


def test_upload_a_zip_and_watch_it_go_live(
    browser: Browser, api_url: str, token: str, templates: Path, tmp_path: Path
) -> None:
    project = tmp_path / "react-ts"
    shutil.copytree(templates / "template-react-ts", project)
    package = json.loads((project / "package.json").read_text())
    package["dependencies"]["is-number"] = "7.0.0"  # dependencies of its own: a cache miss, installed live
    (project / "package.json").write_text(json.dumps(package, indent=2))
    archive = tmp_path / "react-ts.zip"
    archive.write_bytes(zip_dir(project))
    page = signed_in(browser, api_url, token)
    page.set_input_files("#pick-zip", archive)
    expect(page.locator("#b-name")).to_have_text("vite-react-typescript-starter")
    expect(page.locator("#b-step")).to_contain_text("Installing dependencies", timeout=60_000)
    page.screenshot(path=SHOTS / "build-in-progress.png")
    expect(page.locator("#b-bar")).to_have_attribute("style", "width: 100%;", timeout=BUILD_TIMEOUT)
    expect(page.locator("#b-badge")).to_have_text("running")
    preview_url = page.get_attribute("#b-link", "href") or ""
    try:
        expect(page.frame_locator("#b-frame").locator("text=Get started")).to_be_visible(timeout=30_000)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{what_the_preview_answers(page, preview_url)}") from None
    expect(page.locator("#b-log")).to_contain_text("Preview live at")
    assert "\x1b[" not in page.inner_text("#b-log")
    page.screenshot(path=SHOTS / "build-success.png", full_page=True)

    page.goto(api_url + "/#/")
    expect(page.locator("#sites")).to_contain_text("vite-react-typescript-starter")
    expect(page.locator("#sites .badge").first).to_have_text("running")
    page.close()


def test_a_type_error_shows_the_failure_panel_with_the_compiler_message(
    browser: Browser, api_url: str, token: str, templates: Path, tmp_path: Path
) -> None:
    project = tmp_path / "broken"
    shutil.copytree(templates / "template-react-ts", project)
    app = project / "src" / "App.tsx"
    app.write_text(app.read_text() + '\nexport const broken: number = "not a number"\n')
    page = signed_in(browser, api_url, token)
    page.set_input_files("#pick-folder", project)  # a whole folder, as the folder picker sends it
    panel = page.locator("#b-failure")
    expect(panel).to_be_visible(timeout=BUILD_TIMEOUT)
    expect(page.locator("#b-failure-title")).to_have_text("Build failed while type checking")
    expect(page.locator("#b-error")).to_contain_text("src/App.tsx")
    expect(page.locator("#b-error")).to_contain_text("TS2322")
    expect(page.locator("#b-failure-lines")).to_contain_text("error TS2322")
    page.screenshot(path=SHOTS / "build-failure.png", full_page=True)
    page.close()


def test_the_page_fits_a_narrow_screen(browser: Browser, api_url: str, token: str) -> None:
    page = signed_in(browser, api_url, token, width=390)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    page.screenshot(path=SHOTS / "home-narrow.png", full_page=True)
    page.close()
