"""Build containers reach the registry and proxy only: put that in force before a build's
first container starts, or refuse to build (docs/security.md)."""

from __future__ import annotations

from orchestrator.adapters.network import RegistryAccess
from orchestrator.context import Context
from orchestrator.core.egress import allowed_destinations


def confine_egress(ctx: Context, access: RegistryAccess) -> str:
    """Enforce registry-only egress for ``access`` (raises EgressUnenforced when this host
    cannot) and say what is in force, for the build log."""
    s = ctx.settings
    if s.open_egress:
        return "open: build containers may connect to any address (ORCHESTRATOR_OPEN_EGRESS)"
    allowed = allowed_destinations((s.npm_registry, s.https_proxy, s.http_proxy), access.extra_hosts)
    ctx.egress.enforce(allowed)
    if not allowed:
        return "closed: the registry's address is unknown on this host, so nothing is reachable"
    return "only " + ", ".join(str(d) for d in allowed) + " (the registry and proxy)"
