"""Time upload → running for a create-vite template through a running service, step by step.

    .venv/bin/python bench/build_times.py --token TOKEN [--url http://127.0.0.1:8000]
        [--template react-ts] [--runs 3]

Prints, per run, the API's answer time, the time to `running` and each step's duration (from
the job record), then the medians. Builds run one after another so they do not compete.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import tarfile
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path

import httpx

STEPS = ("extract", "install", "typecheck", "serve")


def template_zip(name: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", "--silent", "create-vite"], cwd=tmp, check=True, capture_output=True)
        with tarfile.open(next(Path(tmp).glob("create-vite-*.tgz"))) as tar:
            tar.extractall(tmp, filter="data")
        folder = Path(tmp) / "package" / f"template-{name}"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    archive.write(file, file.relative_to(folder).as_posix())
        return buffer.getvalue()


def one_run(client: httpx.Client, payload: bytes) -> dict[str, float]:
    started = time.monotonic()
    response = client.post("/api/websites", files={"files": ("site.zip", payload)})
    answered = time.monotonic() - started
    response.raise_for_status()
    job = response.json()["website"]["buildJobId"]
    while True:
        record = client.get(f"/api/builds/{job}").json()
        if record["status"] in ("running", "failed"):
            break
        time.sleep(0.1)
    total = time.monotonic() - started
    if record["status"] != "running":
        raise SystemExit(f"build failed: {record['error']}")
    result = {"api": answered, "total": total}
    for step in STEPS:
        info = record["steps"].get(step, {})
        if info.get("startedAt") and info.get("endedAt"):
            result[step] = (
                datetime.fromisoformat(info["endedAt"]) - datetime.fromisoformat(info["startedAt"])
            ).total_seconds()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True)
    parser.add_argument("--template", default="react-ts")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    payload = template_zip(args.template)
    columns = ("api", "extract", "install", "typecheck", "serve", "total")
    print(f"{args.template}: upload → running, seconds")
    print("run  " + "".join(f"{c:>10}" for c in columns))
    rows = []
    with httpx.Client(
        base_url=args.url, timeout=60, headers={"Authorization": f"Bearer {args.token}"}
    ) as client:
        for i in range(args.runs):
            row = one_run(client, payload)
            rows.append(row)
            print(f"{i + 1:<5}" + "".join(f"{row.get(c, float('nan')):>10.2f}" for c in columns))
    medians = [statistics.median(r.get(c, float("nan")) for r in rows) for c in columns]
    print("med  " + "".join(f"{m:>10.2f}" for m in medians))


if __name__ == "__main__":
    main()
