"""The website use cases and the dispatcher round over the in-memory context: uploads, queueing,
supersede, cancel, delete, admission and recovery, each in milliseconds."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest

from orchestrator.context import Context
from orchestrator.core.exceptions import InvalidTransition, InvalidUpload, NotFound
from orchestrator.core.status import EventType, Status
from orchestrator.scheduling.dispatcher import dispatch_round, recover_lost
from orchestrator.scheduling.queue import MemoryJobs, reconcile
from orchestrator.service.auth import Role
from orchestrator.service.lookups import get_build, get_website
from orchestrator.service.removal import cancel_build, delete_website
from orchestrator.service.submissions import create_website
from orchestrator.state.models import ApiToken, BuildJob, utcnow
from tests.unit.conftest import record, site_zip, token

IDLE = (10.0, 10.0)
"""The host's memory and CPU use (%) the dispatcher is told: plenty of room."""


def upload(ctx: Context, owner: ApiToken, files: dict[str, str] | None = None, **kwargs):
    with ctx.session() as session:
        return create_website(ctx, session, owner, [("site.zip", io.BytesIO(site_zip(files)))], **kwargs)


def test_an_upload_is_recorded_queued_and_waiting(ctx: Context, alice: ApiToken) -> None:
    website, build = upload(ctx, alice)
    assert build.status == Status.QUEUED and website.type == "static" and website.name == "site"
    assert ctx.stores.admission.waiting() == [build.id]
    assert (ctx.settings.uploads_dir / f"{build.id}.zip").exists()
    (event,) = ctx.stores.events.read(build.id)
    assert event.type == EventType.STATUS and event.data["status"] == "queued"


def test_a_refused_upload_leaves_nothing(ctx: Context, alice: ApiToken) -> None:
    with pytest.raises(InvalidUpload), ctx.session() as session:
        create_website(ctx, session, alice, [("site.zip", io.BytesIO(b"not a zip"))])
    assert ctx.stores.admission.waiting() == []
    assert not list(ctx.settings.uploads_dir.glob("*.zip"))


def test_a_new_version_supersedes_the_waiting_one(ctx: Context, alice: ApiToken) -> None:
    website, first = upload(ctx, alice)
    _, second = upload(ctx, alice, website_id=website.id)
    old = record(ctx, first.id)
    assert (
        old.status == Status.CANCELLED and old.cancelled_by == f"a newer build of this website ({second.id})"
    )
    assert ctx.stores.admission.waiting() == [second.id]


def test_a_queued_build_is_cancelled_at_once(ctx: Context, alice: ApiToken) -> None:
    _, build = upload(ctx, alice)
    with ctx.session() as session:
        cancelled = cancel_build(ctx, session, alice, build.id)
    assert cancelled.status == Status.CANCELLED and cancelled.cancelled_by == "alice"
    assert ctx.stores.admission.waiting() == []


def test_a_finished_build_cannot_be_cancelled(ctx: Context, alice: ApiToken) -> None:
    _, build = upload(ctx, alice)
    with ctx.session() as session:
        cancel_build(ctx, session, alice, build.id)
    with pytest.raises(InvalidTransition), ctx.session() as session:
        cancel_build(ctx, session, alice, build.id)


def test_a_building_build_is_asked_to_stop(ctx: Context, alice: ApiToken) -> None:
    _, build = upload(ctx, alice)
    with ctx.session() as session:
        session.get(BuildJob, build.id).status = Status.BUILDING  # type: ignore[union-attr]
    with ctx.session() as session:
        still = cancel_build(ctx, session, alice, build.id, wait_seconds=0)
    assert still.status == Status.BUILDING
    assert ctx.stores.signals.cancel_requested(build.id) == "alice"


def test_another_users_website_is_not_found(ctx: Context, alice: ApiToken) -> None:
    website, build = upload(ctx, alice)
    bob = token(ctx, Role.USER, "bob")[0]
    with ctx.session() as session:
        with pytest.raises(NotFound):
            get_website(session, bob, website.id)
        with pytest.raises(NotFound):
            get_build(session, bob, build.id)


