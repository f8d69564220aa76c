"""The builds' firewall, in this host's iptables: registry-only egress for build containers
(and ip6tables), and the counters of visits to previews.

Build containers run untrusted code. The rules of orchestrator.core.egress go into one chain
per address family, entered from the builds' bridge for traffic to the host (INPUT) and
through it (Docker's DOCKER-USER chain, which Docker keeps ahead of its own forwarding rules;
FORWARD where Docker manages no firewall). A chain is replaced in one iptables-restore
transaction, so a build never meets half a rule set.

``enforce`` runs before every build: it reads the chains back and repairs them when someone
flushed or changed them, at the cost of a few iptables calls (see docs/security.md).

Visits (``IptablesVisits``): one rule per preview port in a chain entered by traffic this host
sends into the builds' bridge (OUTPUT: Docker's proxy for loopback-published ports; forwarded:
its DNAT for the others); the rule's packet counter is the preview's visits (docs/previews.md).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import defaults
from orchestrator.core.egress import Destination, chain_name, jumps, restore_script
from orchestrator.core.exceptions import EgressUnenforced

OPT_OUT = "set ORCHESTRATOR_OPEN_EGRESS=true to build with open egress (not for strangers' code)"


def ipv6_enabled() -> bool:
    return Path("/proc/net/if_inet6").exists()


@dataclass
class _Family:
    tool: str
    restore: str
    ipv6: bool
    fingerprint: tuple[tuple[Destination, ...], str] | None = None
    """The allowed set last put in force and the chain as iptables printed it then."""
    forward: str = "FORWARD"
    """Where forwarded traffic is judged: Docker's DOCKER-USER where Docker keeps one."""


