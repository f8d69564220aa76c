"""Health says whether builds can run, and names what is down (over the in-memory context)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.main import create_app
from orchestrator.adapters.memory_runtime import MemoryRuntime
from orchestrator.context import Context
from orchestrator.service.health import check_health


def test_without_a_live_worker_builds_cannot_run(ctx: Context) -> None:
    health = check_health(ctx)
    assert not health.ok and health.down == ["workers"]
    assert "no build worker is running" in health.as_dict()["checks"]["workers"]["detail"]  # type: ignore[index]


def test_with_a_worker_seen_every_part_is_up(ctx: Context) -> None:
    ctx.stores.signals.worker_seen("worker-1")
    health = check_health(ctx)
    assert health.ok and health.down == []
    summary = health.as_dict()
    assert summary["status"] == "ok" and list(summary["workers"]) == ["worker-1"]  # type: ignore[call-overload]


def test_a_down_engine_is_named(ctx: Context) -> None:
    ctx.stores.signals.worker_seen("worker-1")
    assert isinstance(ctx.runtime, MemoryRuntime)
    ctx.runtime.available = False
    health = check_health(ctx)
    assert health.down == ["docker"] and "engine is down" in health.checks[2].detail


def test_a_missing_build_image_is_named(ctx: Context) -> None:
    ctx.stores.signals.worker_seen("worker-1")
    assert ctx.runtime.remove_image(ctx.settings.node_image)
    assert "missing" in check_health(ctx).checks[2].detail


def test_a_worker_not_seen_for_long_is_gone(ctx: Context) -> None:
    ctx.stores.signals.worker_seen("old")
    ctx.stores.signals._seen["old"] -= 60  # type: ignore[attr-defined]
    assert ctx.stores.signals.workers() == {}


def test_the_health_route_answers_503_naming_what_is_down(ctx: Context) -> None:
    with TestClient(create_app(ctx)) as client:
        down = client.get("/api/health")
        assert down.status_code == 503 and down.json()["down"] == ["workers"]
        ctx.stores.signals.worker_seen("worker-1")
        up = client.get("/api/health")
    assert up.status_code == 200 and up.json()["status"] == "ok"
    assert set(up.json()["checks"]) == {"database", "redis", "docker", "workers"}


def test_metrics_count_builds_waits_and_retries(ctx: Context) -> None:
    import io

    from prometheus_client.parser import text_string_to_metric_families
    from sqlmodel import select

    from orchestrator.service.auth import Role
    from orchestrator.state.models import BuildJob
    from tests.unit.conftest import site_zip, token

    admin_token = token(ctx, Role.ADMIN, "root")[1]
    with TestClient(create_app(ctx)) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        for _ in range(2):
            upload = {"files": ("s.zip", io.BytesIO(site_zip()), "application/zip")}
            client.post("/api/websites", files=upload)
        with ctx.session() as session:
            first = session.exec(select(BuildJob)).first()
            assert first is not None
            first.attempts, first.wait_reason = 3, "waiting for a free preview port (all 5 ports in use)"
        text = client.get("/metrics").text
        user = token(ctx, Role.USER, "alice")[1]
        client.headers["Authorization"] = f"Bearer {user}"
        assert client.get("/metrics").status_code == 403
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("orchestrator_builds", (("status", "queued"),))] == 2
    assert samples[("orchestrator_queue_waiting", ())] == 2
    assert samples[("orchestrator_queued_builds", (("reason", "ports"),))] == 1
    assert samples[("orchestrator_build_retries_total", ())] == 2
    assert samples[("orchestrator_previews_live", ())] == 0


def test_wait_reasons_become_kinds() -> None:
    from orchestrator.service.metrics import wait_kind

    assert wait_kind("waiting for a free build slot (2 of 2 in use)") == "slots"
    assert wait_kind("waiting for resources: CPU 97% busy") == "resources"
    assert wait_kind("waiting for disk space: 512 MB free on /data") == "disk"
    assert wait_kind(None) == "admission"
    assert wait_kind("something new") == "other"
