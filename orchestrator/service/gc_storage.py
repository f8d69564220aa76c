"""gc of what builds leave on disk: the dependency cache beyond its budget, the images type
checks started from, the package store beyond its budget."""

from __future__ import annotations

import time

from orchestrator.adapters.runtime import KIND_DEPS, KIND_STEP_IMAGE
from orchestrator.core import defaults, expiry
from orchestrator.core.exceptions import RuntimeUnavailable
from orchestrator.core.status import Status
from orchestrator.pipeline.cache import DependencyCache
from orchestrator.pipeline.fill import store_name
from orchestrator.service.gc_report import Collection, _status

_BUILD_LABEL = f"{defaults.LABEL_NAMESPACE}.build-id"


class StorageCollection(Collection):
    # -- 6. dependency cache ------------------------------------------------------

    def dependency_cache(self) -> None:
        cache = DependencyCache(self.ctx)
        budget = self.settings.deps_cache_mb * 2**20
        for entry in cache.over_budget(budget):
            idle = expiry.duration(time.time() - entry.last_used)
            why = f"least recently used (last {idle} ago) beyond the {self.settings.deps_cache_mb} MB budget"
            if self.dry_run or cache.remove(entry):
                self.add("evict dependencies", entry.key[:12], why, disk_bytes=entry.size_bytes)

    def step_images(self) -> None:
        """Images a build's type check started from, left by a build that is not in progress."""
        ns = defaults.LABEL_NAMESPACE
        instance = f"{ns}.instance={self.settings.instance_id}"
        parents = {image.get("ParentId") for image in self.runtime.images(f"{ns}.kind={KIND_DEPS}", instance)}
        for image in self.runtime.images(f"{ns}.kind={KIND_STEP_IMAGE}", instance):
            build_id = (image.get("Labels") or {}).get(_BUILD_LABEL, "")
            if _status(self.ctx, build_id) == Status.BUILDING or image["Id"] in parents:
                continue  # in use, or the fetched tree a cache entry was built on (goes with it)
            if self.dry_run or self.runtime.remove_image(image["Id"]):
                self.add(
                    "remove image",
                    image["Id"].removeprefix("sha256:")[:12],
                    f"the type check of build {build_id[:12]}, which is not in progress",
                    disk_bytes=int(image.get("Size") or 0),
                )

    def package_store(self) -> None:
        """Empty the store of downloaded packages when it outgrew its budget (it is a cache:
        the next fill downloads again). Only an operator's run measures it."""
        if self.scheduled:
            return  # sizing asks Docker to measure every volume (seconds on a busy engine)
        name = store_name(self.settings.instance_id)
        try:
            size = self.runtime.volume_size(name)
        except RuntimeUnavailable:  # Docker sizes one request at a time: another gc is measuring
            return
        budget = self.settings.npm_store_mb * 2**20
        if size is None or size <= budget:
            return
        why = f"{size // 2**20} MB, beyond the {self.settings.npm_store_mb} MB budget"
        if self.dry_run or self.runtime.remove_volume(name):
            self.add("empty package store", name, why, disk_bytes=size)
