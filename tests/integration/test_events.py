"""Live events over SSE, with a real API process, worker and build."""

from __future__ import annotations

import threading

import httpx
import pytest
from httpx_sse import connect_sse

from tests.integration.conftest import upload

pytestmark = pytest.mark.integration

SITE = [("index.html", b"<h1>events</h1>"), ("style.css", b"h1 { color: red }")]


def read_events(client: httpx.Client, job_id: str, last_id: str | None = None, limit: int | None = None):
    headers = {"Last-Event-ID": last_id} if last_id else {}
    seen = []
    with connect_sse(client, "GET", f"/api/builds/{job_id}/events", headers=headers, timeout=120) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for sse in source.iter_sse():
            seen.append(sse)
            if limit and len(seen) >= limit:
                break
    return seen


def test_a_build_streams_its_events_in_order_to_many_watchers(admin: httpx.Client) -> None:
    build = upload(admin, SITE)
    results: list[list] = [[], []]

    def watch(i: int) -> None:
        results[i] = read_events(admin, build.job_id)

    watchers = [threading.Thread(target=watch, args=(i,)) for i in range(2)]
    for w in watchers:
        w.start()
    for w in watchers:
        w.join(120)
    first, second = results
    assert [e.id for e in first] == [e.id for e in second] and first  # every watcher, the same events

    kinds = {e.event for e in first}
    assert kinds >= {"status", "progress", "log"}
    statuses = [e.json()["status"] for e in first if e.event == "status"]
    assert statuses[-1] == "running" and statuses.index("building") < statuses.index("running")
    assert first[-1].event == "status"  # the stream ends after the terminal status
    progress = [e.json()["progress"] for e in first if e.event == "progress"]
    assert progress == sorted(progress)
    ids = [tuple(int(x) for x in e.id.split("-")) for e in first]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    # polling agrees with the stream
    final = build.wait()
    assert final["status"] == "running"
    assert final["previewUrl"] == first[-1].json()["previewUrl"]
    streamed_lines = [e.json()["line"] for e in first if e.event == "log"]
    assert final["logs"] == (build.record()["logs"])[-50:]
    assert streamed_lines[-len(final["logs"]) :] == final["logs"][-len(streamed_lines) :]


def test_reconnecting_with_last_event_id_resumes_without_repeats(admin: httpx.Client) -> None:
    build = upload(admin, SITE)
    build.wait()
    everything = read_events(admin, build.job_id)
    assert len(everything) > 4
    cut = len(everything) // 2
    resumed = read_events(admin, build.job_id, last_id=everything[cut - 1].id)
    assert [e.id for e in resumed] == [e.id for e in everything[cut:]]


def test_failed_build_stream_ends_with_the_error(admin: httpx.Client) -> None:
    build = upload(
        admin, [("package.json", b'{"devDependencies": {"vite": "^8", "wob-no-such-pkg-777": "1"}}')]
    )
    seen = read_events(admin, build.job_id)
    last = seen[-1].json()
    assert seen[-1].event == "status" and last["status"] == "failed"
    assert last["errorStep"] == "install" and "wob-no-such-pkg-777" in last["error"]
