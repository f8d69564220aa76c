"""Archives as people make them: each is taken, its junk dropped, and the project found."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from orchestrator.adapters.uploads import extract_upload, store_upload
from orchestrator.core.exceptions import InvalidUpload, UploadTooLarge
from orchestrator.core.upload_rules import UploadLimits

PKG = b'{"name": "shop", "devDependencies": {"vite": "^8"}}'
PROJECT = {"package.json": PKG, "index.html": b"<h1>shop</h1>", "src/main.ts": b"console.log(1)"}


def zipped(entries: dict[str, bytes], dirs: tuple[str, ...] = ()) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in dirs:
            archive.writestr(zipfile.ZipInfo(name), b"")
        for name, data in entries.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def tarred(
    entries: dict[str, bytes], mode: str = "w:gz", extra: list[tarfile.TarInfo] | None = None
) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in extra or []:
            archive.addfile(info)
    buffer.seek(0)
    return buffer


def under(prefix: str, entries: dict[str, bytes] = PROJECT) -> dict[str, bytes]:
    return {prefix + name: data for name, data in entries.items()}


FINDER = {
    **under("shop/"),
    "shop/.DS_Store": b"\0\0\0\1Bud1",
    "__MACOSX/shop/._package.json": b"\0\5\26\7",
    "__MACOSX/shop/src/._main.ts": b"\0\5\26\7",
    "__MACOSX/._shop": b"\0\5\26\7",
}

SHAPES = {
    "macOS Finder's Compress": ("shop.zip", lambda: zipped(FINDER, ("shop/", "__MACOSX/", "shop/src/"))),
    "Windows Explorer": ("shop.zip", lambda: zipped({**under("shop\\"), "shop\\Thumbs.db": b"x"})),
    "zip -r of the folder": ("shop.zip", lambda: zipped(under("shop/"), ("shop/", "shop/src/"))),
    "zip -r of its contents": ("shop.zip", lambda: zipped(PROJECT, ("src/",))),
    "GitHub's Download ZIP": ("shop-main.zip", lambda: zipped(under("shop-main/"), ("shop-main/",))),
    ".tar.gz of the folder": ("shop.tar.gz", lambda: tarred(under("shop/"))),
    ".tgz of its contents": ("shop.tgz", lambda: tarred({**PROJECT, "._index.html": b"x"})),
    "plain .tar": ("shop.tar", lambda: tarred(under("./shop/"), mode="w")),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_common_archive_shape_is_taken(tmp_path, shape: str) -> None:
    name, make = SHAPES[shape]
    dest = tmp_path / "upload.zip"
    summary = store_upload([(name, make())], dest, UploadLimits())
    assert sorted(summary.files) == sorted(PROJECT), shape
    assert summary.project_type == "vite"
    extracted = extract_upload(dest, tmp_path / "ws", UploadLimits())
    assert extracted.files == sorted(PROJECT)
    assert (tmp_path / "ws" / "src" / "main.ts").read_bytes() == PROJECT["src/main.ts"]
    assert not list((tmp_path / "ws").rglob("._*")) and not (tmp_path / "ws" / "__MACOSX").exists()


def test_the_junk_dropped_is_said_in_the_log(tmp_path) -> None:
    summary = store_upload([("shop.zip", zipped(FINDER))], tmp_path / "u.zip", UploadLimits())
    assert summary.junk == 4
    assert any("dropped 4 files the operating system added" in note for note in summary.notes)
    extracted = extract_upload(tmp_path / "u.zip", tmp_path / "ws", UploadLimits())
    assert extracted.notes == summary.notes


def test_a_folder_upload_drops_junk_too(tmp_path) -> None:
    files = [(n, io.BytesIO(d)) for n, d in {**PROJECT, ".DS_Store": b"x", "src/._main.ts": b"y"}.items()]
    summary = store_upload(files, tmp_path / "u.zip", UploadLimits())
    assert sorted(summary.files) == sorted(PROJECT) and summary.junk == 2


def test_two_archives_with_the_same_hash_whatever_their_shape(tmp_path) -> None:
    hashes = set()
    for i, shape in enumerate(SHAPES):
        name, make = SHAPES[shape]
        store_upload([(name, make())], tmp_path / f"{i}.zip", UploadLimits())
        hashes.add(extract_upload(tmp_path / f"{i}.zip", tmp_path / f"ws{i}", UploadLimits()).files_hash)
    assert len(hashes) == 1


def link(name: str, kind: bytes, target: str = "/etc/passwd") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (link("shop/passwd", tarfile.SYMTYPE), "'shop/passwd': links are not allowed"),
        (link("shop/hard", tarfile.LNKTYPE, "shop/index.html"), "'shop/hard': links are not allowed"),
        (link("shop/null", tarfile.CHRTYPE), "'shop/null': only regular files"),
        (link("shop/pipe", tarfile.FIFOTYPE), "'shop/pipe': only regular files"),
    ],
)
def test_a_tar_with_links_or_devices_is_refused_naming_the_entry(tmp_path, extra, message) -> None:
    dest = tmp_path / "u.zip"
    with pytest.raises(InvalidUpload, match=message):
        store_upload([("shop.tgz", tarred(under("shop/"), extra=[extra]))], dest, UploadLimits())
    assert not dest.exists()


def test_a_tar_path_leaving_the_folder_is_refused(tmp_path) -> None:
    dest = tmp_path / "u.zip"
    with pytest.raises(InvalidUpload, match="'../evil.js'"):
        store_upload([("shop.tar.gz", tarred({**PROJECT, "../evil.js": b"x"}))], dest, UploadLimits())
    assert not dest.exists()


def test_a_tar_over_the_budgets_is_refused(tmp_path) -> None:
    with pytest.raises(UploadTooLarge, match="more than 2 files"):
        store_upload([("s.tgz", tarred(PROJECT))], tmp_path / "u.zip", UploadLimits(max_files=2))
    with pytest.raises(UploadTooLarge, match="unpacks to more than"):
        store_upload([("s.tgz", tarred(PROJECT))], tmp_path / "v.zip", UploadLimits(max_unpacked_bytes=10))


def test_a_damaged_tar_is_refused(tmp_path) -> None:
    whole = tarred(under("shop/")).getvalue()
    with pytest.raises(InvalidUpload, match="damaged|could not be read"):
        store_upload([("s.tar.gz", io.BytesIO(whole[: len(whole) // 2]))], tmp_path / "u.zip", UploadLimits())
    assert not (tmp_path / "u.zip").exists()
