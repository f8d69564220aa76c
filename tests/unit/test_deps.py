"""What decides node_modules, and how it is installed (orchestrator.core.installs: pure)."""

import json

from orchestrator.core.installs import (
    Candidate,
    PackageManager,
    cache_key,
    direct_dependencies,
    install_manifest,
    install_script_packages,
    lifecycle_command,
    nearest,
    package_manager,
    plan_install,
    trusted_npmrc,
)

PACKAGE = {
    "name": "site",
    "version": "1.0.0",
    "scripts": {"dev": "vite", "postinstall": "node tamper.js", "prepare": "husky"},
    "dependencies": {"react": "^19.0.0"},
    "devDependencies": {"vite": "^8.0.0"},
}


def key(manifest: dict, inputs: dict[str, bytes] | None = None, image: str = "sha256:a") -> str:
    return cache_key(install_manifest(manifest), inputs or {}, image_id=image, registry="https://r/")


def test_the_lockfile_decides_the_tool() -> None:
    assert package_manager(["package.json", "package-lock.json"], {}) == (
        PackageManager.NPM,
        "package-lock.json",
    )
    assert package_manager(["package.json", "pnpm-lock.yaml"], {}) == (PackageManager.PNPM, "pnpm-lock.yaml")
    assert package_manager(["package.json", "yarn.lock"], {}) == (PackageManager.YARN, "yarn.lock")
    assert package_manager(["package.json"], {"packageManager": "pnpm@9.15.0"}) == (PackageManager.PNPM, None)
    assert package_manager(["package.json"], {}) == (PackageManager.NPM, None)


def test_install_commands_are_frozen_with_a_lockfile() -> None:
    assert plan_install(["package-lock.json"], {}).command == "npm ci"
    assert plan_install([], {}).command == "npm install"
    assert plan_install(["pnpm-lock.yaml"], {}).command == "corepack pnpm install --frozen-lockfile"
    classic = plan_install(["yarn.lock"], {}, "# yarn lockfile v1\n")
    assert classic.command == "corepack yarn install --frozen-lockfile"
    berry = plan_install(["yarn.lock"], {"packageManager": "yarn@4.5.0"}, "__metadata:\n  version: 8\n")
    assert berry.command == "corepack yarn install --immutable"
    assert berry.env["YARN_NODE_LINKER"] == "node-modules"


def test_the_manifest_keeps_dependencies_and_drops_scripts() -> None:
    manifest = json.loads(install_manifest(PACKAGE))
    assert "scripts" not in manifest
    assert manifest["dependencies"] == {"react": "^19.0.0"} and manifest["private"] is True


def test_the_key_ignores_scripts_and_sources_and_follows_dependencies() -> None:
    base = key(PACKAGE)
    assert key({**PACKAGE, "scripts": {}}) == base
    assert key({**PACKAGE, "description": "changed"}) == base
    assert key({**PACKAGE, "dependencies": {"react": "^18.0.0"}}) != base
    assert key(PACKAGE, {"package-lock.json": b"{}"}) != key(PACKAGE, {"package-lock.json": b"{ }"})
    assert key(PACKAGE, image="sha256:b") != base  # another Node image: another Node, platform, tools
    assert cache_key(install_manifest(PACKAGE), {}, image_id="sha256:a", registry="https://other/") != base


def test_install_inputs_are_the_lockfile_config_and_patches_only() -> None:
    files = [
        "package.json",
        "package-lock.json",
        ".npmrc",
        "patches/react+19.patch",
        "src/main.tsx",
        "index.html",
    ]
    plan = plan_install(files, PACKAGE)
    assert plan.inputs == (".npmrc", "package-lock.json", "patches/react+19.patch")
    assert plan.cacheable


def test_workspaces_and_local_folders_are_not_cached() -> None:
    assert not plan_install([], {**PACKAGE, "workspaces": ["packages/*"]}).cacheable
    local = plan_install([], {**PACKAGE, "dependencies": {"lib": "file:../lib"}})
    assert not local.cacheable and "file:" in local.why_not_cached


def test_the_projects_own_install_scripts_run_in_npm_order() -> None:
    assert lifecycle_command(PACKAGE) == "npm run postinstall && npm run prepare"
    assert lifecycle_command({"scripts": {"dev": "vite"}}) is None


def test_eviction_takes_the_least_recently_used_until_the_rest_fits() -> None:
    from orchestrator.pipeline.cache import Entry, least_recently_used

    def entry(key: str, size: int, used: float) -> Entry:
        return Entry(key, f"deps:{key}", size, used, "build", {})

    old, middle, new = entry("old", 300, 1.0), entry("middle", 200, 2.0), entry("new", 500, 3.0)
    assert least_recently_used([new, old, middle], 1000) == []
    assert least_recently_used([new, old, middle], 999) == [old]
    assert least_recently_used([new, old, middle], 500) == [old, middle]
    assert least_recently_used([new, old, middle], 0) == [old, middle, new]


# -- near misses -------------------------------------------------------------------------------

