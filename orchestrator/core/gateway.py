"""What the preview gateway decides without I/O: which preview a host name names, which headers
pass, and the pages it answers with itself (orchestrator.gateway carries them out).

Host names, under the gateway's domain (Settings.preview_domain):

- ``<website id>.<domain>``: the website's newest live (or sleeping) build, whichever it is now;
- ``<build id>.b.<domain>``: that one build's preview.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class RouteKind(StrEnum):
    WEBSITE = "website"
    BUILD = "build"


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    id: str


BUILD_LABEL = "b"
"""The label between a build's id and the domain: ``<build id>.b.<domain>``."""


def route_for(host: str | None, domain: str) -> Route | None:
    """The preview a Host header names, None when it names none under ``domain``."""
    if not host:
        return None
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal: never one of ours
        return None
    name = name.rsplit(":", 1)[0] if ":" in name else name
    name = name.rstrip(".")
    suffix = "." + domain.lower().strip(".")
    if not name.endswith(suffix):
        return None
    labels = name[: -len(suffix)].split(".")
    if len(labels) == 1 and _is_id(labels[0]):
        return Route(RouteKind.WEBSITE, labels[0])
    if len(labels) == 2 and labels[1] == BUILD_LABEL and _is_id(labels[0]):
        return Route(RouteKind.BUILD, labels[0])
    return None


def _is_id(label: str) -> bool:
    return 1 <= len(label) <= 63 and all(c in "0123456789abcdef" for c in label)


HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
"""Headers that belong to one connection (RFC 9110 §7.6.1), plus the two the proxy sets itself."""

CREDENTIALS = frozenset({"authorization"})
"""Headers the gateway reads and never passes on: a preview never sees its visitor's API token."""

SHARE_COOKIE = "wob_share"
"""The cookie a share link leaves in the visitor's browser, scoped to the preview's host name."""

SHARE_PARAMETER = "share"
"""The query parameter of a share link."""


def forwarded_headers(
    headers: Iterable[tuple[str, str]], upstream_host: str, original_host: str, client: str | None
) -> list[tuple[str, str]]:
    """The request headers sent on to a preview: no hop-by-hop or credential header, the share
    cookie taken out of Cookie, the Host the preview's server accepts, and X-Forwarded-*."""
    out: list[tuple[str, str]] = []
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in CREDENTIALS or lower.startswith("x-forwarded-"):
            continue
        if lower == "cookie":
            value = without_cookie(value, SHARE_COOKIE)
            if not value:
                continue
        out.append((name, value))
    out.append(("Host", upstream_host))
    out.append(("X-Forwarded-Host", original_host))
    out.append(("X-Forwarded-Proto", "http"))
    if client:
        out.append(("X-Forwarded-For", client))
    return out


def without_cookie(header: str, name: str) -> str:
    parts = [p.strip() for p in header.split(";")]
    return "; ".join(p for p in parts if p and p.split("=", 1)[0].strip() != name)


def cookie_value(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The preview's response headers passed back: all but hop-by-hop ones."""
    return [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP]


def is_browser_navigation(method: str, headers: Mapping[str, str]) -> bool:
    """A browser loading a page (it gets the "waking up" page while its preview wakes; other
    clients, and a page's own requests, simply wait)."""
    if method != "GET" or headers.get("upgrade"):
        return False
    accept = headers.get("accept", "")
    mode = headers.get("sec-fetch-mode")
    return "text/html" in accept and mode in (None, "navigate")


WAKING_AFTER = 1.0
"""Seconds a browser's request is held before it gets the waking page instead."""

WAKE_WAIT = 60.0
"""Seconds any request is held at most while its preview wakes."""


def waking_page(name: str) -> str:
    return _page(
        "Waking up…",
        f"<p>The preview of <b>{html.escape(name)}</b> was asleep and is starting. "
        "This page reloads itself in a moment.</p>",
        refresh=1,
    )


def message_page(title: str, text: str) -> str:
    return _page(title, f"<p>{html.escape(text)}</p>")


def _page(title: str, body: str, refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
        f"<title>{html.escape(title)}</title><style>body{{font:16px system-ui,sans-serif;"
        "margin:20vh auto;max-width:34em;color:#333}h1{font-size:1.4em}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
