"""Warming a new preview up before its CPU drops to the preview's share: the first request for
the page's entry module makes Vite transform it and pre-bundle its dependencies, which at 25%
of a CPU takes tens of seconds. Done once with the build's cores, a visitor's first load is
quick. Parsing here is pure; the requests are the caller's."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

_SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.I)
_MODULE_TYPE = re.compile(r"""\btype\s*=\s*["']?module\b""", re.I)
_SRC = re.compile(r"""\bsrc\s*=\s*["']([^"']+)["']""", re.I)
_OPTIMIZED_IMPORT = re.compile(r"""["'](/node_modules/\.vite/deps/[^"'?]+(?:\?[^"']*)?)["']""")


def entry_modules(html: str) -> list[str]:
    """The page's own module scripts (paths on the dev server), Vite's client excluded."""
    paths: list[str] = []
    for attributes in _SCRIPT_TAG.findall(html):
        found = _SRC.search(attributes)
        if not _MODULE_TYPE.search(attributes) or found is None:
            continue
        src = found[1]
        if "://" in src or src.startswith("//") or "@vite/client" in src:
            continue
        path = "/" + src.removeprefix("./").lstrip("/")
        if path not in paths:
            paths.append(path)
    return paths


def optimized_imports(module: str) -> list[str]:
    """The pre-bundled dependencies a transformed module imports (they wait for the optimizer)."""
    return list(dict.fromkeys(_OPTIMIZED_IMPORT.findall(module)))


def warm_up(get: Callable[[str], str | None], page: str, budget_seconds: float) -> list[str]:
    """Request the page's entry modules and the dependencies they import, within the budget;
    ``get`` returns a response's text, None on an error. The paths requested."""
    deadline = time.monotonic() + budget_seconds
    requested: list[str] = []
    for entry in entry_modules(page):
        if time.monotonic() > deadline:
            break
        text = get(entry)
        requested.append(entry)
        for dependency in optimized_imports(text or ""):
            if time.monotonic() > deadline:
                break
            get(dependency)
            requested.append(dependency)
    return requested
