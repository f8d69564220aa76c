"""Registry-only egress for build containers, in this host's firewall (iptables and ip6tables).

Build containers run untrusted code. The rules of orchestrator.core.egress go into one chain
per address family, entered from the builds' bridge for traffic to the host (INPUT) and
through it (Docker's DOCKER-USER chain, which Docker keeps ahead of its own forwarding rules;
FORWARD where Docker manages no firewall). A chain is replaced in one iptables-restore
transaction, so a build never meets half a rule set.

``enforce`` runs before every build: it reads the chains back and repairs them when someone
flushed or changed them, at the cost of a few iptables calls (see docs/security.md).
"""

from __future__ import annotations

import shutil
import subprocess
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
                tool, restore = shutil.which(name), shutil.which(f"{name}-restore")
                if tool is None or restore is None:
                    raise EgressUnenforced(
                        f"cannot confine build containers to the registry: {name} is not "
                        f"installed (Debian's iptables package); or {OPT_OUT}"
                    )
                family = _Family(tool, restore, ipv6)
                if self._run(family, "-S", "DOCKER-USER", check=False).returncode == 0:
                    family.forward = "DOCKER-USER"
                self.families.append(family)
        return self.families

    def _run(
        self, family: _Family, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        tool = family.restore if stdin is not None else family.tool
        done = subprocess.run([tool, "-w", *args], input=stdin, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise EgressUnenforced(
                f"cannot confine build containers to the registry: {Path(tool).name} "
                f"{' '.join(args)} failed ({done.stderr.strip() or done.returncode}); {OPT_OUT}"
            )
        return done

    def _listing(self, family: _Family) -> str | None:
        done = self._run(family, "-S", self.chain, check=False)
        return done.stdout if done.returncode == 0 else None

    def _jumps_present(self, family: _Family) -> bool:
        return all(
            self._run(family, "-C", *jump, check=False).returncode == 0
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
            self._run(family, "--noflush", stdin=restore_script(self.chain, wanted, family.ipv6))
            for jump in jumps(self.chain, self.bridge, family.forward):
                if self._run(family, "-C", *jump, check=False).returncode != 0:
                    self._run(family, "-I", jump[0], "1", *jump[1:])
            self._remove_legacy_rule(family)
            family.fingerprint = (wanted, self._listing(family) or "")

    def _remove_legacy_rule(self, family: _Family) -> None:
        """The one rule earlier versions put in INPUT (refuse new connections to the host):
        the chain covers it now."""
        legacy = ["INPUT", "-i", self.bridge, "-m", "conntrack", "--ctstate", "NEW", "-j", "REJECT"]
        while self._run(family, "-C", *legacy, check=False).returncode == 0:
            self._run(family, "-D", *legacy)

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
                while self._run(family, "-C", *jump, check=False).returncode == 0:
                    self._run(family, "-D", *jump)
            self._run(family, "-F", self.chain, check=False)
            self._run(family, "-X", self.chain, check=False)
            family.fingerprint = None
