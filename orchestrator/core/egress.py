"""Where build containers may connect: the registry and the proxy, nothing else.

Pure rules; orchestrator.adapters.firewall puts them in the host's firewall. One chain per
address family holds them, entered from the builds' bridge for traffic to the host (INPUT) and
through it (FORWARD): replies to connections already made pass, new connections to an allowed
address and port pass, everything else (the host, the LAN, link-local and metadata addresses,
other containers, DNS servers) is refused. IPv6 has no allowed address: the registry is
resolved to IPv4 on the host (orchestrator.adapters.network).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, order=True)
class Destination:
    """An address and TCP port build containers may open connections to."""

    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


def chain_name(bridge: str, purpose: str = "EGRESS") -> str:
    """The firewall chain of a bridge's rules for ``purpose`` (iptables allows 28 characters)."""
    return f"{bridge.upper()}-{purpose}"[:28]


def allowed_destinations(urls: Iterable[str | None], resolved: Mapping[str, str]) -> list[Destination]:
    """The registry's and proxies' addresses and ports. ``resolved`` maps a host name to the
    IPv4 address the host resolved it to; a URL whose host is neither an address nor resolved
    allows nothing (the container could not reach it anyway)."""
    found: set[Destination] = set()
    for url in urls:
        if not url:
            continue
        parts = urlsplit(url if "//" in url else f"http://{url}")
        host = parts.hostname
        if not host:
            continue
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = resolved.get(host, host)
        try:
            if ipaddress.ip_address(address).version == 4:
                found.add(Destination(address, port))
        except ValueError:
            continue
    return sorted(found)


def chain_rules(chain: str, allowed: Iterable[Destination], ipv6: bool = False) -> list[list[str]]:
    """The chain's rules in order, each as iptables arguments after ``-A``."""
    rules = [[chain, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"]]
    if not ipv6:
        for d in allowed:
            rules.append(
                [
                    chain,
                    "-d",
                    f"{d.address}/32",
                    "-p",
                    "tcp",
                    "-m",
                    "tcp",
                    "--dport",
                    str(d.port),
                    "-j",
                    "RETURN",
                ]
            )
    rules.append([chain, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"])
    unreachable = "icmp6-adm-prohibited" if ipv6 else "icmp-admin-prohibited"
    rules.append([chain, "-j", "REJECT", "--reject-with", unreachable])
    return rules


def restore_script(chain: str, allowed: Iterable[Destination], ipv6: bool = False) -> str:
    """iptables-restore input that replaces the chain's rules in one transaction (declaring a
    chain empties it, even with --noflush, and leaves every other chain alone)."""
    lines = ["*filter", f":{chain} - [0:0]"]
    lines += ["-A " + " ".join(rule) for rule in chain_rules(chain, allowed, ipv6)]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def jumps(chain: str, bridge: str, forward_chain: str) -> list[list[str]]:
    """Where traffic from the bridge enters the chain: to the host, and through it."""
    return [["INPUT", "-i", bridge, "-j", chain], [forward_chain, "-i", bridge, "-j", chain]]
