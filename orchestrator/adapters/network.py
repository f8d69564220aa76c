"""How build containers reach the package registry the way this host does.

A host may resolve the registry through its hosts file or a private DNS, trust it through
an extra CA bundle, or reach it through a proxy; a container sees none of that. The
orchestrator resolves the registry (and proxy) host names here, on the host, hands them to
the container as extra hosts, copies the CA bundle in and points Node at it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from orchestrator.config import Settings
from orchestrator.core import defaults


@dataclass(frozen=True)
class RegistryAccess:
    extra_hosts: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ca_bundle: bytes | None = None
    """Contents of the CA bundle to copy to defaults.CONTAINER_CA_PATH."""
    notes: list[str] = field(default_factory=list)
    """What was done, for the build log."""


def resolve_ipv4(host: str) -> str | None:
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return None
    return str(infos[0][4][0]) if infos else None


def _host_of(url: str | None) -> str | None:
    if not url:
        return None
    return urlsplit(url if "//" in url else f"http://{url}").hostname


def registry_access(settings: Settings) -> RegistryAccess:
    env = {
        "npm_config_registry": settings.npm_registry,
        # npm's own retries back off up to a minute per request: an unreachable registry would
        # hold a build slot for minutes. Retry briefly; the orchestrator retries the whole
        # build with its own back-off (see orchestrator.pipeline.job).
        "npm_config_fetch_retries": "2",
        "npm_config_fetch_retry_mintimeout": "2000",
        "npm_config_fetch_retry_maxtimeout": "10000",
        # yarn has a registry setting of its own (1: yarn_registry; 2+: npmRegistryServer),
        # which would name yarn's own host: that is not reachable (registry-only egress)
        "YARN_REGISTRY": settings.npm_registry,
        "YARN_NPM_REGISTRY_SERVER": settings.npm_registry.rstrip("/"),
        # corepack fetches pnpm and yarn themselves from the same registry, without asking
        "COREPACK_NPM_REGISTRY": settings.npm_registry.rstrip("/"),
        "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0",
        "COREPACK_ENABLE_AUTO_PIN": "0",
        "COREPACK_INTEGRITY_KEYS": settings.corepack_integrity_keys,
    }
    extra_hosts: dict[str, str] = {}
    notes: list[str] = []
    for url in (settings.npm_registry, settings.https_proxy, settings.http_proxy):
        host = _host_of(url)
        if not host or host in extra_hosts or host == "localhost":
            continue
        try:
            socket.inet_aton(host)
            continue  # already an address
        except OSError:
            pass
        address = resolve_ipv4(host)
        if address:
            extra_hosts[host] = address
            notes.append(f"{host} resolved on the host to {address}")
    for name, value in (
        ("https_proxy", settings.https_proxy),
        ("http_proxy", settings.http_proxy),
        ("no_proxy", settings.no_proxy),
    ):
        if value:
            env[name] = env[name.upper()] = value
            if name != "no_proxy":
                env[f"npm_config_{name.replace('_', '-')}"] = value
    ca_bundle = None
    if settings.ca_bundle:
        try:
            ca_bundle = settings.ca_bundle.read_bytes()
        except OSError as exc:
            notes.append(f"CA bundle {settings.ca_bundle} not readable ({exc}); not passed on")
        else:
            env["NODE_EXTRA_CA_CERTS"] = defaults.CONTAINER_CA_PATH
            notes.append(f"host CA bundle {settings.ca_bundle} passed on")
    return RegistryAccess(extra_hosts, env, ca_bundle, notes)
