"""Previews that sleep and wake, through the gateway (run by bench/compare.py, in its stack):

wake       react-ts asleep → the first byte of its page through the gateway, N times
wake x20   20 sleeping react-ts previews requested at once: until all have answered
sleepers   N static previews registered on this host, all asleep, then 100 of them woken by 20
           clients at once:
           the memory they use, the disk a sleeper keeps
edit       PATCH one source file of a live react-ts preview → Vite's HMR "update" received by
           a websocket client through the gateway, N times
"""

from __future__ import annotations

import io
import json
import re
import socket
import statistics
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import BenchStack  # noqa: E402
from orchestrator.adapters.docker_runtime import DockerRuntime  # noqa: E402
from orchestrator.config import Settings  # noqa: E402


def host_of(url: str) -> str:
    return httpx.URL(url).netloc.decode()


def first_byte(stack: BenchStack, url: str, timeout: float = 60) -> float:
    """Seconds until the gateway's answer for ``url`` starts (its status line and headers)."""
    started = time.monotonic()
    with httpx.stream("GET", f"{stack.gateway}/", headers={"Host": host_of(url)}, timeout=timeout) as got:
        took = time.monotonic() - started
        if got.status_code != 200:
            got.read()
            text = re.sub(r"<style>.*?</style>|<[^>]+>", " ", got.text, flags=re.S)
            raise SystemExit(f"{url} answered {got.status_code} after waking: {' '.join(text.split())}")
    return took


def sleep_all(stack: BenchStack) -> dict:
    return json.loads(stack.cli("gc", "--json", "--sleep-after", "0").stdout)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def wakes(stack: BenchStack, url: str, runs: int) -> dict:
    took = []
    for _ in range(runs):
        sleep_all(stack)
        took.append(first_byte(stack, url))
        time.sleep(0.5)
    return {"p50": statistics.median(took), "p99": percentile(took, 0.99), "max": max(took), "runs": runs}


def wake_together(stack: BenchStack, urls: list[str], clients: int = 20) -> dict:
    """``urls`` asleep, requested by ``clients`` clients at once (each takes the next when its
    answer came): the time until all have answered."""
    sleep_all(stack)
    started = time.monotonic()
    with ThreadPoolExecutor(min(clients, len(urls))) as pool:
        answered = list(pool.map(lambda u: first_byte(stack, u, 120), urls))
    return {"all": time.monotonic() - started, "previews": len(urls), "p50": statistics.median(answered)}


