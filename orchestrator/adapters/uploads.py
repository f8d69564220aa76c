"""Uploaded files: checked (orchestrator.core.upload_rules), stored as one zip per build, and
unpacked into a workspace."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from orchestrator.core.exceptions import InvalidUpload, UploadTooLarge
from orchestrator.core.plan import detect_project_type, parse_package_json
from orchestrator.core.upload_rules import (
    MAX_MANIFEST_BYTES,
    TAR_ARCHIVES,
    UNSUPPORTED_ARCHIVES,
    UploadLimits,
    UploadSummary,
    check_entry,
    clean_path,
    common_prefix,
    is_system_junk,
)

PART_SUFFIX = ".part"
"""An upload being written: renamed to its final name once whole (gc removes stale ones)."""


def _check_entry_kind(info: zipfile.ZipInfo) -> None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InvalidUpload(f"{info.filename!r}: symbolic links are not allowed in an upload")
    if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise InvalidUpload(f"{info.filename!r}: only regular files are allowed in an upload (no devices)")


def inspect_zip(archive: zipfile.ZipFile, limits: UploadLimits) -> UploadSummary:
    """Check a zip's listing and detect what it holds, without unpacking it."""
    kept: dict[str, zipfile.ZipInfo] = {}
    ignored = junk = 0
    total = 0
    entries = archive.infolist()  # the central directory, as listed: every entry counts
    if len(entries) > limits.max_entries:
        raise UploadTooLarge(
            f"the archive lists {len(entries)} entries; at most {limits.max_entries} are allowed"
        )
    for info in entries:
        if info.is_dir():
            continue
        if is_system_junk(info.filename):
            junk += 1
            continue
        _check_entry_kind(info)
        path = clean_path(info.filename)
        if path is None:
            ignored += 1
            continue
        if path in kept:
            raise InvalidUpload(
                f"{info.filename!r} appears twice in the archive: each file may be listed once"
            )
        check_entry(info.filename, info.file_size, info.compress_size, info.flag_bits, info.compress_type)
        total += info.file_size
        kept[path] = info
    if not kept:
        raise InvalidUpload("the upload holds no files" + (" outside node_modules/.git" if ignored else ""))
    if len(kept) > limits.max_files:
        raise UploadTooLarge(f"the upload has {len(kept)} files; at most {limits.max_files} are allowed")
    if total > limits.max_unpacked_bytes:
        raise UploadTooLarge(
            f"the upload unpacks to {total // 2**20} MB; at most {limits.max_unpacked_bytes // 2**20} MB"
        )
    prefix = common_prefix(list(kept))
    files = [p[len(prefix) :] for p in kept]
    package = None
    if "package.json" in files:
        package = parse_package_json(read_entry(archive, kept[prefix + "package.json"], MAX_MANIFEST_BYTES))
    kind = detect_project_type(files, package)
    summary = UploadSummary(sorted(files), kind, package, prefix, ignored, junk)
    summary.describe()
    return summary


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """An entry's bytes, at most ``limit`` of them; a damaged entry is the upload's fault (400)."""
    with _reading(info), archive.open(info) as source:
        data = source.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLarge(f"{info.filename!r} is larger than {limit // 2**20} MB")
    return data


