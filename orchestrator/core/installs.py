"""What decides a project's node_modules, and how to install it: pure logic, no I/O.

The dependency cache (cache.py) keys a prepared node_modules by :func:`cache_key`: the files
that decide the install (the lockfile, or package.json's dependency fields when there is none,
plus the package manager's own configuration files), the Node image and the registry. Its
input, :func:`install_inputs`, holds **no** lifecycle script of the project itself: the cache
is filled from those files alone, so that nothing a user's build runs can reach what another
user's build receives (see docs/caching.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orchestrator.core.defaults import CONTAINER_WORKDIR


class PackageManager(StrEnum):
    NPM = "npm"
    PNPM = "pnpm"
    YARN = "yarn"


LOCKFILES: dict[str, PackageManager] = {
    "package-lock.json": PackageManager.NPM,
    "npm-shrinkwrap.json": PackageManager.NPM,
    "pnpm-lock.yaml": PackageManager.PNPM,
    "yarn.lock": PackageManager.YARN,
}
"""Each lockfile, and the tool it belongs to (the first found wins, in this order)."""

MANIFEST_FIELDS = (
    "type",
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "bundledDependencies",
    "overrides",
    "resolutions",
    "pnpm",
    "packageManager",
    "engines",
)
"""The fields of package.json that decide node_modules. ``scripts`` is not one: the project's
own lifecycle scripts run in its build container, never in the cache. Nor are ``name`` and
``version``: two projects with the same dependencies share one entry."""

CONFIG_FILES = (".npmrc", ".yarnrc", ".yarnrc.yml", ".pnpmfile.cjs", "pnpm-workspace.yaml")
"""Package manager configuration that changes what is installed."""

CONFIG_DIRS = ("patches/", ".yarn/releases/", ".yarn/patches/", ".yarn/plugins/")
"""Folders whose files the install reads (patched dependencies, a pinned yarn)."""

LIFECYCLE_SCRIPTS = ("preinstall", "install", "postinstall", "preprepare", "prepare", "postprepare")
"""The project's own scripts an install runs, in npm's order."""

_PACKAGE_MANAGER_FIELD = re.compile(r"^(npm|pnpm|yarn)@(\d+)")


@dataclass(frozen=True)
class InstallPlan:
    manager: PackageManager
    command: str
    """The install command, run in the cache filler (or the build container when uncacheable)."""
    lockfile: str | None
    inputs: tuple[str, ...]
    """The uploaded files the install reads besides package.json (lockfile, config, patches)."""
    cacheable: bool
    why_not_cached: str = ""
    lifecycle: str | None = None
    """The project's own install scripts, run in its build container after the cached install."""

    @property
    def env(self) -> dict[str, str]:
        """Where the tools keep their downloads: /tmp, which the cache never captures."""
        env = {"npm_config_cache": "/tmp/npm-cache", "COREPACK_HOME": "/tmp/corepack"}
        if self.manager is PackageManager.PNPM:
            env["npm_config_store_dir"] = "/tmp/pnpm-store"
        if self.manager is PackageManager.YARN:
            env["YARN_CACHE_FOLDER"] = "/tmp/yarn-cache"
            env["YARN_NODE_LINKER"] = "node-modules"  # Yarn 2+: a node_modules folder, not PnP
            env["YARN_ENABLE_GLOBAL_CACHE"] = "false"
        return env


def keeping_only_the_install(command: str, also: tuple[str, ...] = ()) -> str:
    """``command``, then the removal of whatever it wrote besides node_modules, a lockfile and
    the files named in ``also``: a cache entry holds the installed tree only, never the tools'
    caches, /tmp, the home folder, or the inputs copied in (the build copies its own upload
    over the entry)."""
    keep = " ".join(f"! -name '{name}'" for name in ("node_modules", *LOCKFILES, *also))
    work = CONTAINER_WORKDIR
    clean = (
        'find /tmp /var/tmp "$HOME" -mindepth 1 -delete 2>/dev/null; '
        f"find {work} -mindepth 1 -maxdepth 1 {keep} -exec rm -rf {{}} +; "
        # each build runs as a user of its own, in the builds' group: the tree is the group's
        f'find {work} ! -type l -user "$(id -u)" ! -perm -g+w -exec chmod g+w {{}} + 2>/dev/null; true'
    )
    return f"{command} && {{ {clean}; }}"


