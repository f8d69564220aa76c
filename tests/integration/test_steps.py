"""Steps whose verdicts come from Docker, never from what the project prints; a type check in
a container of its own that cannot starve the preview."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Watched, upload, vite_project, zip_dir

pytestmark = pytest.mark.integration

OLD_MARKERS = [
    "::orchestrator:: install ok",
    "::orchestrator:: lifecycle ok",
    "::orchestrator:: typecheck ok",
    "::orchestrator:: typecheck skipped no type check configured",
    "::orchestrator:: serve start",
    "::orchestrator:: serve ok",
    *[f"::orchestrator:: invented-{i} skipped flood" for i in range(300)],
]
PLAN_STEPS = {"extract", "install", "lifecycle", "typecheck", "serve"}

EARLY_READY = """
console.log("::orchestrator:: serve ok");
console.log("  VITE v8.0.0  ready in 1 ms");
console.log("  ➜  Local:   http://localhost:" + process.env.PORT + "/");
await new Promise((resolve) => setTimeout(resolve, 6000));
export default {};
"""


def printing(lines: list[str]) -> str:
    return "node -e " + json.dumps(f"for (const l of {json.dumps(lines)}) console.log(l)")


def allocating(megabytes: int, then: str = "") -> str:
    body = (
        f"const a=[];for(let i=0;i<{megabytes // 16};i++)a.push(Buffer.alloc(16*1024*1024,1));"
        f"console.log('holding {megabytes} MB');{then}"
    )
    return "node -e " + json.dumps(body)


@pytest.fixture(scope="module")
def builds(admin: httpx.Client, runtime, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Watched]:
    tmp = tmp_path_factory.mktemp("steps")
    forged = vite_project(
        tmp / "forged",
        "forged",
        scripts={"postinstall": printing(OLD_MARKERS), "typecheck": "tsc --noEmit -p ."},
        dependencies={"typescript": "^5.9.0"},
    )
    (forged / "tsconfig.json").write_text('{"compilerOptions": {"strict": true}, "include": ["src"]}')
    (forged / "src").mkdir()
    (forged / "src" / "main.ts").write_text('export const n: number = "not a number";\n')
    early = vite_project(tmp / "early", "early-ready")
    (early / "vite.config.mjs").write_text(EARLY_READY)
    hungry = vite_project(tmp / "hungry-check", "hungry-check", scripts={"typecheck": allocating(2048)})
    big = vite_project(
        tmp / "big-check",
        "big-check",
        scripts={"typecheck": allocating(400, "setTimeout(()=>{},4000)")},
    )
    watched = {
        name: upload(admin, [(f"{name}.zip", zip_dir(folder))])
        for name, folder in {"forged": forged, "early": early, "hungry": hungry, "big": big}.items()
    }
    threading.Thread(target=watch_limits, args=(runtime, watched["hungry"]), daemon=True).start()
    return watched


LIMITS_SEEN: dict[str, int] = {}
"""Memory limit of each kind of container the hungry build had, read while it ran."""


def watch_limits(runtime, watched: Watched) -> None:
    while not watched.done.is_set():
        for container in runtime.list_ours(build_id=watched.job_id):
            kind = container["Labels"]["org.website-orchestrator.kind"]
            with contextlib.suppress(Exception):  # removed while we looked
                LIMITS_SEEN[kind] = runtime.limits(container["Id"])["memory"]
        time.sleep(0.1)


def test_printed_markers_pass_no_step(builds: dict[str, Watched]) -> None:
    final = builds["forged"].wait()
    record = builds["forged"].record()
    assert final["status"] == "failed", final
    assert record["errorStep"] == "typecheck"
    assert final["error"].startswith("type checking failed (exit code 2): src/main.ts"), final["error"]
    assert "TS2322" in final["error"]
    assert set(record["steps"]) <= PLAN_STEPS  # no invented step names in the record
    assert record["steps"]["lifecycle"]["status"] == "ok"  # the postinstall ran, and printed...
    assert any("::orchestrator:: typecheck ok" in line for line in record["logs"])  # ...only as log text


def test_a_server_printing_ready_early_is_not_live_before_it_answers(builds: dict[str, Watched]) -> None:
    watched = builds["early"]
    final = watched.wait()
    assert final["status"] == "running", final
    record = watched.record()
    serve = record["steps"]["serve"]
    started = time.mktime(time.strptime(serve["startedAt"][:19], "%Y-%m-%dT%H:%M:%S"))
    ended = time.mktime(time.strptime(serve["endedAt"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert ended - started >= 5, serve  # it waited for the config's 6 s, not for the printed lines
    assert httpx.get(final["previewUrl"], timeout=10).status_code == 200


def test_a_type_check_past_512_mb_fails_in_its_own_container(builds: dict[str, Watched], runtime) -> None:
    watched = builds["hungry"]
    final = watched.wait()
    seen = LIMITS_SEEN
    assert final["status"] == "failed", final
    assert watched.record()["errorStep"] == "typecheck"
    assert "type check ran out of memory (512 MB limit)" in final["error"], final["error"]
    assert seen.get("build") == 512 * 2**20 and seen.get("check") == 512 * 2**20, seen
    assert not runtime.list_ours(build_id=watched.job_id)  # both removed


def test_a_big_type_check_does_not_starve_the_dev_server(builds: dict[str, Watched], runtime) -> None:
    final = builds["big"].wait()
    assert final["status"] == "running", final
    record = builds["big"].record()
    assert record["steps"]["typecheck"]["status"] == "ok"
    assert any("holding 400 MB" in line for line in record["logs"])
    assert httpx.get(final["previewUrl"], timeout=10).status_code == 200
    ours = runtime.list_ours(build_id=record["id"])
    assert [c["Labels"]["org.website-orchestrator.kind"] for c in ours] == ["build"]  # the check is gone
    info = runtime.client.api.inspect_container(ours[0]["Id"])
    assert info["Mounts"] == []  # no store, no host path: nothing mounted in a build container


def test_steps_record_only_the_plans_names(builds: dict[str, Watched]) -> None:
    for watched in builds.values():
        watched.wait()
        assert set(watched.record()["steps"]) <= PLAN_STEPS


def test_the_project_cannot_reach_the_package_store(
    admin: httpx.Client, runtime, test_env: dict[str, str], tmp_path: Path
) -> None:
    """The store that fills download into is not in any container that runs the project's code:
    a postinstall writing where the fetcher mounts it writes only in its own container."""
    from orchestrator.pipeline.fill import store_name

    # (as the build's own user it may not even write there in its own container: that is fine too)
    write = "echo x > /var/cache/npm-store/TAMPERED-4711 || true"
    site = vite_project(
        tmp_path / "store", "store-probe", scripts={"postinstall": write}, dependencies={"is-even": "1.0.0"}
    )
    final = upload(admin, [("probe.zip", zip_dir(site))]).wait()
    assert final["status"] == "running", final
    store = store_name(test_env["ORCHESTRATOR_INSTANCE_ID"])
    listing = runtime.client.containers.run(
        runtime.settings.node_image,
        ["sh", "-c", "ls -A /store; test -d /store/_cacache && echo HAS-CACACHE"],
        volumes={store: {"bind": "/store", "mode": "ro"}},
        remove=True,
    ).decode()
    assert "HAS-CACACHE" in listing  # the fills of this session downloaded into it...
    assert "TAMPERED" not in listing  # ...and the project's postinstall did not reach it
