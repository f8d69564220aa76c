"""Archives built to hurt: each is refused with a 400 (or 413) that names the entry and the rule,
before anything is unpacked, and nothing is left stored."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from orchestrator.adapters.uploads import extract_upload, store_upload
from orchestrator.core.exceptions import InvalidUpload, UploadTooLarge
from orchestrator.core.upload_rules import UploadLimits


def refused(tmp_path, archive: bytes, limits: UploadLimits | None = None) -> InvalidUpload:
    dest = tmp_path / "up.zip"
    with pytest.raises(InvalidUpload) as caught:
        store_upload([("up.zip", io.BytesIO(archive))], dest, limits or UploadLimits())
    assert not dest.exists() and not list(tmp_path.iterdir())  # nothing stored, not even a part
    return caught.value


def zip_of(*entries: tuple[zipfile.ZipInfo | str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def test_duplicate_names_are_refused(tmp_path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicates it is told to write
        twice = zip_of(*[("index.html", b"<h1>x</h1>")] * 1000)
    assert "'index.html' appears twice in the archive" in str(refused(tmp_path, twice))


def test_200000_entries_of_one_name_are_refused_at_once(tmp_path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entry = (zipfile.ZipInfo("index.html"), b"<h1>x</h1>")
        bomb = zip_of(*[entry] * 200_000, method=zipfile.ZIP_STORED)  # as measured: 39 s to extract
    started = time.monotonic()
    error = refused(tmp_path, bomb)
    assert isinstance(error, UploadTooLarge) and "the archive lists 200000 entries; at most 40000" in str(
        error
    )
    assert time.monotonic() - started < 30  # not unpacked: only its listing was read


def test_entries_are_counted_from_the_central_directory(tmp_path) -> None:
    entries = [(f"empty/{i}/", b"") for i in range(30)] + [("index.html", b"x")]
    error = refused(tmp_path, zip_of(*entries), UploadLimits(max_files=10))
    assert isinstance(error, UploadTooLarge) and "the archive lists 31 entries; at most 20" in str(error)


def test_a_package_json_bomb_is_refused_before_it_is_read(tmp_path) -> None:
    bomb = zip_of(("package.json", b"{" + b" " * 50 * 2**20 + b"}"), ("index.html", b"x"))
    assert len(bomb) < 200_000  # 50 MB of spaces, deflated
    error = refused(tmp_path, bomb)
    assert isinstance(error, UploadTooLarge)
    assert "'package.json' unpacks to 50 MB from" in str(error) and "decompression bomb" in str(error)


def test_a_manifest_past_its_cap_is_refused(tmp_path) -> None:
    lockfile = ("package-lock.json", b"x" * 6 * 2**20)  # stored: no inflation to speak of
    error = refused(tmp_path, zip_of(lockfile, ("index.html", b"x"), method=zipfile.ZIP_STORED))
    assert "'package-lock.json' is 6.0 MB; package.json and lockfiles may be at most 5 MB" in str(error)


def test_an_encrypted_entry_is_a_400_naming_it(tmp_path) -> None:
    archive = bytearray(zip_of(("secret.js", b"x"), ("index.html", b"x")))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the first entry's flags,
        at = archive.index(signature) + offset  # in its local header and the central directory
        archive[at] |= 0x1  # "encrypted" (zipfile itself writes no encrypted entry)
    assert "'secret.js' is encrypted" in str(refused(tmp_path, bytes(archive)))


def test_an_entry_whose_bytes_are_damaged_is_a_400_naming_it(tmp_path) -> None:
    stored = zip_of(("index.html", b"<h1>" + b"a" * 5000 + b"</h1>"), method=zipfile.ZIP_STORED)
    damaged = stored.replace(b"aaaa", b"bbbb", 1)  # the CRC no longer matches
    dest = tmp_path / "up.zip"
    store_upload([("up.zip", io.BytesIO(damaged))], dest, UploadLimits())  # its listing is fine …
    with pytest.raises(InvalidUpload, match="'index.html' could not be unpacked"):
        extract_upload(dest, tmp_path / "work", UploadLimits())  # … its bytes are not