def _run(
    family: _Family, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """One iptables call (iptables-restore when given ``stdin``), waiting for the xtables lock."""
    tool = family.restore if stdin is not None else family.tool
    done = subprocess.run([tool, "-w", *args], input=stdin, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise EgressUnenforced(
            f"cannot confine build containers to the registry: {Path(tool).name} "
            f"{' '.join(args)} failed ({done.stderr.strip() or done.returncode}); {OPT_OUT}"
        )
    return done


def _family(name: str, ipv6: bool) -> _Family | None:
    tool, restore = shutil.which(name), shutil.which(f"{name}-restore")
    if tool is None or restore is None:
        return None
    family = _Family(tool, restore, ipv6)
    if _run(family, "-S", "DOCKER-USER", check=False).returncode == 0:
        family.forward = "DOCKER-USER"
    return family


@dataclass
class IptablesEgress:
    bridge: str = defaults.BUILD_BRIDGE
    families: list[_Family] = field(default_factory=list)

    @property
    def chain(self) -> str:
        return chain_name(self.bridge)

    def _families(self) -> list[_Family]:
        if not self.families:
            names = [("iptables", False)] + ([("ip6tables", True)] if ipv6_enabled() else [])
            for name, ipv6 in names:
                family = _family(name, ipv6)
                if family is None:
                    raise EgressUnenforced(
                        f"cannot confine build containers to the registry: {name} is not "
                        f"installed (Debian's iptables package); or {OPT_OUT}"
                    )
                self.families.append(family)
        return self.families

    def _listing(self, family: _Family) -> str | None:
        done = _run(family, "-S", self.chain, check=False)
        return done.stdout if done.returncode == 0 else None

    def _jumps_present(self, family: _Family) -> bool:
        return all(
            _run(family, "-C", *jump, check=False).returncode == 0
            for jump in jumps(self.chain, self.bridge, family.forward)
        )

    def enforce(self, allowed: list[Destination]) -> None:
        wanted = tuple(sorted(allowed))
        for family in self._families():
            if (
                family.fingerprint is not None
                and family.fingerprint == (wanted, self._listing(family))
                and self._jumps_present(family)
            ):
                continue
            _run(family, "--noflush", stdin=restore_script(self.chain, wanted, family.ipv6))
            for jump in jumps(self.chain, self.bridge, family.forward):
                if _run(family, "-C", *jump, check=False).returncode != 0:
                    _run(family, "-I", jump[0], "1", *jump[1:])
            self._remove_legacy_rule(family)
            family.fingerprint = (wanted, self._listing(family) or "")

    def _remove_legacy_rule(self, family: _Family) -> None:
        """The one rule earlier versions put in INPUT (refuse new connections to the host):
        the chain covers it now."""
        legacy = ["INPUT", "-i", self.bridge, "-m", "conntrack", "--ctstate", "NEW", "-j", "REJECT"]
        while _run(family, "-C", *legacy, check=False).returncode == 0:
            _run(family, "-D", *legacy)

    def allowed(self) -> list[Destination] | None:
        family = self._families()[0]
        listing = self._listing(family)
        if listing is None or not self._jumps_present(family):
            return None
        found = []
        for line in listing.splitlines():
            words = line.split()
            if "-d" in words and "--dport" in words and words[-1] == "RETURN":
                address = words[words.index("-d") + 1].removesuffix("/32")
                found.append(Destination(address, int(words[words.index("--dport") + 1])))
        return sorted(found)

    def remove(self) -> None:
        """Take the chains and their jumps out (tests; an operator uninstalling)."""
        for family in self._families():
            for jump in jumps(self.chain, self.bridge, family.forward):
                while _run(family, "-C", *jump, check=False).returncode == 0:
                    _run(family, "-D", *jump)
            _run(family, "-F", self.chain, check=False)
            _run(family, "-X", self.chain, check=False)
            family.fingerprint = None


@dataclass
class IptablesVisits:
    bridge: str = defaults.BUILD_BRIDGE
    cache_seconds: float = 0.5
    """A listing read this recently answers count() (gc asks once per preview)."""
    _found: _Family | None = None
    _listing: tuple[float, dict[int, int]] | None = None

    @property
    def chain(self) -> str:
        return chain_name(self.bridge, "VISITS")

    @property
    def _iptables(self) -> _Family | None:
        if self._found is None:
            self._found = _family("iptables", ipv6=False)
        return self._found

    def _ok(self, *args: str) -> bool:
        """Whether an iptables call succeeded (a rule is there, a chain was made)."""
        family = self._iptables
        return family is not None and _run(family, *args, check=False).returncode == 0

    def _do(self, *args: str) -> None:
        if self._iptables is not None:
            _run(self._iptables, *args)

    def _entries(self) -> list[list[str]]:
        """Traffic this host sends into the bridge: from its own processes (Docker's proxy of
        loopback-published ports) and forwarded (Docker's DNAT of the others)."""
        forward = self._iptables.forward if self._iptables else "FORWARD"
        return [
            ["OUTPUT", "-o", self.bridge, "-j", self.chain],
            [forward, "-o", self.bridge, "-j", self.chain],
        ]

    def _rule(self, port: int) -> list[str]:
        return [self.chain, "-p", "tcp", "-m", "tcp", "--dport", str(port), "-j", "RETURN"]

    def watch(self, port: int) -> None:
        if self._iptables is None:
            return
        self._ok("-N", self.chain)  # made once: an existing chain is kept, and its counters
        for entry in self._entries():
            if not self._ok("-C", *entry):
                self._do("-I", entry[0], "1", *entry[1:])
        if not self._ok("-C", *self._rule(port)):
            self._do("-A", *self._rule(port))
        self._listing = None

    def counts(self) -> dict[int, int]:
        """Every watched port's count, from one listing."""
        if self._listing is not None and time.monotonic() - self._listing[0] < self.cache_seconds:
            return self._listing[1]
        family = self._iptables
        done = _run(family, "-L", self.chain, "-n", "-v", "-x", check=False) if family else None
        found: dict[int, int] = {}
        for line in done.stdout.splitlines() if done is not None and done.returncode == 0 else []:
            words = line.split()
            port = next((w.removeprefix("dpt:") for w in words if w.startswith("dpt:")), None)
            if port is not None and words[0].isdigit():
                found[int(port)] = found.get(int(port), 0) + int(words[0])
        self._listing = (time.monotonic(), found)
        return found

    def count(self, port: int) -> int | None:
        return self.counts().get(port)

    def keep(self, ports: set[int]) -> list[int]:
        self._listing = None
        dropped = sorted(p for p in self.counts() if p not in ports)
        for port in dropped:  # (another gc run may take it out first: that is as good)
            while self._ok("-C", *self._rule(port)) and self._ok("-D", *self._rule(port)):
                pass
        self._listing = None
        return dropped

    def remove(self) -> None:
        """Take the chain and its entries out (tests; an operator uninstalling)."""
        for entry in self._entries():
            while self._ok("-C", *entry):
                self._do("-D", *entry)
        self._ok("-F", self.chain)
        self._ok("-X", self.chain)
        self._listing = None
