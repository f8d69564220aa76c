"""The recorder: status moves, steps and log lines go to the record and, as events, to the
build's stream, in order (over the in-memory context)."""

from __future__ import annotations

import io

import pytest

from orchestrator.context import Context
from orchestrator.core.exceptions import InvalidTransition, NotFound
from orchestrator.core.status import EventType, Outcome, Status
from orchestrator.service.submissions import create_website
from orchestrator.state import logs
from orchestrator.state.models import ApiToken
from orchestrator.state.recorder import BuildRecorder, claim
from tests.unit.conftest import record, site_zip


@pytest.fixture
def recorder(ctx: Context, alice: ApiToken) -> BuildRecorder:
    with ctx.session() as session:
        _, build = create_website(ctx, session, alice, [("site.zip", io.BytesIO(site_zip()))])
    rec = BuildRecorder(ctx, build.id, flush_interval=3600)
    assert rec.begin() is not None
    return rec


def lines(ctx: Context, build_id: str) -> list[str]:
    with ctx.session() as session:
        return logs.tail(session, build_id, 10_000)


def kinds(ctx: Context, build_id: str) -> list[str]:
    return [e.type for e in ctx.stores.events.read(build_id)]


def test_beginning_moves_the_build_to_building_once(ctx: Context, recorder: BuildRecorder) -> None:
    assert record(ctx, recorder.build_id).status == Status.BUILDING
    assert recorder.begin() is None


def test_a_step_start_raises_progress_and_names_the_step(ctx: Context, recorder: BuildRecorder) -> None:
    recorder.start_step("install")
    done = record(ctx, recorder.build_id)
    assert done.progress == 30 and done.current_step == "Installing dependencies"
    assert done.steps["install"]["status"] == Outcome.RUNNING
    assert ctx.stores.events.read(recorder.build_id)[-1].data == {
        "progress": 30,
        "currentStep": "Installing dependencies",
        "step": "install",
    }


def test_progress_never_goes_back(ctx: Context, recorder: BuildRecorder) -> None:
    recorder.start_step("typecheck")
    recorder.start_step("install", alongside=True)
    assert record(ctx, recorder.build_id).progress == 60


def test_starting_a_step_ends_the_open_ones(ctx: Context, recorder: BuildRecorder) -> None:
    recorder.start_step("install")
    recorder.start_step("serve")
    assert record(ctx, recorder.build_id).steps["install"]["status"] == Outcome.OK


def test_a_step_alongside_keeps_the_other_open(ctx: Context, recorder: BuildRecorder) -> None:
    recorder.start_step("typecheck")
    recorder.start_step("serve", alongside=True)
    steps = record(ctx, recorder.build_id).steps
    assert steps["typecheck"]["status"] == steps["serve"]["status"] == Outcome.RUNNING


def test_log_lines_wait_for_a_flush_then_come_before_the_next_event(
    ctx: Context, recorder: BuildRecorder
) -> None:
    recorder.flush()  # the clock of the next flush starts now
    recorder.log("one")
    assert "one" not in lines(ctx, recorder.build_id)
    recorder.start_step("install")
    assert lines(ctx, recorder.build_id)[-1] == "one"
    assert kinds(ctx, recorder.build_id)[-2:] == [EventType.LOG, EventType.PROGRESS]


def test_a_long_line_is_cut(ctx: Context, recorder: BuildRecorder) -> None:
    recorder.log("x" * 10_000)
    recorder.flush()
    assert len(lines(ctx, recorder.build_id)[-1]) == 2000


def test_only_the_newest_lines_are_kept(ctx: Context, recorder: BuildRecorder) -> None:
    ctx.settings.log_lines_kept = 10
    recorder.lines_kept = 10
    for i in range(35):
        recorder.log(f"line {i}")
        recorder.flush()
    assert len(lines(ctx, recorder.build_id)) <= 20
    recorder.fail("install", "boom")
    kept = lines(ctx, recorder.build_id)
    assert len(kept) == 10 and kept[-1] == "Build failed: boom"


def test_going_live_ends_the_steps_and_sets_the_url(ctx: Context, recorder: BuildRecorder) -> None:
    recorder.start_step("serve")
    recorder.running("http://localhost:41000/")
    done = record(ctx, recorder.build_id)
    assert done.status == Status.RUNNING and done.preview_url == "http://localhost:41000/"
    assert done.progress == 100 and done.steps["serve"]["status"] == Outcome.OK
    last = ctx.stores.events.read(recorder.build_id)[-1]
    assert last.ends_stream and last.data["previewUrl"] == "http://localhost:41000/"