def static_site(i: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("index.html", f"<!doctype html><h1>sleeper {i}</h1>")
    return out.getvalue()


def sleepers(stack: BenchStack, client: httpx.Client, count: int, awake: int) -> dict:
    """``count`` static previews, put to sleep 100 at a time as they go live; then ``awake`` of
    them woken at once. Memory is the host's used memory (psutil) and our containers' sum."""
    runtime = DockerRuntime(Settings())
    before = psutil.virtual_memory().used
    urls: list[str] = []
    started = time.monotonic()
    for batch in range(0, count, 100):
        jobs = []
        for i in range(batch, min(count, batch + 100)):
            answer = client.post("/api/websites", files={"files": (f"s{i}.zip", static_site(i))})
            answer.raise_for_status()
            jobs.append(answer.json()["website"])
        for website in jobs:
            while True:
                state = client.get(f"/api/builds/{website['buildJobId']}").json()
                if state["status"] not in ("queued", "building", "pending"):
                    break
                time.sleep(0.2)
            if state["status"] != "running":
                raise SystemExit(f"static build {state['id']} {state['status']}: {state['error']}")
            urls.append(website["websiteUrl"])
        report = sleep_all(stack)
        slept = sum(a["action"] == "sleep preview" for a in report["actions"])
        print(f"  {len(urls)} registered, {len(report['sleeping']) + slept} asleep", flush=True)
    registered = time.monotonic() - started
    report = json.loads(stack.cli("gc", "--json").stdout)
    asleep = report["sleeping"]
    disk = statistics.median(s["diskBytes"] or 0 for s in asleep)
    ours = [
        c
        for c in runtime.list_ours(all_instances=True)
        if c["Labels"].get("org.website-orchestrator.instance") == stack.instance
    ]
    running_before = sum(c["State"] == "running" for c in ours)
    asleep_used = psutil.virtual_memory().used
    woke = wake_together(stack, urls[:awake]) if awake else {}
    time.sleep(3)
    ours = [
        c["Id"]
        for c in runtime.list_ours(all_instances=True)
        if c["Labels"].get("org.website-orchestrator.instance") == stack.instance and c["State"] == "running"
    ]
    awake_mb = sum(runtime.memory_used(c) or 0 for c in ours) / 2**20
    runtime.close()
    return {
        "registered": len(urls),
        "asleep": len(asleep),
        "registering_seconds": registered,
        "running_while_asleep": running_before,
        "sleeper_disk_kb": disk / 1024,
        "host_used_asleep_mb": (asleep_used - before) / 2**20,
        "awake": len(ours),
        "awake_mb": awake_mb,
        "wake_all_seconds": woke.get("all", 0.0),
    }


def hmr_latency(
    stack: BenchStack, client: httpx.Client, website_id: str, url: str, app_source: str, runs: int
) -> dict:
    """PATCH src/App.tsx → the HMR "update" message, measured at a websocket client through the
    gateway, the way tests/integration/test_builds.py's HMR test listens."""
    page = httpx.get(f"{stack.gateway}/@vite/client", headers={"Host": host_of(url)}, timeout=30).text
    token = re.search(r'const wsToken = "([^"]+)"', page)
    if token is None:
        raise SystemExit("no websocket token in Vite's client")
    took = []
    sock = socket.create_connection(("127.0.0.1", stack.gateway_port))
    with connect(f"ws://{host_of(url)}/?token={token[1]}", sock=sock, subprotocols=["vite-hmr"]) as ws:
        json.loads(ws.recv(timeout=10))
        for i in range(runs):
            body = f"{app_source}\n// live edit {i}\n".encode()
            started = time.monotonic()
            answer = client.patch(
                f"/api/websites/{website_id}/files", files=[("files", ("src/App.tsx", body))]
            )
            answer.raise_for_status()
            while json.loads(ws.recv(timeout=20))["type"] != "update":
                pass
            took.append((time.monotonic() - started) * 1000)
            build = answer.json()["buildId"]
            while client.get(f"/api/builds/{build}/status").json()["editCheck"]["status"] == "running":
                time.sleep(0.1)  # one save at a time: its type check over before the next
            time.sleep(0.5)
    return {"p50_ms": statistics.median(took), "p99_ms": percentile(took, 0.99), "runs": runs}


def app_source(payload: bytes) -> str:
    return zipfile.ZipFile(io.BytesIO(payload)).read("src/App.tsx").decode()


def render(results: dict) -> list[str]:
    w, t, s, e = results["wake"], results["wake x20"], results["sleepers"], results["edit"]
    return [
        f"{'wake':<15}first byte p50 {w['p50']:.2f} s, p99 {w['p99']:.2f} s, max {w['max']:.2f} s "
        f"({w['runs']} wakes of react-ts through the gateway)   goal p50 ≤ 1 s, p99 ≤ 2 s",
        f"{'wake x20':<15}{t['all']:.2f} s until all {t['previews']} sleeping react-ts previews answered "
        f"(median {t['p50']:.2f} s)   goal ≤ 10 s",
        f"{'sleepers':<15}{s['registered']} previews registered, {s['asleep']} asleep with "
        f"{s['running_while_asleep']} containers running; a sleeper keeps {s['sleeper_disk_kb']:.0f} KB "
        f"of disk (its writable layer) and no memory   goal ≥ 1000, 0 MB",
        f"{'':<15}{s['awake']} of them woken by 20 clients at once in {s['wake_all_seconds']:.1f} s, using "
        f"{s['awake_mb']:.0f} MB together   goal ≥ 100 awake",
        f"{'edit':<15}PATCH → HMR update at a websocket client p50 {e['p50_ms']:.0f} ms, "
        f"p99 {e['p99_ms']:.0f} ms ({e['runs']} edits of react-ts's App.tsx)   goal p50 ≤ 150 ms",
    ]