def package_manager(files: Collection[str], package: Mapping[str, Any]) -> tuple[PackageManager, str | None]:
    """The tool the lockfile belongs to, else the one package.json's packageManager names, else npm."""
    for lockfile, manager in LOCKFILES.items():
        if lockfile in files:
            return manager, lockfile
    declared = package.get("packageManager")
    if isinstance(declared, str) and (found := _PACKAGE_MANAGER_FIELD.match(declared)):
        return PackageManager(found[1]), None
    return PackageManager.NPM, None


def yarn_is_classic(lockfile_text: str | None, package: Mapping[str, Any]) -> bool:
    declared = package.get("packageManager")
    if isinstance(declared, str) and (found := _PACKAGE_MANAGER_FIELD.match(declared)):
        return found[1] == "yarn" and found[2] == "1"
    return lockfile_text is None or "# yarn lockfile v1" in lockfile_text


def install_command(manager: PackageManager, lockfile: str | None, classic_yarn: bool = True) -> str:
    if manager is PackageManager.NPM:
        return "npm ci" if lockfile else "npm install"
    if manager is PackageManager.PNPM:
        return "corepack pnpm install --frozen-lockfile" if lockfile else "corepack pnpm install"
    if classic_yarn:
        return "corepack yarn install --frozen-lockfile" if lockfile else "corepack yarn install"
    return "corepack yarn install --immutable" if lockfile else "corepack yarn install"


def lifecycle_command(package: Mapping[str, Any]) -> str | None:
    scripts = package.get("scripts")
    if not isinstance(scripts, dict):
        return None
    present = [name for name in LIFECYCLE_SCRIPTS if isinstance(scripts.get(name), str)]
    return " && ".join(f"npm run {name}" for name in present) or None


def plan_install(
    files: Collection[str], package: Mapping[str, Any], lockfile_text: str | None = None
) -> InstallPlan:
    """How to install the project's dependencies, and whether the result can be cached."""
    manager, lockfile = package_manager(files, package)
    classic = manager is not PackageManager.YARN or yarn_is_classic(lockfile_text, package)
    inputs = tuple(
        sorted(
            f
            for f in files
            if f == lockfile or f in CONFIG_FILES or any(f.startswith(d) for d in CONFIG_DIRS)
        )
    )
    why_not = ""
    if "workspaces" in package or "pnpm-workspace.yaml" in files:
        why_not = "a workspace (monorepo): its packages' own files decide the install"
    elif "file:" in json.dumps({k: package.get(k) for k in MANIFEST_FIELDS}):
        why_not = "a dependency on a local folder (file:)"
    return InstallPlan(
        manager=manager,
        command=install_command(manager, lockfile, classic),
        lockfile=lockfile,
        inputs=inputs,
        cacheable=not why_not,
        why_not_cached=why_not,
        lifecycle=lifecycle_command(package),
    )


def install_manifest(package: Mapping[str, Any]) -> bytes:
    """The package.json the cache is filled from: the dependency fields only, no scripts."""
    kept = {key: package[key] for key in MANIFEST_FIELDS if key in package}
    kept["name"] = "dependencies"
    kept["private"] = True
    return json.dumps(kept, indent=2, sort_keys=True).encode()


ENTRY_FORMAT = 2
"""What a cache entry is: 2 holds the installed tree only, group-writable for the builds' own
users (1: the filler's whole layer, its user's alone). Entries of another format are neither
hits nor near misses."""


def entry_base(image_id: str) -> str:
    """What an entry is made on: the Node image, in this entry format."""
    return f"format-{ENTRY_FORMAT}:{image_id}"


