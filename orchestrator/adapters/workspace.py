"""A build's files on the host, and the tar stream that copies them into its container."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from orchestrator.core import defaults


def pack_for_container(
    source: Path | Mapping[str, bytes],
    extra: dict[str, bytes] | None = None,
    user: str = defaults.CONTAINER_USER,
) -> IO[bytes]:
    """A tar, to be extracted at ``/`` in the container, holding ``source`` (a folder, or
    relative path → contents) as the work directory and each ``extra`` file (absolute
    container path → contents), owned by ``user`` (uid:gid), the work directory too."""
    uid, gid = (int(n) for n in user.split(":"))

    def _owned_by_builder(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if info.issym() or info.islnk():
            return None
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info

    spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 (returned open)
    workdir = defaults.CONTAINER_WORKDIR.strip("/")
    folder = source if isinstance(source, Path) else None
    files = {} if isinstance(source, Path) else dict(source)
    with tarfile.open(fileobj=spool, mode="w") as tar:
        top = _owned_by_builder(tarfile.TarInfo(workdir))
        assert top is not None
        top.type, top.mode = tarfile.DIRTYPE, 0o775  # the work directory becomes the build's own
        tar.addfile(top)
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
