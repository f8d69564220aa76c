"""node_modules for a build: from the dependency cache, filled first on a miss
(orchestrator.pipeline.fill), and the image the build container starts from."""

from __future__ import annotations

import hashlib
from pathlib import Path

from orchestrator.core.installs import InstallPlan, cache_key, entry_base, install_manifest
from orchestrator.core.status import Outcome, StepName
from orchestrator.pipeline.cache import DependencyCache
from orchestrator.pipeline.containers import BuildRun
from orchestrator.pipeline.fill import FillContext, fill, store_name


def prepare_dependencies(run: BuildRun, install: InstallPlan, package: dict, workspace: Path) -> str:
    """The image to start the build container from: this project's node_modules from the
    cache, filled first on a miss."""
    ctx, recorder = run.ctx, run.recorder
    s = ctx.settings
    cache = DependencyCache(ctx)
    manifest = install_manifest(package)
    inputs = {name: (workspace / name).read_bytes() for name in install.inputs}
    base = ctx.runtime.image(s.node_image)
    base_id = entry_base(base["Id"] if base else s.node_image)
    key = cache_key(manifest, inputs, image_id=base_id, registry=s.npm_registry)
    recorder.update(deps_key=key)
    found = cache.lookup(key)
    if found is not None:
        recorder.skip_step(
            StepName.INSTALL,
            f"Dependencies from the cache (key {key[:12]}): nothing to install",
            status=Outcome.CACHED,
        )
        return found
    recorder.start_step(StepName.INSTALL)
    recorder.log(f"Dependency cache: miss (key {key[:12]})")
    recorder.flush()
    with cache.filling(key, timeout=s.install_timeout):
        found = cache.lookup(key)  # filled meanwhile by a build with the same dependencies
        if found is None:
            context = FillContext(
                runtime=ctx.runtime,
                cache=cache,
                log=recorder.log,
                create=run.create,
                run_alone=run.run_alone,
                discard=run.discard,
                spec=run.spec,
                registry=hashlib.sha256(s.npm_registry.encode()).hexdigest()[:16],
                store_volume=ctx.runtime.ensure_volume(store_name(s.instance_id)),
            )
            image = fill(context, key, install, package, manifest, inputs, base_id, run.build_id)
            recorder.end_step(Outcome.OK, StepName.INSTALL)
            recorder.log(f"Dependency cache: saved (key {key[:12]}) for the next builds")
            return image
    recorder.log(f"Dependencies from the cache (key {key[:12]}), filled meanwhile by another build")
    recorder.end_step(Outcome.CACHED, StepName.INSTALL)
    return found