def test_an_admin_sees_every_website(ctx: Context, alice: ApiToken) -> None:
    website, _ = upload(ctx, alice)
    admin = token(ctx, Role.ADMIN, "root")[0]
    with ctx.session() as session:
        assert get_website(session, admin, website.id).id == website.id


def test_deleting_a_website_cancels_its_builds_and_removes_its_files(ctx: Context, alice: ApiToken) -> None:
    website, build = upload(ctx, alice)
    with ctx.session() as session:
        done = delete_website(ctx, session, alice, website.id)
    assert done.cancelled == [build.id] and done.files_removed == 1
    assert not (ctx.settings.uploads_dir / f"{build.id}.zip").exists()
    with pytest.raises(NotFound), ctx.session() as session:
        get_website(session, alice, website.id)


# -- the dispatcher round ------------------------------------------------------------


def test_the_round_admits_the_next_build_and_hands_it_to_rq(ctx: Context, alice: ApiToken) -> None:
    _, build = upload(ctx, alice)
    jobs = MemoryJobs()
    assert dispatch_round(ctx, jobs, IDLE) == build.id
    assert jobs.started == [(build.id, 1)]
    assert record(ctx, build.id).attempts == 1
    assert ctx.stores.admission.active() == {build.id: str(alice.id)}


def test_the_round_waits_while_an_admitted_build_is_not_taken(ctx: Context, alice: ApiToken) -> None:
    upload(ctx, alice)
    upload(ctx, alice)
    jobs = MemoryJobs()
    assert dispatch_round(ctx, jobs, IDLE) is not None
    assert dispatch_round(ctx, jobs, IDLE) is None
    jobs.taken = 1
    assert dispatch_round(ctx, jobs, IDLE) is not None


def test_a_busy_host_makes_builds_wait_with_the_reason(ctx: Context, alice: ApiToken) -> None:
    _, build = upload(ctx, alice)
    assert dispatch_round(ctx, MemoryJobs(), (99.0, 10.0)) is None
    assert "waiting for resources" in (record(ctx, build.id).wait_reason or "")


def test_the_per_user_limit_is_explained(ctx: Context, alice: ApiToken) -> None:
    ctx.settings.max_building_per_user = 1
    upload(ctx, alice)
    _, second = upload(ctx, alice, name="other")
    jobs = MemoryJobs()
    dispatch_round(ctx, jobs, IDLE)
    jobs.taken = 1
    assert dispatch_round(ctx, jobs, IDLE) is None
    assert "per-user limit" in (record(ctx, second.id).wait_reason or "")


def test_a_cancelled_build_admitted_meanwhile_frees_its_slot(ctx: Context, alice: ApiToken) -> None:
    _, build = upload(ctx, alice)
    with ctx.session() as session:
        cancel_build(ctx, session, alice, build.id)
    ctx.stores.admission.add(build.id, alice.id or 0, 0.0)  # as if Redis had kept it
    assert dispatch_round(ctx, MemoryJobs(), IDLE) is None
    assert ctx.stores.admission.active() == {}


def test_a_retry_is_admitted_only_after_its_back_off(ctx: Context, alice: ApiToken) -> None:
    _, build = upload(ctx, alice)
    ctx.stores.admission.withdraw(build.id)
    ctx.stores.admission.defer(build.id, alice.id or 0, 0.0, until=time.time() + 3600)
    assert dispatch_round(ctx, MemoryJobs(), IDLE) is None
    ctx.stores.admission.withdraw(build.id)
    ctx.stores.admission.defer(build.id, alice.id or 0, 0.0, until=time.time() - 1)
    assert dispatch_round(ctx, MemoryJobs(), IDLE) == build.id


