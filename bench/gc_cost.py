"""What one `orchestrator gc` run costs with many live previews.

    .venv/bin/python bench/gc_cost.py [--previews 50] [--runs 5]

Starts a throwaway service (bench/stack.py), brings up N static-site previews, then times:
a dry run and a real run with nothing to reap (the steady state of the every-minute schedule:
every preview's traffic counter and memory read, every container, port and file checked), and
finally one run that stops all N (--idle-ttl 0). Prints wall time of the whole command and the
time gc measured for itself, then removes everything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import BenchStack  # noqa: E402


def timed_gc(stack: BenchStack, *args: str) -> tuple[float, dict]:
    started = time.monotonic()
    out = stack.cli("gc", "--json", *args).stdout
    return time.monotonic() - started, json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--previews", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with (
        BenchStack(workers=4, max_building_per_user="4", max_cpu_percent="100") as stack,
        stack.client() as client,
    ):
        started = time.monotonic()
        jobs = []
        for i in range(args.previews):
            page = f"<h1>preview {i}</h1>".encode()
            response = client.post("/api/websites", files=[("files", ("index.html", page))])
            response.raise_for_status()
            jobs.append(response.json()["website"]["buildJobId"])
        pending = set(jobs)
        while pending:
            for job in list(pending):
                status = client.get(f"/api/builds/{job}").json()["status"]
                if status == "running":
                    pending.discard(job)
                elif status not in ("queued", "building"):
                    raise SystemExit(f"build {job} ended {status}")
            time.sleep(0.5)
        print(f"{args.previews} previews live in {time.monotonic() - started:.1f} s")

        rows = []
        for label, extra in (("dry run", ["--dry-run"]), ("run, nothing to reap", [])):
            walls, inner = [], []
            for _ in range(args.runs):
                wall, report = timed_gc(stack, *extra)
                assert report["previewsChecked"] == args.previews, report
                walls.append(wall)
                inner.append(report["seconds"])
            rows.append((label, statistics.median(walls), statistics.median(inner), args.runs))
        wall, report = timed_gc(stack, "--idle-ttl", "0")
        stopped = sum(a["action"] == "stop preview" for a in report["actions"])
        rows.append((f"run stopping all {stopped}", wall, report["seconds"], 1))
        freed = report["freed"]

    print(f"\ngc with {args.previews} live previews (median of runs), seconds")
    print(f"{'':<28}{'command':>10}{'gc itself':>11}{'runs':>6}")
    for label, wall, inner, runs in rows:
        print(f"{label:<28}{wall:>10.2f}{inner:>11.2f}{runs:>6}")
    print(
        f"\nthe last run freed {freed['memoryBytes'] / 2**20:.0f} MB memory, "
        f"{freed['diskBytes'] / 2**20:.1f} MB disk and {len(freed['ports'])} ports"
    )


if __name__ == "__main__":
    main()
