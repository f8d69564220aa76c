"""Vite releases whose development server has published security holes, and what to upgrade to.

A preview runs the project's own Vite on a published port, so a Vite with a known file-read or
request-forgery hole is refused before it serves (docs/security.md). The registry these hosts
use does not answer npm's audit endpoint, so the advisories are kept here, from GitHub's
advisory database (each entry names its GHSA id); only those that touch the development
server on Linux are listed. Add new ones as they are published.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

Version = tuple[int, int, int, int]
"""major, minor, patch, and 0 for a release or -1 for a pre-release of it (which comes first)."""


def parse(text: str) -> Version | None:
    found = re.fullmatch(r"\s*v?(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(\+\S*)?\s*", text)
    if not found:
        return None
    return int(found[1]), int(found[2]), int(found[3]), -1 if found[4] else 0


def shown(version: Version) -> str:
    return ".".join(str(n) for n in version[:3])


@dataclass(frozen=True)
class Advisory:
    id: str
    cve: str
    title: str
    affected: tuple[tuple[str, str], ...]
    """Ranges [introduced, fixed) of affected versions."""

    def fix_for(self, version: Version) -> Version | None:
        """The release that fixes this for ``version``, None when it is not affected."""
        for introduced, fixed in self.affected:
            low, high = parse(introduced), parse(fixed)
            assert low is not None and high is not None
            if low <= version < high:
                return high
        return None


VITE_ADVISORIES = (
    Advisory(
        "GHSA-vg6x-rcgg-rjx6",
        "CVE-2025-24010",
        "any website could send requests to the development server and read the responses",
        (("0.0.0", "4.5.6"), ("5.0.0-0", "5.4.12"), ("6.0.0-0", "6.0.9")),
    ),
    Advisory(
        "GHSA-x574-m823-4x7w",
        "CVE-2025-30208",
        "server.fs.deny bypassed with ?raw??: any file could be read",
        (
            ("0.0.0", "4.5.10"),
            ("5.0.0-0", "5.4.15"),
            ("6.0.0-0", "6.0.12"),
            ("6.1.0-0", "6.1.2"),
            ("6.2.0-0", "6.2.3"),
        ),
    ),
    Advisory(
        "GHSA-4r4m-qw57-chr8",
        "CVE-2025-31125",
        "server.fs.deny bypassed with ?inline&import or ?raw?import: any file could be read",
        (
            ("0.0.0", "4.5.11"),
            ("5.0.0-0", "5.4.16"),
            ("6.0.0-0", "6.0.13"),
            ("6.1.0-0", "6.1.3"),
            ("6.2.0-0", "6.2.4"),
        ),
    ),
    Advisory(
        "GHSA-xcj6-pq6g-qj4x",
        "CVE-2025-31486",
        "server.fs.deny bypassed with .svg or relative paths: any file could be read",
        (
            ("0.0.0", "4.5.12"),
            ("5.0.0-0", "5.4.17"),
            ("6.0.0-0", "6.0.14"),
            ("6.1.0-0", "6.1.4"),
            ("6.2.0-0", "6.2.5"),
        ),
    ),
    Advisory(
        "GHSA-356w-63v5-8wf4",
        "CVE-2025-32395",
        "server.fs.deny bypassed with a # in the request: any file could be read",
        (
            ("0.0.0", "4.5.13"),
            ("5.0.0-0", "5.4.18"),
            ("6.0.0-0", "6.0.15"),
            ("6.1.0-0", "6.1.5"),
            ("6.2.0-0", "6.2.6"),
        ),
    ),
    Advisory(
        "GHSA-859w-5945-r5v3",
        "CVE-2025-46565",
        "server.fs.deny bypassed with /. in the path: files such as .env could be read",
        (
            ("0.0.0", "4.5.14"),
            ("5.0.0-0", "5.4.19"),
            ("6.0.0-0", "6.1.6"),
            ("6.2.0-0", "6.2.7"),
            ("6.3.0-0", "6.3.4"),
        ),
    ),
    Advisory(
        "GHSA-jqfw-vq24-v9c3",
        "CVE-2025-58752",
        "server.fs settings not applied to HTML files: files outside the project could be served",
        (("0.0.0", "5.4.20"), ("6.0.0-0", "6.3.6"), ("7.0.0-0", "7.0.7"), ("7.1.0-0", "7.1.5")),
    ),
)


@dataclass(frozen=True)
class Refusal:
    version: str
    advisories: tuple[Advisory, ...]
    upgrade_to: str

    @property
    def message(self) -> str:
        holes = "; ".join(f"{a.id} ({a.cve}: {a.title})" for a in self.advisories)
        return (
            f"Vite {self.version} has published security holes in its development server, which "
            f"a preview exposes: {holes}. Upgrade Vite to {self.upgrade_to} or newer "
            f"(npm install vite@{self.upgrade_to}) and upload again"
        )


def refusal(version_text: str, advisories: tuple[Advisory, ...] = VITE_ADVISORIES) -> Refusal | None:
    """Why this Vite may not serve a preview, with the first release past every advisory that
    touches it; None when none does (or the version is not one npm could have installed)."""
    version = parse(version_text)
    if version is None:
        return None
    found = tuple(a for a in advisories if a.fix_for(version) is not None)
    if not found:
        return None
    target = version
    while fixes := [f for a in advisories if (f := a.fix_for(target)) is not None]:
        target = max(fixes)
    return Refusal(shown(version) if version[3] == 0 else version_text.strip(), found, shown(target))


def locked_vite(lockfile_name: str | None, lockfile_text: str | None) -> str | None:
    """The Vite version an npm lockfile pins, None when there is none (or it is not npm's)."""
    import json

    if lockfile_name not in ("package-lock.json", "npm-shrinkwrap.json") or not lockfile_text:
        return None
    try:
        packages = json.loads(lockfile_text).get("packages") or {}
        version = (packages.get("node_modules/vite") or {}).get("version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, str) else None


def pinned_vite(package: Mapping[str, object]) -> str | None:
    """The Vite version package.json pins exactly (``"vite": "6.2.0"``), None for a range."""
    for field in ("devDependencies", "dependencies"):
        declared = package.get(field)
        wanted = declared.get("vite") if isinstance(declared, dict) else None
        if isinstance(wanted, str) and parse(wanted.removeprefix("=")) is not None:
            return wanted.removeprefix("=").strip()
    return None