def _lost(ctx: Context, alice: ApiToken, attempts: int) -> str:
    _, build = upload(ctx, alice)
    ctx.stores.admission.withdraw(build.id)
    with ctx.session() as session:
        found = session.get(BuildJob, build.id)
        assert found is not None
        found.status, found.attempts = Status.BUILDING, attempts
        found.started_at = utcnow() - timedelta(minutes=5)
    return build.id


def test_a_build_whose_worker_stopped_beating_is_queued_again(ctx: Context, alice: ApiToken) -> None:
    build_id = _lost(ctx, alice, attempts=1)
    assert recover_lost(ctx) == {build_id: "queued again"}
    assert record(ctx, build_id).status == Status.QUEUED
    assert ctx.stores.admission.waiting() == [build_id]


def test_a_build_with_a_live_heartbeat_is_not_lost(ctx: Context, alice: ApiToken) -> None:
    build_id = _lost(ctx, alice, attempts=1)
    ctx.stores.signals.beat(build_id, 1)
    assert recover_lost(ctx) == {}


def test_a_build_lost_too_often_fails(ctx: Context, alice: ApiToken) -> None:
    build_id = _lost(ctx, alice, attempts=3)
    assert recover_lost(ctx) == {build_id: "failed"}
    assert record(ctx, build_id).error == "worker lost 3 times: giving up"


def test_a_lost_build_someone_cancelled_ends_cancelled(ctx: Context, alice: ApiToken) -> None:
    build_id = _lost(ctx, alice, attempts=1)
    ctx.stores.signals.request_cancel(build_id, "alice")
    assert recover_lost(ctx) == {build_id: "cancelled"}
    assert record(ctx, build_id).status == Status.CANCELLED


def test_reconcile_puts_back_a_queued_build_the_stores_lost(ctx: Context, alice: ApiToken) -> None:
    _, build = upload(ctx, alice)
    ctx.stores.admission.withdraw(build.id)
    jobs = MemoryJobs()
    assert reconcile(ctx, jobs) == [build.id]
    assert reconcile(ctx, jobs) == []
    assert ctx.stores.admission.waiting() == [build.id]


def test_reconcile_leaves_a_build_backing_off_to_its_back_off(ctx: Context, alice: ApiToken) -> None:
    _, build = upload(ctx, alice)
    ctx.stores.admission.withdraw(build.id)
    ctx.stores.admission.defer(build.id, alice.id or 0, 1.0, until=time.time() + 60)  # a retry
    assert reconcile(ctx, MemoryJobs()) == []
    assert ctx.stores.admission.waiting() == [] and ctx.stores.admission.deferred() == [build.id]


def test_cancelling_a_building_build_answers_once_its_worker_stopped_it(
    ctx: Context, alice: ApiToken
) -> None:
    import threading

    from orchestrator.state.recorder import BuildRecorder

    _, build = upload(ctx, alice)
    ctx.stores.admission.withdraw(build.id)
    assert BuildRecorder(ctx, build.id).begin() is not None  # a worker took it

    def worker() -> None:  # what the build's worker does when it sees the request
        while ctx.stores.signals.cancel_requested(build.id) is None:
            time.sleep(0.01)
        BuildRecorder(ctx, build.id).cancelled("alice")

    thread = threading.Thread(target=worker)
    thread.start()
    started = time.monotonic()
    with ctx.session() as session:
        answer = cancel_build(ctx, session, alice, build.id, wait_seconds=5)
    thread.join()
    assert answer.status == Status.CANCELLED and time.monotonic() - started < 2


def test_builds_wait_while_every_preview_port_is_held(ctx: Context, alice: ApiToken) -> None:
    _, build = upload(ctx, alice)
    for port in range(41000, 41005):
        ctx.stores.ports.claim(port, f"preview-{port}")
    assert dispatch_round(ctx, MemoryJobs(), IDLE) is None
    assert (
        record(ctx, build.id).wait_reason
        == "waiting for a free preview port (all 5 ports of 41000-41004 in use)"
    )
    ctx.stores.ports.release(41002, "preview-41002")
    assert dispatch_round(ctx, MemoryJobs(), IDLE) == build.id
