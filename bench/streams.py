"""How open event streams weigh on the API: the latency of `GET /api/websites` with none, then
with N clients following a build's event stream (a build kept queued, so that no stream ends).
Prints the figures and, with --markdown, writes them into docs/benchmarks.md.

    .venv/bin/python bench/streams.py [--streams 500] [--requests 200] [--markdown docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import statistics
import sys
import time
import zipfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import BenchStack  # noqa: E402

START, END = "<!-- streams -->", "<!-- /streams -->"


def site() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<h1>followed</h1>")
    return buffer.getvalue()


async def latencies(client: httpx.AsyncClient, count: int) -> list[float]:
    found = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get("/api/websites")
        response.raise_for_status()
        found.append(time.perf_counter() - started)
    return found


async def follow(client: httpx.AsyncClient, job: str, opened: asyncio.Event, counter: list[int]) -> None:
    async with client.stream("GET", f"/api/builds/{job}/events") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                counter[0] += 1
                opened.set()
                break
        await asyncio.sleep(3600)  # keep it open; cancelled at the end


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(stack: BenchStack, streams: int, requests: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {stack.token}"}
    limits = httpx.Limits(max_connections=streams + 20, max_keepalive_connections=streams + 20)
    async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=60, limits=limits) as client:
        accepted = await client.post(
            "/api/websites", files={"files": ("site.zip", site(), "application/zip")}
        )
        job = accepted.json()["website"]["buildJobId"]
        quiet = await latencies(client, requests)
        counter = [0]
        opened = asyncio.Event()
        tasks = [asyncio.create_task(follow(client, job, opened, counter)) for _ in range(streams)]
        deadline = time.monotonic() + 120
        while counter[0] < streams and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        busy = await latencies(client, requests)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "streams": counter[0],
        "quiet_p50": p(quiet, 0.5),
        "quiet_p99": p(quiet, 0.99),
        "busy_p50": p(busy, 0.5),
        "busy_p99": p(busy, 0.99),
        "busy_max": max(busy) * 1000,
        "busy_mean": statistics.mean(busy) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    # No build is admitted (max_building 0): the followed build stays queued, its stream open.
    with BenchStack(workers=1, max_building="0", ports=(43500, 43519)) as stack:
        found = asyncio.run(measure(stack, args.streams, args.requests))
    line = (
        f"streams        GET /api/websites with {found['streams']:.0f} event streams open: "
        f"p50 {found['busy_p50']:.0f} ms, p99 {found['busy_p99']:.0f} ms, max {found['busy_max']:.0f} ms "
        f"(none open: p50 {found['quiet_p50']:.0f} ms, p99 {found['quiet_p99']:.0f} ms; "
        f"{args.requests} requests each)"
        "   goal p99 ≤ 100 ms"
    )
    print(line)
    if args.markdown:
        text = args.markdown.read_text()
        again = f"Regenerate with `.venv/bin/python bench/streams.py --markdown {args.markdown}`."
        block = f"{START}\n```\n{line}\n```\n{again}\n{END}"
        if START in text:
            text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
        else:
            text = text.replace("## Reading it", f"{block}\n\n## Reading it", 1)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
