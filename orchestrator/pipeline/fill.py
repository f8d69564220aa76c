"""Filling the dependency cache on a miss (see docs/caching.md).

npm, in two parts that trust differently:

1. **fetch**: our own npm, ``--ignore-scripts``, in a container that receives only the
   install's inputs (the dependency fields of package.json, the lockfile, the .npmrc settings
   that shape the tree) and so runs no code of the project's or of its dependencies. It alone
   mounts the host-side store of downloaded packages (npm's content-addressed cache, which
   checks every tarball against its integrity). On a near miss it starts from the cached
   node_modules with the most packages in common and installs only the difference.
2. **scripts**: ``npm rebuild`` of the new packages that have install scripts, in a container
   with no store, started from the fetch's result. Skipped when there are none.

The last container is committed as the entry. pnpm and yarn install in one filler container,
as before (no store, no near miss).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.adapters.runtime import (
    KIND_FETCH,
    KIND_FILLER,
    KIND_STEP_IMAGE,
    STORE_PATH,
    ContainerSpec,
    Runtime,
)
from orchestrator.core import defaults
from orchestrator.core.installs import (
    Candidate,
    InstallPlan,
    PackageManager,
    direct_dependencies,
    install_script_packages,
    keeping_only_the_install,
    nearest,
    trusted_npmrc,
)
from orchestrator.core.status import StepName
from orchestrator.pipeline.cache import DependencyCache

TREE_LOCK = f"{defaults.CONTAINER_WORKDIR}/node_modules/.package-lock.json"
"""npm's record of the tree it laid out in node_modules."""


@dataclass(frozen=True)
class FillContext:
    """What a fill needs of the build it runs for."""

    runtime: Runtime
    cache: DependencyCache
    log: Callable[[str], None]
    create: Callable[[ContainerSpec, Mapping[str, bytes]], str]
    """Create a container of the build's with these files in it (the build removes it on failure)."""
    run_alone: Callable[[str, str], None]
    """Start a container whose process is the step, follow it until it exits; raises on failure."""
    discard: Callable[[str], None]
    spec: Callable[..., ContainerSpec]
    """A ContainerSpec of the build's, with these overrides."""
    registry: str
    """Names the registry (a hash of its URL): an entry from another registry is no start."""
    store_volume: str


def fill(
    ctx: FillContext,
    key: str,
    install: InstallPlan,
    package: Mapping[str, object],
    manifest: bytes,
    inputs: Mapping[str, bytes],
    base_id: str,
    build_id: str,
) -> str:
    """Install into a new cache entry for ``key``; the entry's image."""
    files = {"package.json": manifest, **inputs}
    if install.manager is not PackageManager.NPM:
        filler = ctx.create(
            ctx.spec(kind=KIND_FILLER, command=["sh", "-c", keeping_only_the_install(install.command)]), files
        )
        ctx.run_alone(StepName.INSTALL, filler)
        image = ctx.cache.save(filler, key, build_id)
        ctx.discard(filler)
        return image

    described = Candidate("", install.manager.value, base_id, ctx.registry, direct_dependencies(package))
    start = _near_miss(ctx, described)
    if ".npmrc" in files:
        text, dropped = trusted_npmrc(files[".npmrc"].decode("utf-8", "replace"))
        files = {**files, ".npmrc": text.encode()}
        if dropped:
            names = ", ".join(sorted(set(dropped)))
            ctx.log(f"Dependencies: .npmrc settings not used to fetch packages: {names}")
    # --prefer-online: the store's package metadata is revalidated (a 304 each), so a fill never
    # resolves against metadata another fill cached before the registry moved on; tarballs,
    # addressed by their integrity, still come from the store.
    verb = "npm ci" if start is None and install.lockfile else "npm install"
    command = f"{verb} --ignore-scripts --prefer-online"
    fetch = ctx.create(
        ctx.spec(
            kind=KIND_FETCH,
            image=start.ref if start else None,
            # the inputs stay for the install scripts' step that may follow (npm rebuild reads them)
            command=["sh", "-c", keeping_only_the_install(command, also=tuple(files))],
            store_volume=ctx.store_volume,
            env_extra={"npm_config_cache": STORE_PATH},
            user=defaults.CONTAINER_USER,  # the store's owner; it runs no code of anyone's
        ),
        files,
    )
    before = ctx.runtime.read_file(fetch, TREE_LOCK) if start else None
    ctx.run_alone(StepName.INSTALL, fetch)
    scripts = install_script_packages(ctx.runtime.read_file(fetch, TREE_LOCK), before)
    if scripts == []:
        image = ctx.cache.save(fetch, key, build_id, described)
        ctx.discard(fetch)
        return image
    ctx.log(
        "Dependencies: running the install scripts of "
        + (", ".join(scripts) if scripts else "every package (the installed tree could not be read)")
    )
    labels = step_image_labels(ctx.cache.settings.instance_id, build_id)
    fetched = ctx.runtime.commit(fetch, None, None, labels)  # the entry's parent once it is saved
    ctx.discard(fetch)
    rebuild = "npm rebuild --foreground-scripts" + "".join(f" '{name}'" for name in scripts or [])
    filler = ctx.create(
        ctx.spec(kind=KIND_FILLER, image=fetched, command=["sh", "-c", keeping_only_the_install(rebuild)]), {}
    )
    try:
        ctx.run_alone(StepName.INSTALL, filler)
        image = ctx.cache.save(filler, key, build_id, described)
    except BaseException:
        ctx.discard(filler)
        ctx.runtime.remove_image(fetched)  # (a lost worker's is gc's: a step image of no live build)
        raise
    ctx.discard(filler)
    return image


def _near_miss(ctx: FillContext, wanted: Candidate) -> Candidate | None:
    found = nearest(
        ctx.cache.candidates(),
        wanted.direct,
        manager=wanted.manager,
        base=wanted.base,
        registry=wanted.registry,
    )
    if found is None:
        return None
    if ctx.cache.layers(found.ref) >= defaults.NEAR_MISS_MAX_LAYERS:
        ctx.log(f"Dependency cache: {found.ref} has too many layers to start from; installing from scratch")
        return None
    common = len(wanted.direct.keys() & found.direct.keys())
    ctx.log(
        f"Dependency cache: near miss, starting from {found.ref.rsplit(':', 1)[-1][-12:]} "
        f"({common} of {len(wanted.direct)} packages in common); installing the difference"
    )
    return found


def step_image_labels(instance_id: str, build_id: str) -> dict[str, str]:
    """Labels of a build's short-lived images (gc removes those of builds not in progress)."""
    ns = defaults.LABEL_NAMESPACE
    return {
        f"{ns}.managed": "true",
        f"{ns}.instance": instance_id,
        f"{ns}.kind": KIND_STEP_IMAGE,
        f"{ns}.build-id": build_id,
    }


def store_name(instance_id: str) -> str:
    return f"{defaults.NPM_STORE_VOLUME}-{instance_id}"