@contextmanager
def _reading(info: zipfile.ZipInfo) -> Iterator[None]:
    """Errors met while unpacking an entry, as the upload's fault naming the entry."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise InvalidUpload(
            f"{info.filename!r} could not be unpacked ({exc}): upload a complete, valid archive"
        ) from exc


def _open_zip(source: Path | IO[bytes]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidUpload(f"the .zip file could not be read ({exc}): upload a valid zip archive") from exc


def _copy_limited(src: IO[bytes], dst: IO[bytes], limit: int, what: str) -> int:
    copied = 0
    while chunk := src.read(1024 * 1024):
        copied += len(chunk)
        if copied > limit:
            raise UploadTooLarge(f"{what} is larger than {limit // 2**20} MB")
        dst.write(chunk)
    return copied


def store_upload(uploads: Sequence[tuple[str, IO[bytes]]], dest: Path, limits: UploadLimits) -> UploadSummary:
    """Store an upload as ``dest`` (a zip) and return what it holds.

    ``uploads`` is either a single ``.zip`` or many files named by their relative paths. The zip
    is written under a temporary name, flushed to disk and renamed: ``dest`` holds a whole
    upload or nothing, whenever the process dies. Nothing is left when the upload is refused.
    """
    if not uploads:
        raise InvalidUpload("no files in the upload: send a .zip, or the files of a folder, as 'files'")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    try:
        summary = _store(uploads, part, limits)
        with part.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(part, dest)
        directory = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power loss
        finally:
            os.close(directory)
        return summary
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _store(uploads: Sequence[tuple[str, IO[bytes]]], dest: Path, limits: UploadLimits) -> UploadSummary:
    try:
        if len(uploads) == 1 and uploads[0][0].lower().endswith(TAR_ARCHIVES):
            name, stream = uploads[0]
            _tar_to_zip(name, stream, dest, limits)
            with _open_zip(dest) as archive:
                return inspect_zip(archive, limits)
        if len(uploads) == 1 and uploads[0][0].lower().endswith(".zip"):
            name, stream = uploads[0]
            with dest.open("wb") as out:
                if _copy_limited(stream, out, limits.max_upload_bytes, name) == 0:
                    raise InvalidUpload(f"{name} is empty")
            with _open_zip(dest) as archive:
                return inspect_zip(archive, limits)
        for name, _ in uploads:
            lowered = name.lower()
            if lowered.endswith((".zip", *TAR_ARCHIVES)) and len(uploads) > 1:
                raise InvalidUpload(
                    f"{name}: send one archive (.zip, .tar.gz, .tgz) on its own, or the files of a folder"
                )
            if lowered.endswith(UNSUPPORTED_ARCHIVES):
                raise InvalidUpload(
                    f"{name}: this kind of archive is not supported; upload a .zip, .tar.gz or .tgz, "
                    "or the files of a folder"
                )
        budget = limits.max_upload_bytes
        seen: set[str] = set()
        dropped = junk = 0
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as archive:
            for name, stream in uploads:
                if is_system_junk(name):
                    junk += 1
                    continue
                path = clean_path(name)
                if path is None:
                    dropped += 1
                    continue
                if path in seen:
                    raise InvalidUpload(f"the file {path!r} appears twice in the upload")
                seen.add(path)
                buffer = io.BytesIO()
                budget -= _copy_limited(stream, buffer, budget, "the upload")
                archive.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue())
        with _open_zip(dest) as archive:
            summary = inspect_zip(archive, limits)
        summary.ignored += dropped
        summary.junk += junk
        summary.notes = []
        summary.describe()
        return summary
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _tar_to_zip(name: str, stream: IO[bytes], dest: Path, limits: UploadLimits) -> None:
    """Store a .tar.gz/.tgz/.tar upload as the zip every build reads, checking each member as
    a zip's: regular files and folders only, no links or devices, paths that stay inside, the
    size budgets. Raises InvalidUpload naming the member and the rule."""
    with tempfile.TemporaryFile() as raw:
        if _copy_limited(stream, raw, limits.max_upload_bytes, name) == 0:
            raise InvalidUpload(f"{name} is empty")
        raw.seek(0)
        try:
            tar = tarfile.open(fileobj=raw, mode="r:*")  # noqa: SIM115 (closed by the with below)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InvalidUpload(
                f"{name} could not be read as a tar archive: upload a valid .tar.gz, .tgz or .zip"
            ) from exc
        count = total = 0
        with tar, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
            try:
                for member in tar:
                    if member.isdir() or member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
                        continue
                    if member.issym() or member.islnk():
                        raise InvalidUpload(f"{member.name!r}: links are not allowed in an upload")
                    if not member.isfile():
                        raise InvalidUpload(
                            f"{member.name!r}: only regular files are allowed in an upload (no devices)"
                        )
                    if not is_system_junk(member.name):
                        clean_path(member.name)  # refuses a path leaving the upload's folder
                    count += 1
                    total += member.size
                    if count > limits.max_files:
                        raise UploadTooLarge(f"the upload has more than {limits.max_files} files")
                    if total > limits.max_unpacked_bytes:
                        raise UploadTooLarge(
                            f"the upload unpacks to more than {limits.max_unpacked_bytes // 2**20} MB"
                        )
                    source = tar.extractfile(member)
                    assert source is not None
                    info = zipfile.ZipInfo(member.name, date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with source, archive.open(info, "w") as out:
                        shutil.copyfileobj(source, out, 1024 * 1024)
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                raise InvalidUpload(f"{name} is damaged ({exc}): upload a complete archive") from exc


@dataclass(frozen=True)
class Extracted:
    files: list[str]
    files_hash: str
    package: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    """What was dropped from the upload, and why (for the build log)."""


def upload_paths(archive_path: Path, limits: UploadLimits) -> list[str]:
    """A stored upload's file paths, as a workspace would hold them (no file is read)."""
    with _open_zip(archive_path) as archive:
        summary = inspect_zip(archive, limits)
        infos = [i for i in archive.infolist() if not i.is_dir() and not is_system_junk(i.filename)]
    paths = [clean_path(info.filename) for info in infos]
    return [path[len(summary.prefix) :] for path in paths if path is not None]


