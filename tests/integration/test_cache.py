"""Fast builds with real installs: dependency-cache hits and misses, a postinstall that tampers
with node_modules, reuse of identical uploads, pnpm and yarn, and eviction."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.core import defaults
from tests.integration.conftest import Stack, run_cli, stack_env, vite_project, zip_dir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = stack_env(
        tmp_path_factory.mktemp("cache"),
        5,
        (42580, 42619),
        ORCHESTRATOR_MAX_CPU_PERCENT="100",
        ORCHESTRATOR_MAX_MEMORY_PERCENT="100",
        ORCHESTRATOR_MAX_BUILDING_PER_USER="4",
    )
    stack = Stack("cache", env, workers=2).start()
    yield stack
    stack.stop(runtime)


def build(client: httpx.Client, folder: Path, website_id: str | None = None) -> dict:
    """Upload a folder (as a zip) and wait for its build to end; the build record."""
    data = {"websiteId": website_id} if website_id else None
    response = client.post("/api/websites", files={"files": ("site.zip", zip_dir(folder))}, data=data)
    assert response.status_code == 202, response.text
    return wait(client, response.json()["website"]["buildJobId"])


def wait(client: httpx.Client, job: str) -> dict:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        record = client.get(f"/api/builds/{job}").json()
        if record["status"] not in ("queued", "building"):
            return record
        time.sleep(0.2)
    pytest.fail(f"build {job} did not end in 240 s")


def live(record: dict) -> dict:
    assert record["status"] == "running", (record["error"], record["logs"][-20:])
    return record


def in_container(runtime, record: dict, command: str) -> tuple[int, str]:
    return runtime.exec(record["containerId"], ["sh", "-c", command])


def cache_images(runtime, stack: Stack) -> list[dict]:
    ns = defaults.LABEL_NAMESPACE
    mine = [f"{ns}.kind=deps", f"{ns}.instance={stack.env['ORCHESTRATOR_INSTANCE_ID']}"]
    return runtime.client.api.images(filters={"label": mine})


def entry_files(runtime, stack: Stack, deps_key: str) -> tuple[set[str], set[str]]:
    """What a cache entry holds in the work folder, and what it added to /tmp, /var/tmp and
    the home folder (beyond what the Node image has there)."""
    image = f"{defaults.DEPS_REPOSITORY}:{stack.env['ORCHESTRATOR_INSTANCE_ID']}-{deps_key[:48]}"
    listing = ["sh", "-c", "ls -A /app; echo --; find /tmp /var/tmp /home/builder -mindepth 1"]

    def files_of(name: str) -> tuple[set[str], set[str]]:
        out = runtime.client.containers.run(name, listing, remove=True, user="0").decode()
        work, _, elsewhere = out.partition("--\n")
        return set(work.split()), set(elsewhere.split())

    work, elsewhere = files_of(image)
    ours = {defaults.CONTAINER_CA_PATH}  # the host's CA bundle, copied into every container
    return work, elsewhere - files_of(defaults.NODE_IMAGE)[1] - ours


def test_same_dependencies_hit_the_cache_and_new_ones_miss(stack: Stack, runtime, tmp_path: Path) -> None:
    client = stack.client("user", "hits")
    first = live(build(client, vite_project(tmp_path / "a", "cache-a")))
    assert first["steps"]["install"]["status"] == "ok"
    assert any(line.startswith("Dependency cache: miss") for line in first["logs"])
    work, elsewhere = entry_files(runtime, stack, first["depsKey"])
    assert "node_modules" in work and work <= {"node_modules", "package.json", "package-lock.json"}, work
    assert elsewhere == set()  # no npm cache, nothing in /tmp or home

    second = live(build(client, vite_project(tmp_path / "b", "cache-b")))  # other files, same deps
    assert second["steps"]["install"]["status"] == "cached"
    assert second["depsKey"] == first["depsKey"]
    assert any("Dependencies from the cache" in line for line in second["logs"])
    assert not any(line.startswith("added ") for line in second["logs"])  # npm did not run

    other = vite_project(tmp_path / "c", "cache-c", dependencies={"is-number": "7.0.0"})
    third = live(build(client, other))
    assert third["steps"]["install"]["status"] == "ok" and third["depsKey"] != first["depsKey"]


TAMPER = (
    "echo tampered > node_modules/vite/TAMPERED"
    " && echo 'console.log(\"TAMPERED\")' >> node_modules/vite/bin/vite.js"
)


def test_a_postinstall_that_tampers_with_node_modules_changes_only_its_own_build(
    stack: Stack, runtime, tmp_path: Path
) -> None:
    deps = {"is-odd": "3.0.1"}  # dependencies no other test uses: this test fills the entry
    mallory, alice = stack.client("user", "mallory"), stack.client("user", "alice")
    evil = vite_project(tmp_path / "evil", "evil", scripts={"postinstall": TAMPER}, dependencies=deps)
    tampered = live(build(mallory, evil))
    assert tampered["steps"]["lifecycle"]["status"] == "ok"  # the project's postinstall ran...
    assert in_container(runtime, tampered, "cat node_modules/vite/TAMPERED") == (0, "tampered\n")

    image = f"{defaults.DEPS_REPOSITORY}:{stack.env['ORCHESTRATOR_INSTANCE_ID']}-{tampered['depsKey'][:48]}"
    check = "test -e /app/node_modules/vite/TAMPERED && echo tampered || echo clean"
    assert (
        runtime.client.containers.run(image, ["sh", "-c", check], remove=True) == b"clean\n"
    )  # ...not in the cache

    innocent = live(build(alice, vite_project(tmp_path / "innocent", "innocent", dependencies=deps)))
    assert innocent["depsKey"] == tampered["depsKey"] and innocent["steps"]["install"]["status"] == "cached"
    assert in_container(runtime, innocent, "test -e node_modules/vite/TAMPERED")[0] == 1
    assert in_container(runtime, innocent, "grep -c TAMPERED node_modules/vite/bin/vite.js")[1].strip() == "0"
    assert not any("TAMPERED" in line for line in innocent["logs"])

    (evil / "index.html").write_text("<h1>evil, version 2</h1>")
    again = live(build(mallory, evil))  # a hit: its own postinstall runs again on a clean copy
    assert again["steps"]["install"]["status"] == "cached" and again["steps"]["lifecycle"]["status"] == "ok"
    assert in_container(runtime, again, "grep -c TAMPERED node_modules/vite/bin/vite.js")[1].strip() == "1"


def test_identical_uploads_reuse_the_outcome(stack: Stack, runtime, tmp_path: Path) -> None:
    client = stack.client("user", "again")
    site = vite_project(
        tmp_path / "same", "same", scripts={"typecheck": "node -e \"console.log('checked')\""}
    )
    first = live(build(client, site))

    second = live(build(client, site, website_id=first["websiteId"]))  # the same files again
    assert second["reusedFrom"] == first["id"]
    assert (second["containerId"], second["previewUrl"]) == (first["containerId"], first["previewUrl"])
    assert {second["steps"][s]["status"] for s in ("install", "typecheck", "serve")} == {"reused"}
    old = client.get(f"/api/builds/{first['id']}").json()
    assert (old["status"], old["stopReason"]) == ("stopped", "replaced")
    assert httpx.get(second["previewUrl"], timeout=5).status_code == 200

    elsewhere = live(build(client, site))  # a new website: its own container, no second type check
    assert elsewhere["containerId"] != second["containerId"]
    assert elsewhere["reusedFrom"] == second["id"]
    assert any(f"type check skipped: build {second['id']}" in line for line in elsewhere["logs"])

    broken = vite_project(tmp_path / "broken", "broken", dependencies={"no-such-package-xyz-4711": "1.0.0"})
    failed = build(client, broken)
    assert failed["status"] == "failed" and failed["errorStep"] == "install"
    repeated = build(client, broken, website_id=failed["websiteId"])
    assert (repeated["status"], repeated["errorStep"], repeated["reusedFrom"]) == (
        "failed",
        "install",
        failed["id"],
    )
    assert failed["error"] in repeated["error"] and repeated["containerId"] is None
    rebuilt = client.post(f"/api/websites/{failed['websiteId']}/rebuild")
    assert rebuilt.status_code == 202
    retried = wait(client, rebuilt.json()["website"]["buildJobId"])
    assert retried["status"] == "failed" and retried["reusedFrom"] is None and retried["rebuild"] is True
    assert retried["steps"]["install"]["status"] == "failed"  # it really ran again


@pytest.mark.parametrize(
    ("manager", "version", "lockfile", "frozen"),
    [
        ("pnpm", "pnpm@9.15.9", "pnpm-lock.yaml", "corepack pnpm install --frozen-lockfile"),
        ("yarn", "yarn@1.22.22", "yarn.lock", "corepack yarn install --frozen-lockfile"),
    ],
)
def test_pnpm_and_yarn_install_with_their_own_tool(
    stack: Stack, runtime, tmp_path: Path, manager: str, version: str, lockfile: str, frozen: str
) -> None:
    client = stack.client("user", manager)
    folder = vite_project(tmp_path / manager, f"{manager}-site", dependencies={"is-even": "1.0.0"})
    package = json.loads((folder / "package.json").read_text())
    if manager == "yarn":
        # Yarn 1 resolves every optional dependency, other platforms' too; one that Vite 8's
        # bundler names is missing from this machine's registry mirror. Vite 7 has none such.
        package["devDependencies"]["vite"] = "^7.0.0"
    (folder / "package.json").write_text(json.dumps({**package, "packageManager": version}))
    first = live(build(client, folder))
    assert any(f"Dependencies: {manager} (corepack {manager} install)" in line for line in first["logs"])
    if manager == "pnpm":
        assert in_container(runtime, first, "test -d node_modules/.pnpm")[0] == 0
    assert entry_files(runtime, stack, first["depsKey"]) == ({"node_modules", lockfile}, set())  # no store

    code, generated = in_container(runtime, first, f"cat {lockfile}")  # written by the tool itself
    assert code == 0 and generated
    (folder / lockfile).write_text(generated)
    (folder / "index.html").write_text(f"<h1>{manager} with its lockfile</h1>")
    second = live(build(client, folder))
    assert any(f"Dependencies: {manager} ({frozen})" in line for line in second["logs"])
    assert second["depsKey"] != first["depsKey"]  # the lockfile is part of the key


def test_gc_evicts_the_least_recently_used_entries_not_in_use(stack: Stack, runtime, tmp_path: Path) -> None:
    """Last in this module: a budget of 0 MB evicts every entry no live preview runs from."""
    assert cache_images(runtime, stack), "the tests above filled the cache"
    no_budget = {**stack.env, "ORCHESTRATOR_DEPS_CACHE_MB": "0", "ORCHESTRATOR_NPM_STORE_MB": "0"}
    planned = json.loads(run_cli("gc", "--json", "--dry-run", env=no_budget).stdout)["actions"]
    assert any(a["action"] == "evict dependencies" and a["disk_bytes"] > 0 for a in planned)
    assert any(a["action"] == "empty package store" and a["disk_bytes"] > 0 for a in planned), planned

    done = json.loads(run_cli("gc", "--json", "--idle-ttl", "0", env=no_budget).stdout)["actions"]
    assert any(a["action"] == "evict dependencies" for a in done)
    assert any(a["action"] == "empty package store" for a in done), done
    assert cache_images(runtime, stack) == []  # the previews went first, then nothing held them
    store = f"website-orchestrator-npm-store-{stack.env['ORCHESTRATOR_INSTANCE_ID']}"
    assert store not in [v.name for v in runtime.client.volumes.list()]

    client = stack.client("user", "after-eviction")
    refilled = live(build(client, vite_project(tmp_path / "after", "after")))
    assert refilled["steps"]["install"]["status"] == "ok"  # a miss again