def cache_key(manifest: bytes, inputs: Mapping[str, bytes], *, image_id: str, registry: str) -> str:
    """sha256 of everything that decides node_modules: the manifest (with a lockfile, its
    dependency fields still matter: npm ci refuses a lockfile that disagrees), the install's
    input files, the image (Node version, platform, the tools) and the registry."""
    digest = hashlib.sha256()
    digest.update(b"image\0" + image_id.encode() + b"\0registry\0" + registry.encode() + b"\0")
    digest.update(b"package.json\0" + hashlib.sha256(manifest).hexdigest().encode() + b"\n")
    for name in sorted(inputs):
        digest.update(name.encode() + b"\0" + hashlib.sha256(inputs[name]).hexdigest().encode() + b"\n")
    return digest.hexdigest()


# -- near misses: a cached node_modules to start from when no entry matches exactly ----------

NPMRC_KEYS_KEPT = frozenset(
    {
        "legacy-peer-deps",
        "strict-peer-deps",
        "engine-strict",
        "install-strategy",
        "install-links",
        "omit",
        "include",
        "optional",
        "save-exact",
        "save-prefix",
        "package-lock",
    }
)
"""The settings of a project's .npmrc that the trusted fetcher honours: how to resolve and lay
out the tree. Anything else (registries, scripts, the cache, node options, git, proxies) could
point npm elsewhere or run code, and is dropped."""


def trusted_npmrc(text: str) -> tuple[str, list[str]]:
    """A project's .npmrc reduced to NPMRC_KEYS_KEPT, and the keys dropped."""
    kept, dropped = [], []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key = line.split("=", 1)[0].strip()
        if key in NPMRC_KEYS_KEPT and "${" not in line:
            kept.append(line)
        else:
            dropped.append(key)
    return "".join(f"{line}\n" for line in kept), dropped


def direct_dependencies(package: Mapping[str, Any]) -> dict[str, str]:
    """Name → version range of every package the project names itself."""
    found: dict[str, str] = {}
    for section in ("dependencies", "devDependencies", "optionalDependencies"):
        values = package.get(section)
        if isinstance(values, dict):
            found.update({str(k): str(v) for k, v in values.items()})
    return found


@dataclass(frozen=True)
class Candidate:
    """A cached node_modules, described by what it was installed for."""

    ref: str
    manager: str
    base: str
    """The Node image's id it was installed on."""
    registry: str
    direct: Mapping[str, str]
    last_used: float = 0.0


def nearest(
    candidates: Collection[Candidate], wanted: Mapping[str, str], *, manager: str, base: str, registry: str
) -> Candidate | None:
    """The cached node_modules with the most packages in common with ``wanted`` (same tool,
    Node image and registry); at least half of ``wanted`` must be there, else None (a cold
    install is as quick). Ties: more ranges equal, fewer extra packages, most recently used."""
    best, best_rank = None, None
    for candidate in candidates:
        if (candidate.manager, candidate.base, candidate.registry) != (manager, base, registry):
            continue
        common = wanted.keys() & candidate.direct.keys()
        if not common or 2 * len(common) < len(wanted):
            continue
        same = sum(1 for name in common if wanted[name] == candidate.direct[name])
        extra = len(candidate.direct.keys() - wanted.keys())
        rank = (len(common), same, -extra, candidate.last_used)
        if best_rank is None or rank > best_rank:
            best, best_rank = candidate, rank
    return best


def install_script_packages(lock_after: bytes | None, lock_before: bytes | None) -> list[str] | None:
    """Packages of an npm tree (node_modules/.package-lock.json) that have install scripts and
    are new or changed since ``lock_before``: the ones ``npm rebuild`` must run. None when the
    tree cannot be read (then rebuild everything)."""
    after = _lock_packages(lock_after)
    if after is None:
        return None
    before = _lock_packages(lock_before) or {}
    names = set()
    for path, info in after.items():
        if not info.get("hasInstallScript"):
            continue
        if before.get(path, {}).get("version") == info.get("version") and path in before:
            continue
        names.add(path.rsplit("node_modules/", 1)[-1])
    return sorted(names)


def _lock_packages(raw: bytes | None) -> dict[str, dict[str, Any]] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    packages = data.get("packages") if isinstance(data, dict) else None
    if not isinstance(packages, dict):
        return None
    return {str(k): v for k, v in packages.items() if k and isinstance(v, dict)}
