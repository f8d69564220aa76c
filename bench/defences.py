"""What the defences against strangers' code cost (docs/security.md): create-vite's react-ts,
cold and warm, with the defences that can be turned off on and off, side by side, and the cost
of each check on its own. Prints the figures and, with --markdown, writes them into
docs/benchmarks.md.

    .venv/bin/python bench/defences.py [--runs 3] [--markdown docs/benchmarks.md]

"off" is ORCHESTRATOR_OPEN_EGRESS=true, ORCHESTRATOR_DISK_QUOTA_MB=0 and
ORCHESTRATOR_REFUSE_VULNERABLE_VITE=false. One UID per build and the cache's clean-up cannot
be turned off; their cost is inside both columns (the clean-up is timed on its own below).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.build_times import template_zip  # noqa: E402
from bench.compare import upload, variant  # noqa: E402
from bench.stack import BenchStack  # noqa: E402
from orchestrator.adapters.docker_runtime import DockerRuntime  # noqa: E402
from orchestrator.adapters.firewall import IptablesEgress, IptablesVisits  # noqa: E402
from orchestrator.config import Settings  # noqa: E402
from orchestrator.core.egress import Destination  # noqa: E402
from orchestrator.core.installs import keeping_only_the_install  # noqa: E402

START, END = "<!-- defences -->", "<!-- /defences -->"
OFF = {"open_egress": "true", "disk_quota_mb": "0", "refuse_vulnerable_vite": "false"}


def timed(fn, runs: int = 20) -> float:
    """The median of ``runs`` calls of ``fn``, in milliseconds."""
    found = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        found.append(time.perf_counter() - started)
    return statistics.median(found) * 1000


def builds(payload: bytes, runs: int, redis_db: int, ports: tuple[int, int], **settings: str) -> dict:
    """``runs`` cold builds (each on a new stack: every cache empty), each followed by a warm
    one; median seconds, and the checks timed against the last preview's container."""
    cold, warm = [], []
    for _ in range(runs):
        with (
            BenchStack(workers=1, redis_db=redis_db, ports=ports, **settings) as stack,
            stack.client() as client,
        ):
            seconds, record = upload(client, payload)
            cold.append(seconds)
            warm.append(upload(client, variant(payload, "changed"), record["websiteId"])[0])
            live = client.get(f"/api/websites/{record['websiteId']}").json()
            container = client.get(f"/api/builds/{live['liveBuildId']}").json()["containerId"]
            timed_checks = checks(container)
    return {"cold": statistics.median(cold), "warm": statistics.median(warm), "checks": timed_checks}


def checks(container: str) -> dict[str, float]:
    """Each check on its own, in ms, against a live react-ts preview's container."""
    runtime = DockerRuntime(Settings())
    # the clean-up's walk of the tree (what it costs beyond removing caches), as a fill runs it
    walk = 'find /app/node_modules ! -type l -user "$(id -u)" ! -perm -g+w -exec chmod g+w {} +'
    assert walk.split(" ! -type")[1] in keeping_only_the_install("true")
    started = time.perf_counter()
    subprocess.run(["docker", "exec", container, "sh", "-c", walk], check=True)
    cleaned = (time.perf_counter() - started) * 1000
    small = timed(lambda: runtime.disk_used(container), 10)  # a preview on a cached tree: its upload
    # a fill's layer holds the whole tree: copy it into the writable layer and measure again
    subprocess.run(["docker", "exec", container, "cp", "-a", "/app/node_modules", "/tmp/tree"], check=True)
    return {"disk": small, "disk_tree": timed(lambda: runtime.disk_used(container), 10), "cleanup": cleaned}


def firewall_checks() -> dict[str, float]:
    egress, visits = IptablesEgress("wobbench0"), IptablesVisits("wobbench0", cache_seconds=0)
    allowed = [Destination("198.51.100.7", 443)]
    try:
        written = timed(lambda: (egress.remove(), egress.enforce(allowed)), 5)
        egress.enforce(allowed)
        checked = timed(lambda: egress.enforce(allowed))
        for port in range(44000, 44100):
            visits.watch(port)
        listed = timed(visits.counts)
    finally:
        egress.remove()
        visits.remove()
    return {"egress_written": written, "egress_checked": checked, "visits_100": listed}


def render(on: dict, off: dict, micro: dict, runs: int) -> str:
    def row(name: str, a: float, b: float) -> str:
        return f"{name:<10} {a:7.2f}s {b:7.2f}s   {a - b:+.2f}s"

    return "\n".join(
        [
            "```",
            f"defences   {'on':>8} {'off':>8}   cost     (react-ts, medians of {runs}; 1 worker)",
            row("cold", on["cold"], off["cold"]),
            row("warm", on["warm"], off["warm"]),
            f"egress     checked before a build {micro['egress_checked']:.1f} ms, "
            f"(re)written {micro['egress_written']:.1f} ms",
            f"disk       one measurement: a react-ts preview on a cached tree {on['checks']['disk']:.1f} ms, "
            f"a layer holding react-ts's whole tree (a fill) {on['checks']['disk_tree']:.1f} ms",
            f"cache      the fill's clean-up over react-ts's tree {on['checks']['cleanup']:.0f} ms",
            f"visits     one listing of 100 previews' counters {micro['visits_100']:.1f} ms",
            "```",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cold builds (each then a warm one) per side")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    payload = template_zip("react-ts")
    on = builds(payload, args.runs, 7, (43000, 43099))
    off = builds(payload, args.runs, 1, (43100, 43199), **OFF)
    micro = firewall_checks()
    table = render(on, off, micro, args.runs)
    print(table)
    if args.markdown:
        text = args.markdown.read_text()
        again = "Regenerate with `.venv/bin/python bench/defences.py --markdown docs/benchmarks.md`."
        block = f"{START}\n{table}\n{again}\n{END}"
        if START in text:
            text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
        else:
            text = text.replace("## Reading it", block + "\n\n## Reading it", 1)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
