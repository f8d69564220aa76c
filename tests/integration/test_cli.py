"""`orchestrator submit`, `status` and `logs` against the real API."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import make_token, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cli_env(api_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "ORCHESTRATOR_URL": api_url,
        "ORCHESTRATOR_TOKEN": make_token("user", "cli"),
        "COLUMNS": "120",
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env, check=False)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "site" / "node_modules" / "junk").mkdir(parents=True)
    (tmp_path / "site" / "index.html").write_text("<h1>from the command line</h1>")
    (tmp_path / "site" / "node_modules" / "junk" / "big.js").write_text("x" * 100_000)
    return tmp_path / "site"


def test_submit_follows_the_build_and_ends_with_the_preview_url(cli_env, site: Path) -> None:
    done = cli(cli_env, "submit", str(site), "--name", "cli site")
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip().splitlines()[-1]
    assert url.startswith("http://localhost:")
    assert "from the command line" in httpx.get(url, timeout=10).text
    assert "Uploaded cli site (static" in done.stderr
    assert "Preview live at" in done.stderr  # the log lines, streamed


def test_submit_json_status_and_logs(cli_env, site: Path) -> None:
    done = cli(cli_env, "submit", str(site), "--json")
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)
    assert final["status"] == "running" and final["previewUrl"]

    shown = cli(cli_env, "status", final["jobId"])
    assert shown.returncode == 0 and "running" in shown.stdout and final["previewUrl"] in shown.stdout
    listed = cli(cli_env, "status", "--json")
    assert final["jobId"] in [w["buildJobId"] for w in json.loads(listed.stdout)]
    log = cli(cli_env, "logs", final["jobId"])
    assert "Preview live at" in log.stdout
    followed = cli(cli_env, "logs", final["jobId"], "--follow")
    assert followed.returncode == 0 and "Preview live at" in followed.stdout


def test_a_failed_build_exits_non_zero_with_the_error(cli_env, tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(
        json.dumps({"devDependencies": {"vite": "^8", "wob-nope-31337": "1"}})
    )
    done = cli(cli_env, "submit", str(tmp_path))
    assert done.returncode == 1
    assert "Build failed" in done.stderr and "wob-nope-31337" in done.stderr


def test_bad_input_is_a_clear_error(cli_env, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    done = cli(cli_env, "submit", str(tmp_path))
    assert done.returncode == 1 and "400" in done.stderr and "index.html" in done.stderr
    missing = cli({**cli_env, "ORCHESTRATOR_TOKEN": ""}, "submit", str(tmp_path))
    assert missing.returncode == 1 and "no token" in missing.stderr


def test_the_system_status_checks_every_part_and_exits_zero_when_builds_can_run(cli_env) -> None:
    result = cli(cli_env, "status", "--system", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["status"] == "ok" and found["down"] == [] and found["workers"]
    table = cli(cli_env, "status", "--system")
    assert table.returncode == 0 and "workers" in table.stdout and "database" in table.stdout


def test_the_system_status_of_an_unreachable_service_is_a_clear_error(cli_env) -> None:
    result = cli({**cli_env, "ORCHESTRATOR_URL": "http://127.0.0.1:9"}, "status", "--system")
    assert result.returncode == 1 and "cannot reach the API at http://127.0.0.1:9" in result.stderr


def test_names_and_logs_print_as_written_never_as_markup_or_control_sequences(
    cli_env, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<h1>escaped</h1>")
    name = "[/bold] site \x1b[2J"
    done = cli(cli_env, "submit", str(tmp_path), "--name", name)
    assert done.returncode == 0, done.stderr
    assert "Uploaded [/bold] site" in done.stderr and "\x1b[2J" not in done.stderr
    listed = cli(cli_env, "status")  # "[/bold]" read as markup would crash it
    assert listed.returncode == 0, listed.stderr
    assert "[/bold] site" in listed.stdout and "\x1b[2J" not in listed.stdout
