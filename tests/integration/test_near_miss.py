"""Near misses: a dependency added or bumped installs only the difference, starting from the
nearest cached node_modules, and still cannot carry one tenant's tampering to another."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Stack, small_stack
from tests.integration.test_cache import TAMPER, build, in_container, live

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with small_stack(
        "near",
        tmp_path_factory.mktemp("near"),
        6,
        (42620, 42659),
        runtime,
        workers=2,
        ORCHESTRATOR_MAX_BUILDING_PER_USER="4",
    ) as stack:
        yield stack


def react_ts(templates: Path, folder: Path, **extra: str) -> Path:
    shutil.copytree(templates / "template-react-ts", folder)
    package = json.loads((folder / "package.json").read_text())
    package["dependencies"].update(extra)
    (folder / "package.json").write_text(json.dumps(package, indent=2))
    return folder


def test_one_dependency_added_installs_only_the_difference(
    stack: Stack, runtime, templates: Path, tmp_path: Path
) -> None:
    client = stack.client("user", "near")
    first = live(build(client, react_ts(templates, tmp_path / "plain")))
    assert any(line.startswith("added ") for line in first["logs"])

    added = live(build(client, react_ts(templates, tmp_path / "lodash", lodash="^4.17.21")))
    logs = added["logs"]
    assert added["depsKey"] != first["depsKey"]
    assert any("near miss, starting from" in line for line in logs), logs
    assert any(line.startswith("added 1 package") for line in logs), logs  # lodash alone
    assert added["steps"]["typecheck"]["status"] == "ok"
    assert in_container(runtime, added, "test -f node_modules/lodash/package.json")[0] == 0
    assert in_container(runtime, added, "test -f node_modules/react/package.json")[0] == 0


def test_a_dependency_with_install_scripts_runs_them_outside_the_fetch(
    stack: Stack, runtime, templates: Path, tmp_path: Path
) -> None:
    client = stack.client("user", "scripts")
    live(build(client, react_ts(templates, tmp_path / "base", **{"is-odd": "3.0.1"})))
    both = {"is-odd": "3.0.1", "esbuild": "^0.28.0"}  # (in Vite 8's peer range)
    record = live(build(client, react_ts(templates, tmp_path / "esbuild", **both)))
    assert any("running the install scripts of esbuild" in line for line in record["logs"]), record["logs"]
    code, out = in_container(runtime, record, "node_modules/.bin/esbuild --version")
    assert code == 0 and out.strip().startswith("0.28."), out


def test_a_tampering_postinstall_does_not_reach_a_near_miss_of_another_tenant(
    stack: Stack, runtime, tmp_path: Path
) -> None:
    from tests.integration.conftest import vite_project

    mallory, alice = stack.client("user", "mallory"), stack.client("user", "alice")
    evil = vite_project(
        tmp_path / "evil", "evil", scripts={"postinstall": TAMPER}, dependencies={"is-number": "7.0.0"}
    )
    tampered = live(build(mallory, evil))
    assert in_container(runtime, tampered, "cat node_modules/vite/TAMPERED") == (0, "tampered\n")

    near = vite_project(tmp_path / "near", "near", dependencies={"is-number": "7.0.0", "is-even": "1.0.0"})
    innocent = live(build(alice, near))
    assert any("near miss, starting from" in line for line in innocent["logs"])
    assert in_container(runtime, innocent, "test -e node_modules/vite/TAMPERED")[0] == 1
    assert in_container(runtime, innocent, "grep -c TAMPERED node_modules/vite/bin/vite.js")[1].strip() == "0"
