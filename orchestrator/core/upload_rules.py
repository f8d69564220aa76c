"""What an upload may hold, and what is dropped from it: pure rules, no I/O.

Every path in an upload goes through :func:`clean_path`, which refuses anything that could
land outside the workspace (absolute paths, ``..``, drive letters) and drops folders that a
build makes itself (node_modules, .git).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from orchestrator.core import defaults
from orchestrator.core.exceptions import InvalidUpload, UploadTooLarge
from orchestrator.core.installs import LOCKFILES
from orchestrator.core.plan import ProjectType

TAR_ARCHIVES = (".tar.gz", ".tgz", ".tar")
"""Archives taken besides .zip; each is checked like a zip and stored as one."""

UNSUPPORTED_ARCHIVES = (".gz", ".bz2", ".xz", ".rar", ".7z")

SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", "Icon\r"})
"""Files an operating system leaves in folders it zips; dropped from uploads."""

SYSTEM_FOLDERS = frozenset({"__MACOSX"})
"""macOS Finder's folder of resource forks (``__MACOSX/…/._name``); dropped."""


def is_system_junk(name: str) -> bool:
    """A file that macOS Finder or Windows Explorer adds to an archive, not the project's."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if not parts:
        return False
    return any(p in SYSTEM_FOLDERS for p in parts) or parts[-1] in SYSTEM_FILES or parts[-1].startswith("._")


MAX_INFLATION = 200
"""How many times larger than its compressed size a file may unpack (past MAX_INFLATION_FLOOR):
beyond, it is a decompression bomb, not a website."""

MAX_INFLATION_FLOOR = 1024 * 1024
"""Files up to this size may inflate as much as they like (a megabyte of spaces is harmless)."""

MAX_MANIFEST_BYTES = 5 * 1024 * 1024
"""package.json and the lockfiles are read whole (to plan the build): at most this size."""

MANIFESTS = frozenset({"package.json", *LOCKFILES})

ZIP_ENCRYPTED = 0x1
"""The general-purpose flag bit of an encrypted zip entry."""

READABLE_COMPRESSION = frozenset({0, 8, 12, 14})
"""Stored, deflate, bzip2 and LZMA: what Python's zipfile unpacks."""


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int = defaults.MAX_UPLOAD_BYTES
    max_unpacked_bytes: int = defaults.MAX_UNPACKED_BYTES
    max_files: int = defaults.MAX_FILES

    @property
    def max_entries(self) -> int:
        """Entries an archive's central directory may list (folders and dropped files count)."""
        return 2 * self.max_files


def check_entry(name: str, size: int, compressed: int, flags: int, method: int) -> None:
    """Refuse an archive entry that is encrypted, compressed in a way that cannot be read, a
    decompression bomb, or a manifest too large to read whole. Raises InvalidUpload (or
    UploadTooLarge) naming the entry and the rule."""
    if flags & ZIP_ENCRYPTED:
        raise InvalidUpload(f"{name!r} is encrypted: upload an archive made without a password")
    if method not in READABLE_COMPRESSION:
        raise InvalidUpload(
            f"{name!r} is compressed with a method this server cannot read (zip method {method}): "
            "make the zip again with the usual deflate compression"
        )
    if size > MAX_INFLATION_FLOOR and size > MAX_INFLATION * max(compressed, 1):
        raise UploadTooLarge(
            f"{name!r} unpacks to {size // 2**20} MB from {max(compressed // 1024, 1)} KB, more than "
            f"{MAX_INFLATION} times its size: a decompression bomb is not a website"
        )
    if name.rsplit("/", 1)[-1] in MANIFESTS and size > MAX_MANIFEST_BYTES:
        raise UploadTooLarge(
            f"{name!r} is {size / 2**20:.1f} MB; package.json and lockfiles may be at most "
            f"{MAX_MANIFEST_BYTES // 2**20} MB"
        )


@dataclass
class UploadSummary:
    """What an upload holds, once checked."""

    files: list[str]
    project_type: ProjectType
    package: dict[str, Any] | None
    prefix: str = ""
    """A top-level folder every entry sat in (a zipped folder), removed from the paths."""
    ignored: int = 0
    """Entries dropped because they sit in node_modules or .git."""
    junk: int = 0
    """Entries dropped because an operating system added them (__MACOSX/, .DS_Store…)."""
    notes: list[str] = field(default_factory=list)

    def describe(self) -> None:
        """Say in ``notes`` what was dropped and why."""
        if self.ignored:
            self.notes.append(f"ignored {self.ignored} files under node_modules/ or .git/")
        if self.junk:
            self.notes.append(
                f"dropped {self.junk} files the operating system added (__MACOSX/, ._*, .DS_Store, Thumbs.db)"
            )


def clean_path(name: str) -> str | None:
    """A safe relative POSIX path for an upload entry, None for one to drop.

    Raises InvalidUpload for a path that would leave the workspace.
    """
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise InvalidUpload(f"absolute path not allowed in an upload: {name!r}")
    parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidUpload(f"path leaving the upload's folder not allowed: {name!r}")
    if not parts:
        return None
    if any(p in defaults.IGNORED_DIRS for p in parts[:-1]) or parts[-1] in defaults.IGNORED_DIRS:
        return None
    if any("\x00" in p for p in parts):
        raise InvalidUpload(f"file name with a NUL character: {name!r}")
    return "/".join(parts)


def common_prefix(paths: list[str]) -> str:
    """The single top-level folder that holds every path, if the root has no site files."""
    if not paths or any(p in ("package.json", "index.html") for p in paths):
        return ""
    first = {p.split("/", 1)[0] for p in paths}
    if len(first) == 1 and all("/" in p for p in paths):
        return first.pop() + "/"
    return ""