REACT = {"react": "^19", "react-dom": "^19", "vite": "^8", "typescript": "~5.9"}


def candidate(ref: str, direct: dict[str, str], **kw: object) -> Candidate:
    values: dict = {"manager": "npm", "base": "sha256:img", "registry": "r1", "last_used": 0.0, **kw}
    return Candidate(ref, direct=direct, **values)


def pick(candidates: list[Candidate], wanted: dict[str, str]) -> str | None:
    found = nearest(candidates, wanted, manager="npm", base="sha256:img", registry="r1")
    return found.ref if found else None


def test_the_nearest_entry_has_the_most_packages_in_common() -> None:
    entries = [candidate("small", {"vite": "^8"}), candidate("react", REACT)]
    assert pick(entries, {**REACT, "lodash": "^4"}) == "react"


def test_equal_ranges_break_a_tie_then_fewer_extras_then_recent_use() -> None:
    bumped = {**REACT, "react": "^18"}
    entries = [candidate("old-react", bumped), candidate("same", REACT)]
    assert pick(entries, {**REACT, "zod": "^3"}) == "same"
    extra = [candidate("extra", {**REACT, "a": "1", "b": "2"}), candidate("lean", {**REACT, "a": "1"})]
    assert pick(extra, REACT) == "lean"
    recent = [candidate("older", REACT, last_used=1.0), candidate("newer", REACT, last_used=2.0)]
    assert pick(recent, REACT) == "newer"


def test_an_entry_of_another_tool_image_or_registry_is_no_start() -> None:
    for other in ({"manager": "pnpm"}, {"base": "sha256:other"}, {"registry": "r2"}):
        assert pick([candidate("x", REACT, **other)], REACT) is None


def test_less_than_half_in_common_installs_from_scratch() -> None:
    assert pick([candidate("vite-only", {"vite": "^8"})], REACT) is None
    assert pick([candidate("half", {"vite": "^8", "react": "^19"})], REACT) == "half"
    assert pick([], REACT) is None


def test_direct_dependencies_cover_every_section() -> None:
    package = {"dependencies": {"a": "1"}, "devDependencies": {"b": "2"}, "optionalDependencies": {"c": "3"}}
    assert direct_dependencies({**package, "scripts": {"x": "y"}}) == {"a": "1", "b": "2", "c": "3"}
    assert direct_dependencies({"dependencies": "nonsense"}) == {}


def test_the_trusted_npmrc_keeps_only_how_the_tree_is_laid_out() -> None:
    text = "\n".join(
        [
            "# comment",
            "legacy-peer-deps=true",
            "registry=https://evil.example.com/",
            "@acme:registry=https://npm.example.com/",
            "//npm.example.com/:_authToken=${TOKEN}",
            "node-options=--require /app/evil.js",
            "script-shell=/app/evil.sh",
            "cache=/tmp/elsewhere",
            "save-exact = true",
            "git=/app/fake-git",
        ]
    )
    kept, dropped = trusted_npmrc(text)
    assert kept == "legacy-peer-deps=true\nsave-exact = true\n"
    assert set(dropped) == {
        "registry",
        "@acme:registry",
        "//npm.example.com/:_authToken",
        "node-options",
        "script-shell",
        "cache",
        "git",
    }


def lock(**packages: dict) -> bytes:
    return json.dumps({"lockfileVersion": 3, "packages": {"": {}, **packages}}).encode()


def test_only_new_or_changed_packages_with_install_scripts_are_rebuilt() -> None:
    before = lock(**{"node_modules/esbuild": {"version": "0.28.0", "hasInstallScript": True}})
    after = lock(
        **{
            "node_modules/esbuild": {"version": "0.28.0", "hasInstallScript": True},
            "node_modules/@scope/native": {"version": "1.0.0", "hasInstallScript": True},
            "node_modules/a/node_modules/bcrypt": {"version": "5.0.0", "hasInstallScript": True},
            "node_modules/lodash": {"version": "4.17.21"},
        }
    )
    assert install_script_packages(after, before) == ["@scope/native", "bcrypt"]
    bumped = lock(**{"node_modules/esbuild": {"version": "0.28.2", "hasInstallScript": True}})
    assert install_script_packages(bumped, before) == ["esbuild"]
    assert install_script_packages(after, None) == ["@scope/native", "bcrypt", "esbuild"]


def test_an_unreadable_tree_means_rebuild_everything() -> None:
    assert install_script_packages(None, None) is None
    assert install_script_packages(b"{not json", None) is None
    assert install_script_packages(lock(), b"garbage") == []


def test_a_cache_fill_keeps_only_the_installed_tree() -> None:
    import subprocess

    from orchestrator.core.installs import keeping_only_the_install

    command = keeping_only_the_install("npm ci")
    assert command.startswith("npm ci && { ")
    assert "! -name 'node_modules'" in command and "! -name 'package-lock.json'" in command
    assert subprocess.run(["sh", "-n", "-c", command]).returncode == 0  # valid shell
    assert "! -name 'package.json'" in keeping_only_the_install("npm ci", also=("package.json",))
