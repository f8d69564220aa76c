"""A build's files on the host, and the tar stream that copies them into its container."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from orchestrator.core import defaults

UID = GID = 1000
"""Owner of the copied files inside the container (the image's unprivileged user)."""


def _owned_by_builder(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if info.issym() or info.islnk():
        return None
    info.uid, info.gid, info.uname, info.gname = UID, GID, "builder", "builder"
    return info


def pack_for_container(
    source: Path | Mapping[str, bytes], extra: dict[str, bytes] | None = None
) -> IO[bytes]:
    """A tar, to be extracted at ``/`` in the container, holding ``source`` (a folder, or
    relative path → contents) as the work directory and each ``extra`` file (absolute
    container path → contents)."""
    spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 (returned open)
    workdir = defaults.CONTAINER_WORKDIR.strip("/")
    folder = source if isinstance(source, Path) else None
    files = {} if isinstance(source, Path) else dict(source)
    with tarfile.open(fileobj=spool, mode="w") as tar:
        for path in sorted(folder.rglob("*")) if folder else []:
            assert folder is not None
            arcname = f"{workdir}/{path.relative_to(folder).as_posix()}"
            tar.add(path, arcname=arcname, recursive=False, filter=_owned_by_builder)
        for name, data in files.items():
            info = _owned_by_builder(tarfile.TarInfo(f"{workdir}/{name}"))
            assert info is not None
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for target, data in (extra or {}).items():
            info = _owned_by_builder(tarfile.TarInfo(target.lstrip("/")))
            assert info is not None
            info.size, info.mode = len(data), 0o444
            tar.addfile(info, io.BytesIO(data))
    spool.seek(0)
    return spool  # type: ignore[return-value]
