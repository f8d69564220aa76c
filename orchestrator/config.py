"""Operator settings, read from the environment (prefix ``ORCHESTRATOR_``) in one typed place."""

from __future__ import annotations

import os
import socket
import subprocess
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.core import defaults
from orchestrator.core.hosts import LOCAL_ENGINE, check_host_id, default_host_id


def _default_ca_bundle() -> Path | None:
    """The CA bundle the host's own Node trusts, when it is configured."""
    value = os.environ.get("NODE_EXTRA_CA_CERTS")
    return Path(value) if value else None


def _default_memory_budget_mb() -> int:
    import psutil

    return int(psutil.virtual_memory().total * 0.75 / 2**20)


@lru_cache
def _default_registry() -> str:
    """The registry this host's npm is configured with (its environment, else ``npm config``)."""
    configured = os.environ.get("npm_config_registry")  # noqa: SIM112 (npm's own name)
    if configured:
        return configured
    try:
        found = subprocess.run(
            ["npm", "config", "get", "registry"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise ValueError(
            f"cannot ask npm for its registry ({exc}): install npm or set ORCHESTRATOR_NPM_REGISTRY"
        ) from exc
    if not found:
        raise ValueError("npm names no registry: set ORCHESTRATOR_NPM_REGISTRY")
    return found


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")

    data_dir: Path = Field(default=Path(".orchestrator"))
    """Uploads, workspaces and the SQLite database live here."""

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "ORCHESTRATOR_DATABASE_URL")
    )
    """SQLAlchemy URL; unset means SQLite in data_dir."""

    redis_url: str = Field(
        default=defaults.REDIS_URL,
        validation_alias=AliasChoices("REDIS_URL", "ORCHESTRATOR_REDIS_URL"),
    )

    node_image: str = defaults.NODE_IMAGE
    public_host: str = "localhost"
    """Host name put in preview URLs; Vite is told to accept it."""
    preview_bind: str = "127.0.0.1"
    """Host address preview ports are published on (0.0.0.0 to share previews on the network)."""
    port_range_start: int = defaults.PREVIEW_PORT_RANGE[0]
    port_range_end: int = defaults.PREVIEW_PORT_RANGE[1]

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_processes: int = Field(default_factory=lambda: os.cpu_count() or 1)
    """API processes (uvicorn workers): uploads are CPU work (receive, unzip-check, record)."""

    npm_registry: str = Field(default_factory=_default_registry)
    """Registry build containers install from; its host is resolved on this host."""
    ca_bundle: Path | None = Field(default_factory=_default_ca_bundle)
    """CA bundle copied into build containers and named by NODE_EXTRA_CA_CERTS."""
    corepack_integrity_keys: str = "0"
    """Keys corepack checks pnpm and yarn downloads against. "0": no signature check, the same
    trust npm gives every package it installs (registry mirrors often serve no signatures);
    corepack's own JSON of keys to check them."""
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None
    refuse_vulnerable_vite: bool = True
    """Fail a build whose Vite has published holes in its development server
    (orchestrator/core/advisories.py), naming them and the release to upgrade to."""
    open_egress: bool = False
    """Let build containers connect to any address. Off, they reach the registry and proxy
    only, and a worker that cannot enforce that builds nothing. For trusted code only."""

    memory_limit: str = defaults.MEMORY_LIMIT
    nano_cpus: int = defaults.NANO_CPUS
    pids_limit: int = defaults.PIDS_LIMIT

    install_timeout: int = defaults.INSTALL_TIMEOUT
    typecheck_timeout: int = defaults.TYPECHECK_TIMEOUT
    serve_timeout: int = defaults.SERVE_TIMEOUT
    build_timeout_seconds: int | None = Field(
        default=None, validation_alias=AliasChoices("ORCHESTRATOR_BUILD_TIMEOUT")
    )
    """One wall-clock limit for a whole build, from its start to its preview answering;
    unset: the install, type-check and serve timeouts added up."""

    max_building: int = 4
    """Builds in progress at once across every worker (a 0.25-CPU build each: 4 fill one core of
    two, leaving the other to the API, Redis and the previews)."""
    max_building_per_user: int = 2
    max_queued_per_user: int = 20
    """A user's builds waiting or in progress at once (429 past it; admins have no quota)."""
    max_previews_per_user: int = 10
    """A user's websites with a live preview at once."""
    max_uploads_per_minute: int = 30
    """A user's uploads in any minute."""
    aging_seconds: float = defaults.AGING_SECONDS
    build_memory_budget_mb: int = Field(default_factory=lambda: _default_memory_budget_mb())
    """Memory the orchestrator's containers may use together: running previews by what they
    really use, a starting build by its limit. Default: 75% of the host's memory (an idle
    react-ts preview uses about 150 MB, see docs/benchmarks.md)."""
    max_memory_percent: float = 90.0
    """The host's own memory use above which builds wait."""
    max_cpu_percent: float = 80.0
    """Host CPU use above which builds wait."""
    disk_quota_mb: int = defaults.DISK_QUOTA_MB
    """What one build container, cache filler or preview may write on top of its image; past
    it the build fails, or the preview is stopped (measured: see core/disk_quota.py). 0: none."""
    min_free_disk_mb: int = defaults.MIN_FREE_DISK_MB
    """Builds wait while less than this is free where they write (the data folder, Docker's)."""
    max_attempts: int = defaults.MAX_ATTEMPTS

    idle_ttl: int = defaults.IDLE_TTL
    """Seconds without traffic after which a live preview is stopped (when it does not sleep:
    sleep_after 0, or a shorter idle_ttl)."""
    max_age: int = defaults.MAX_AGE
    """Seconds a preview may stay awake at most, counted from its last start or wake."""
    sleep_after: int = defaults.SLEEP_AFTER
    """Seconds without a request after which a preview sleeps: its container is stopped, its
    files, port and URLs kept; the next request through the gateway wakes it. 0: never sleep."""
    sleep_lifetime: int = defaults.SLEEP_LIFETIME
    """Seconds a preview may sleep before it is removed."""

    gateway_host: str = "127.0.0.1"
    """Address the preview gateway listens on."""
    gateway_port: int = defaults.GATEWAY_PORT
    preview_domain: str = defaults.PREVIEW_DOMAIN
    """Host names of the gateway: ``<website id>.<domain>`` follows the website's newest live
    build, ``<build id>.b.<domain>`` is one build's. Needs a wildcard DNS name off loopback."""
    gateway_url_port: int | None = None
    """Port put in gateway URLs (a proxy in front of the gateway); unset: gateway_port."""
    preview_access: str | None = None
    """Default access to previews through the gateway: "open" or "protected" (a share link or
    an API token of the owner). Unset: open while the gateway and the preview ports listen on
    loopback only, else protected."""
    share_secret: str | None = None
    """Key that signs share links; unset: one made once and kept in data_dir (set it when
    several hosts run gateways)."""
    replace_drain_seconds: float = defaults.REPLACE_DRAIN_SECONDS
    """Seconds a replaced preview keeps answering after its successor went live."""
    gc_interval: int = defaults.GC_INTERVAL
    """Seconds between the service's own gc runs (0: only when an operator runs it)."""

    build_cpus: float = Field(default_factory=lambda: float(os.cpu_count() or 1))
    """CPUs a build may use while it installs, type checks and starts (idle cores make it
    faster); once live, its preview goes back to nano_cpus. 0: no boost."""
    deps_cache_mb: int = defaults.DEPS_CACHE_MB
    """Disk the dependency cache may use; gc evicts the least recently used beyond it."""
    npm_store_mb: int = defaults.NPM_STORE_MB
    """Disk the store of downloaded packages may use; gc empties it beyond that."""
    reuse_seconds: int = defaults.REUSE_SECONDS
    """An upload identical to one built this recently reuses that build's outcome."""

    log_lines_kept: int = defaults.LOG_LINES_KEPT
    max_upload_bytes: int = defaults.MAX_UPLOAD_BYTES
    max_unpacked_bytes: int = defaults.MAX_UNPACKED_BYTES
    max_files: int = defaults.MAX_FILES

    instance_id: str = "default"
    """Names this orchestrator on labels, so that two installations on one engine keep apart."""

    host_id: str | None = None
    """The host this process's engine is (core.hosts): it names the host's queue, ports and
    cache. Unset: the machine's name (and a digest of DOCKER_HOST when that is set). Set it
    where the machine's name is not stable, as in a container."""
    host_address: str | None = None
    """Where the gateway and the other hosts reach this host's preview ports; unset: the
    address the ports are published on (loopback by default: one machine)."""
    host_engine: str | None = None
    """This host's Docker engine as the API, the gateway and other hosts reach it; unset:
    DOCKER_HOST, else the local socket."""

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'orchestrator.db').resolve()}"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def workspaces_dir(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def build_timeout(self) -> int:
        steps = self.install_timeout + self.typecheck_timeout + self.serve_timeout
        return self.build_timeout_seconds or steps

    @property
    def build_nano_cpus(self) -> int:
        return max(self.nano_cpus, int(self.build_cpus * 1_000_000_000))

    @property
    def preview_address(self) -> str:
        """Where this host reaches the preview ports it publishes."""
        return "127.0.0.1" if self.preview_bind in ("0.0.0.0", "") else self.preview_bind

    @property
    def host(self) -> str:
        """This process's host id (core.hosts)."""
        engine = os.environ.get("DOCKER_HOST")
        return check_host_id(self.host_id or default_host_id(socket.gethostname(), engine))

    @property
    def engine_url(self) -> str:
        return self.host_engine or os.environ.get("DOCKER_HOST") or LOCAL_ENGINE

    @property
    def reached_at(self) -> str:
        """Where others reach this host's preview ports."""
        return self.host_address or self.preview_address

    def preview_url(self, port: int) -> str:
        return f"http://{self.public_host}:{port}/"

    def gateway_url(self, name: str) -> str:
        """The gateway's URL of host name ``name`` (a website id, or ``<build id>.b``)."""
        port = self.gateway_url_port or self.gateway_port
        suffix = "" if port == 80 else f":{port}"
        return f"http://{name}.{self.preview_domain}{suffix}/"

    def website_url(self, website_id: str) -> str:
        return self.gateway_url(website_id)

    def build_url(self, build_id: str) -> str:
        return self.gateway_url(f"{build_id}.b")

    @property
    def default_preview_access(self) -> str:
        if self.preview_access:
            return self.preview_access
        loopback = ("127.0.0.1", "localhost", "::1")
        beyond = self.gateway_host not in loopback or self.preview_bind not in loopback
        return "protected" if beyond else "open"
