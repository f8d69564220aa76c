"""What decides node_modules, and how it is installed (orchestrator.deps: pure)."""

import json

from orchestrator.deps import (
    PackageManager,
    cache_key,
    install_manifest,
    lifecycle_command,
    package_manager,
    plan_install,
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
    from orchestrator.cache import Entry, least_recently_used

    def entry(key: str, size: int, used: float) -> Entry:
        return Entry(key, f"deps:{key}", size, used, "build", {})

    old, middle, new = entry("old", 300, 1.0), entry("middle", 200, 2.0), entry("new", 500, 3.0)
    assert least_recently_used([new, old, middle], 1000) == []
    assert least_recently_used([new, old, middle], 999) == [old]
    assert least_recently_used([new, old, middle], 500) == [old, middle]
    assert least_recently_used([new, old, middle], 0) == [old, middle, new]
