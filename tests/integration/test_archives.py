"""Archives as people make them, through the real API to a live preview; a refused one says
which entry broke which rule, and leaves nothing stored."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import upload

pytestmark = pytest.mark.integration

SITE = {"index.html": b"<h1>Archive shapes</h1><script src='app.js'></script>", "app.js": b"console.log(1)"}


def finder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in SITE.items():
            archive.writestr(f"My Site/{name}", data)
            archive.writestr(f"__MACOSX/My Site/._{name}", b"\0\5\26\7\0\2\0\0Mac OS X")
        archive.writestr("My Site/.DS_Store", b"\0\0\0\1Bud1")
    return buffer.getvalue()


def tgz(extra: tarfile.TarInfo | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in SITE.items():
            info = tarfile.TarInfo(f"site-main/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if extra is not None:
            archive.addfile(extra)
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "make"), [("My Site.zip", finder_zip), ("site-main.tar.gz", tgz)])
def test_finder_zips_and_tarballs_go_live(admin: httpx.Client, name: str, make) -> None:
    watched = upload(admin, [(name, make())])
    final = watched.wait()
    assert final["status"] == "running", final
    assert "Archive shapes" in httpx.get(final["previewUrl"], timeout=10).text
    logs = watched.record()["logs"]
    if name.endswith(".zip"):
        assert any("dropped 3 files the operating system added" in line for line in logs), logs


def test_a_tarball_with_a_link_is_refused_naming_it(admin: httpx.Client, test_env: dict[str, str]) -> None:
    link = tarfile.TarInfo("site-main/secrets")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    uploads = Path(test_env["ORCHESTRATOR_DATA_DIR"]) / "uploads"
    before = sorted(uploads.iterdir()) if uploads.exists() else []
    response = admin.post("/api/websites", files={"files": ("site.tgz", tgz(link))})
    assert response.status_code == 400, response.text
    assert "'site-main/secrets': links are not allowed" in response.json()["detail"]
    assert (sorted(uploads.iterdir()) if uploads.exists() else []) == before  # nothing stored
