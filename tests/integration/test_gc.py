"""`orchestrator gc` against real containers and records."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orchestrator.adapters.runtime import labels
from orchestrator.core import defaults
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration


def gc(*args: str) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "gc", "--json", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return json.loads(out)["actions"]


def test_orphan_containers_and_stray_ports_are_collected(ctx, runtime, api_url) -> None:
    settings = ctx.settings
    orphan = runtime.client.containers.create(
        settings.node_image,
        command=["sleep", "600"],
        labels=labels(settings, build_id="no-such-build", website_id="no-such-site"),
    )
    pool = ctx.port_pool()
    stray = pool.allocate("no-such-build")
    try:
        planned = gc("--dry-run")
        assert any(
            a["action"] == "remove container"
            and a["target"] == orphan.id[:12]
            and a["reason"] == "no live build owns it"
            for a in planned
        )
        assert any(a["action"] == "free port" and a["target"] == str(stray) for a in planned)
        assert runtime.state(orphan.id) is not None and pool.store.owner(stray) == "no-such-build"

        done = gc()
        assert any(a["target"] == orphan.id[:12] for a in done)
        assert runtime.state(orphan.id) is None
        assert pool.store.owner(stray) is None
        assert not any(a["target"] == orphan.id[:12] for a in gc())  # a second run finds nothing more
    finally:
        runtime.remove(orphan.id)
        pool.release(stray, "no-such-build")


def test_gc_leaves_live_previews_alone(runtime, admin) -> None:
    from tests.integration.conftest import upload

    site = upload(admin, [("index.html", b"<h1>keep me</h1>")])
    assert site.wait()["status"] == "running"
    done = gc()
    assert not any(a["target"] in (site.job_id,) for a in done)
    ours = [
        c for c in runtime.list_ours() if c["Labels"][f"{defaults.LABEL_NAMESPACE}.build-id"] == site.job_id
    ]
    assert len(ours) == 1 and ours[0]["State"] == "running"