def test_a_failure_names_its_step_and_stops_the_step_beside_it(ctx: Context, recorder: BuildRecorder) -> None:
    recorder.start_step("typecheck")
    recorder.start_step("serve", alongside=True)
    recorder.fail("typecheck", "type checking failed (exit code 2): src/App.tsx(3,1): error TS2304")
    done = record(ctx, recorder.build_id)
    assert done.status == Status.FAILED and done.error_step == "typecheck"
    assert (
        done.steps["typecheck"]["status"] == Outcome.FAILED
        and done.steps["serve"]["status"] == Outcome.STOPPED
    )


def test_a_cancelled_build_says_by_whom(ctx: Context, recorder: BuildRecorder) -> None:
    recorder.cancelled("alice")
    done = record(ctx, recorder.build_id)
    assert done.status == Status.CANCELLED and done.error == "cancelled by alice"
    assert lines(ctx, recorder.build_id)[-1] == "Cancelled by alice"


def test_a_requeued_build_is_queued_again_without_its_container(
    ctx: Context, recorder: BuildRecorder
) -> None:
    recorder.update(container_id="abc", allocated_port=41000)
    recorder.requeued("engine down: retrying")
    done = record(ctx, recorder.build_id)
    assert done.status == Status.QUEUED and done.wait_reason == "engine down: retrying"
    assert done.container_id is None and done.allocated_port is None and done.progress == 0


def test_a_finished_build_cannot_move_again(ctx: Context, recorder: BuildRecorder) -> None:
    recorder.cancelled("alice")
    with pytest.raises(InvalidTransition):
        recorder.running("http://localhost:41000/")


def test_a_skipped_step_says_why(ctx: Context, recorder: BuildRecorder) -> None:
    recorder.skip_step("typecheck", "type check skipped: a static site has none")
    recorder.flush()
    assert record(ctx, recorder.build_id).steps["typecheck"]["status"] == Outcome.SKIPPED
    assert lines(ctx, recorder.build_id)[-1] == "type check skipped: a static site has none"


def test_a_claim_wins_once(ctx: Context, recorder: BuildRecorder) -> None:
    recorder.running("http://localhost:41000/")
    assert claim(ctx, recorder.build_id, Status.RUNNING, Status.STOPPED)
    assert not claim(ctx, recorder.build_id, Status.RUNNING, Status.STOPPED)


def test_a_build_the_database_does_not_have_says_so(ctx: Context) -> None:
    with pytest.raises(NotFound, match="share one DATABASE_URL"):
        BuildRecorder(ctx, "missing").update(progress=1)


class Flaky:
    """An event store that fails like Redis going away while ``down``."""

    def __init__(self, events) -> None:  # type: ignore[no-untyped-def]
        self.events, self.down = events, False

    def publish(self, build_id: str, events) -> None:  # type: ignore[no-untyped-def]
        if self.down:
            from redis.exceptions import ConnectionError as RedisDown

            raise RedisDown("Connection refused")
        self.events.publish(build_id, events)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.events, name)


def test_with_redis_away_the_record_is_kept_and_watchers_get_the_events_in_order_later(
    ctx: Context, recorder: BuildRecorder
) -> None:
    flaky = Flaky(ctx.stores.events)
    ctx.stores.events = flaky  # type: ignore[assignment]
    flaky.down = True
    recorder.start_step("install")
    recorder.log("added 12 packages")
    recorder.flush()
    assert "added 12 packages" in lines(ctx, recorder.build_id)  # the record has it at once
    assert record(ctx, recorder.build_id).steps["install"]["status"] == Outcome.RUNNING
    seen = len(flaky.events.read(recorder.build_id))
    flaky.down = False
    recorder.start_step("serve")
    later = [e for e in flaky.events.read(recorder.build_id)][seen:]
    assert [e.data.get("step") or e.data.get("line") for e in later] == [
        "install",
        "added 12 packages",
        "serve",
    ]


def test_a_write_waits_for_a_locked_database(tmp_path, monkeypatch) -> None:
    import sqlite3
    import threading
    import time

    from sqlalchemy import text

    from orchestrator.adapters.database import Database
    from orchestrator.core import defaults

    monkeypatch.setattr(defaults, "SQLITE_BUSY_SECONDS", 1)
    path = tmp_path / "locked.db"
    database = Database(f"sqlite:///{path}")
    with database.session() as session:
        session.exec(text("CREATE TABLE t (v INTEGER)"))  # type: ignore[call-overload]
    locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock …
    threading.Timer(3, locker.rollback).start()  # … for longer than SQLite's busy timeout
    started = time.monotonic()
    database.patiently(lambda session: session.exec(text("INSERT INTO t VALUES (1)")))
    assert time.monotonic() - started >= 2.5
    with database.session() as session:
        assert session.exec(text("SELECT count(*) FROM t")).one() == (1,)  # type: ignore[call-overload]
    locker.close()
    database.close()