def read_upload(archive_path: Path, limits: UploadLimits) -> dict[str, bytes]:
    """A stored upload's files (relative path → contents), as a workspace would hold them."""
    files: dict[str, bytes] = {}
    with _open_zip(archive_path) as archive:
        summary = inspect_zip(archive, limits)
        for info in archive.infolist():
            if info.is_dir() or is_system_junk(info.filename):
                continue
            path = clean_path(info.filename)
            if path is not None:
                files[path[len(summary.prefix) :]] = read_entry(archive, info, limits.max_unpacked_bytes)
    return files


def make_folder(path: Path, tries: int = 5) -> None:
    """``mkdir -p``, again when its parent went meanwhile: a lost attempt of the same build
    removes the build's folder once its own attempt's folder is gone, and may do so between
    this one making the parent and its own folder in it."""
    for _ in range(tries - 1):
        try:
            path.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            continue
    path.mkdir(parents=True, exist_ok=True)


def extract_upload(archive_path: Path, dest: Path, limits: UploadLimits) -> Extracted:
    """Unpack a stored upload into ``dest`` and hash its contents.

    The hash covers every path and its bytes, so the same files give the same hash
    whatever the order or timestamps in the archive.
    """
    make_folder(dest)
    root = dest.resolve()
    digests: list[tuple[str, str]] = []
    with _open_zip(archive_path) as archive:
        summary = inspect_zip(archive, limits)
        budget = limits.max_unpacked_bytes
        for info in archive.infolist():
            if info.is_dir() or is_system_junk(info.filename):
                continue
            path = clean_path(info.filename)
            if path is None:
                continue
            path = path[len(summary.prefix) :]
            target = (root / path).resolve()
            if root not in target.parents:
                raise InvalidUpload(f"path leaving the upload's folder not allowed: {info.filename!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with _reading(info), archive.open(info) as src, target.open("wb") as out:
                while chunk := src.read(1024 * 1024):
                    budget -= len(chunk)
                    if budget < 0:
                        raise UploadTooLarge("the upload unpacks to more than its limit")
                    digest.update(chunk)
                    out.write(chunk)
            digests.append((path, digest.hexdigest()))
    whole = hashlib.sha256()
    for path, hexdigest in sorted(digests):
        whole.update(f"{path}\0{hexdigest}\n".encode())
    return Extracted(sorted(p for p, _ in digests), whole.hexdigest(), summary.package, summary.notes)
