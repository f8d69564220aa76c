"""The dependency cache: a prepared node_modules per cache key (deps.cache_key), kept as a Docker
image built on the Node image, that build containers start from.

A miss is filled by a **filler** container that receives only the files the install reads (the
dependency fields of package.json, no scripts; the lockfile; the package manager's config),
runs the install, and is committed as ``website-orchestrator/deps:<instance>-<key>``. Build
containers are created from that image: node_modules is there at once, and whatever a build
does to it (its postinstall, Vite's cache) lands in that container's own copy-on-write layer.
An image never changes once committed, so one user's build cannot alter what another's receives.

Last use is kept in the cache index (orchestrator.coordination.cache_index); gc evicts the
least recently used entries beyond the disk budget (an image a live container uses is never
removed).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

from orchestrator.adapters.runtime import KIND_DEPS
from orchestrator.config import Settings
from orchestrator.context import Context
from orchestrator.core import defaults
from orchestrator.core.installs import Candidate

_NS = defaults.LABEL_NAMESPACE


def image_ref(settings: Settings, key: str) -> str:
    return f"{defaults.DEPS_REPOSITORY}:{settings.instance_id}-{key[:48]}"


@dataclass(frozen=True)
class Entry:
    key: str
    ref: str
    size_bytes: int
    """What the entry adds on top of the Node image."""
    last_used: float
    filled_by: str
    labels: dict[str, str]


def least_recently_used(entries: list[Entry], budget_bytes: int) -> list[Entry]:
    """The entries to evict, least recently used first, until the rest fit in ``budget_bytes``."""
    total = sum(e.size_bytes for e in entries)
    evict = []
    for entry in sorted(entries, key=lambda e: e.last_used):
        if total <= budget_bytes:
            break
        evict.append(entry)
        total -= entry.size_bytes
    return evict


class DependencyCache:
    def __init__(self, ctx: Context) -> None:
        self.settings, self.runtime, self.index = ctx.settings, ctx.runtime, ctx.stores.cache

    def lookup(self, key: str) -> str | None:
        """The image holding this key's node_modules, marked as just used; None on a miss."""
        ref = image_ref(self.settings, key)
        if self.runtime.image(ref) is None:
            return None
        self.index.touch(key)
        return ref

    def filling(self, key: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """Held while one build fills ``key``: a build with the same dependencies waits for it
        and then finds a hit, instead of installing the same packages again (the lock is free
        soon after its holder died: orchestrator.coordination.cache_index)."""
        return self.index.filling(key, timeout)

    def save(self, filler_id: str, key: str, build_id: str, described: Candidate | None = None) -> str:
        """Commit a filler container that installed successfully as the entry for ``key``;
        ``described``: what it holds, so that a near miss can start from it later."""
        ref = image_ref(self.settings, key)
        repository, tag = ref.rsplit(":", 1)
        image_labels = {
            f"{_NS}.managed": "true",
            f"{_NS}.instance": self.settings.instance_id,
            f"{_NS}.kind": KIND_DEPS,
            f"{_NS}.deps-key": key,
            f"{_NS}.filled-by": build_id,
        }
        if described is not None:
            image_labels.update(
                {
                    f"{_NS}.deps-manager": described.manager,
                    f"{_NS}.deps-base": described.base,
                    f"{_NS}.deps-registry": described.registry,
                    f"{_NS}.deps-direct": json.dumps(dict(described.direct), sort_keys=True),
                }
            )
        self.runtime.commit(filler_id, repository, tag, image_labels)
        self.index.touch(key)
        return ref

    def candidates(self) -> list[Candidate]:
        """Every entry that says what it holds (a near miss can start from one)."""
        found = []
        for entry in self.entries():
            labels = entry.labels
            try:
                direct = json.loads(labels[f"{_NS}.deps-direct"])
                found.append(
                    Candidate(
                        ref=entry.ref,
                        manager=labels[f"{_NS}.deps-manager"],
                        base=labels[f"{_NS}.deps-base"],
                        registry=labels[f"{_NS}.deps-registry"],
                        direct=direct,
                        last_used=entry.last_used,
                    )
                )
            except (KeyError, ValueError):
                continue  # filled before entries described themselves
        return found

    def layers(self, ref: str) -> int:
        """How many filesystem layers an entry has (near misses stack one on their base)."""
        image = self.runtime.image(ref)
        return len(((image or {}).get("RootFS") or {}).get("Layers") or [])

    def entries(self) -> list[Entry]:
        """Every entry of this installation, least recently used first."""
        base = self.runtime.image(self.settings.node_image)
        base_size = int(base["Size"]) if base else 0
        found = []
        for image in self.runtime.images(
            f"{_NS}.kind={KIND_DEPS}", f"{_NS}.instance={self.settings.instance_id}"
        ):
            image_labels = image.get("Labels") or {}
            key = image_labels.get(f"{_NS}.deps-key", "")
            used = self.index.last_used(key)
            found.append(
                Entry(
                    key=key,
                    ref=image_ref(self.settings, key),
                    size_bytes=max(0, int(image.get("Size", 0)) - base_size),
                    last_used=float(used) if used is not None else float(image.get("Created", 0)),
                    filled_by=image_labels.get(f"{_NS}.filled-by", ""),
                    labels=image_labels,
                )
            )
        return sorted(found, key=lambda e: e.last_used)

    def over_budget(self, budget_bytes: int) -> list[Entry]:
        """The least recently used entries to remove to get within ``budget_bytes``."""
        return least_recently_used(self.entries(), budget_bytes)

    def remove(self, entry: Entry) -> bool:
        """Remove an entry; False when a live container still runs from it."""
        if not self.runtime.remove_image(entry.ref):
            return False
        self.index.forget(entry.key)
        return True
