"""Keep build containers away from this host's own services.

Build containers run untrusted code. Redis and the API listen on loopback by default, out of
their reach, but anything listening on a host address (0.0.0.0, the bridge gateway, the
host's LAN address) would be reachable. One iptables rule refuses every *new* connection
that enters the host from the build network's bridge; replies to connections the host
opens (publishing preview ports, following logs) still pass.
"""

from __future__ import annotations

import shutil
import subprocess

from orchestrator.core import defaults


def rule(bridge: str = defaults.BUILD_BRIDGE) -> list[str]:
    return ["INPUT", "-i", bridge, "-m", "conntrack", "--ctstate", "NEW", "-j", "REJECT"]


def ensure_host_isolation(bridge: str = defaults.BUILD_BRIDGE) -> str | None:
    """Install the rule unless present. Returns a warning when it could not be installed."""
    iptables = shutil.which("iptables")
    if iptables is None:
        return "iptables not found: build containers can reach services listening on host addresses"
    if subprocess.run([iptables, "-C", *rule(bridge)], capture_output=True).returncode == 0:
        return None
    added = subprocess.run([iptables, "-I", *rule(bridge)], capture_output=True, text=True)
    if added.returncode != 0:
        return (
            f"could not add the firewall rule ({added.stderr.strip()}): build containers can "
            "reach services listening on host addresses"
        )
    return None
