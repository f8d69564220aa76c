"""Hosts on the main stack: its workers register their engine as a host, builds say where they
ran and why, and admins list the hosts over the API and with `orchestrator hosts`."""

from __future__ import annotations

import json

import httpx
import pytest

from orchestrator.config import Settings
from tests.integration.conftest import api_client, make_token, run_cli
from tests.integration.test_lifecycle import live_site

pytestmark = pytest.mark.integration


def test_the_workers_host_is_listed_with_its_previews_and_builds_say_where_they_ran(
    admin: httpx.Client, api_url: str
) -> None:
    build = live_site(admin, "<h1>where am I</h1>")
    host = Settings().host  # the main stack's workers run on this machine's engine, unnamed
    logs = admin.get(f"/api/builds/{build['id']}").json()["logs"]
    (line,) = [line for line in logs if line.startswith("Host: ")]
    assert line.startswith(f"Host: {host}: this host had room")

    answer = admin.get("/api/hosts")
    assert answer.status_code == 200, answer.text
    (listed,) = [h for h in answer.json() if h["id"] == host]
    assert listed["state"] == "live" and listed["address"] == "127.0.0.1"
    assert listed["engine"].startswith("unix://") and listed["cpus"] >= 1 and listed["memoryBytes"] > 0
    assert listed["portRange"] == [42000, 42199] and listed["running"] >= 1

    shown = json.loads(run_cli("hosts", "--json").stdout)
    (same,) = [h for h in shown if h["id"] == host]
    assert same["state"] == "live" and same["portRange"] == listed["portRange"]
    assert run_cli("hosts").stdout.count(host) == 1


def test_only_admins_see_the_hosts(api_url: str) -> None:
    with api_client(api_url, make_token("user", "not an admin")) as user:
        answer = user.get("/api/hosts")
    assert answer.status_code == 403 and "admins" in answer.json()["detail"]
