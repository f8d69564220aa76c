import io
import stat
import zipfile

import pytest

from orchestrator.adapters.uploads import extract_upload, store_upload
from orchestrator.core.exceptions import InvalidUpload, UploadTooLarge
from orchestrator.core.plan import ProjectType
from orchestrator.core.upload_rules import UploadLimits, clean_path

VITE_PKG = b'{"name": "shop", "devDependencies": {"vite": "^8"}}'


def make_zip(entries: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "C:/windows/x", "..\\x"])
def test_paths_that_leave_the_workspace_are_refused(name):
    with pytest.raises(InvalidUpload, match="not allowed"):
        clean_path(name)


def test_paths_are_normalised_and_build_folders_dropped():
    assert clean_path("./src//main.tsx") == "src/main.tsx"
    assert clean_path("src\\App.tsx") == "src/App.tsx"
    assert clean_path("node_modules/react/index.js") is None
    assert clean_path("app/.git/config") is None
    assert clean_path("./") is None


def test_many_files_become_one_stored_zip(tmp_path):
    dest = tmp_path / "up.zip"
    summary = store_upload(
        [
            ("package.json", io.BytesIO(VITE_PKG)),
            ("src/main.ts", io.BytesIO(b"x")),
            ("node_modules/a.js", io.BytesIO(b"y")),
        ],
        dest,
        UploadLimits(),
    )
    assert summary.project_type is ProjectType.VITE
    assert summary.files == ["package.json", "src/main.ts"]
    assert summary.ignored == 1
    assert zipfile.ZipFile(dest).namelist() == ["package.json", "src/main.ts"]


def test_a_zipped_folder_has_its_top_folder_removed(tmp_path):
    upload = make_zip({"my-site/index.html": b"<h1>hi</h1>", "my-site/css/a.css": b""})
    summary = store_upload([("site.zip", upload)], tmp_path / "up.zip", UploadLimits())
    assert summary.prefix == "my-site/"
    assert summary.project_type is ProjectType.STATIC
    out = extract_upload(tmp_path / "up.zip", tmp_path / "ws", UploadLimits())
    assert out.files == ["css/a.css", "index.html"]
    assert (tmp_path / "ws" / "index.html").read_bytes() == b"<h1>hi</h1>"


def test_zip_slip_is_refused_and_nothing_is_left(tmp_path):
    upload = make_zip({"index.html": b"x", "../../evil.sh": b"boom"})
    with pytest.raises(InvalidUpload, match="leaving"):
        store_upload([("site.zip", upload)], tmp_path / "up" / "a.zip", UploadLimits())
    assert not (tmp_path / "up" / "a.zip").exists()
    assert not list(tmp_path.rglob("evil.sh"))


def test_symlinks_are_refused(tmp_path):
    upload = make_zip({"index.html": b"x"}, symlinks=("link",))
    with pytest.raises(InvalidUpload, match="symbolic links"):
        store_upload([("site.zip", upload)], tmp_path / "a.zip", UploadLimits())


@pytest.mark.parametrize(
    ("uploads", "message"),
    [
        ([], "no files in the upload"),
        ([("site.zip", io.BytesIO(b""))], "is empty"),
        ([("site.zip", io.BytesIO(b"not a zip"))], "valid zip"),
        ([("site.tar.gz", io.BytesIO(b"x"))], "could not be read as a tar archive"),
        ([("site.rar", io.BytesIO(b"x"))], "not supported"),
        ([("a.zip", io.BytesIO(b"x")), ("b.txt", io.BytesIO(b"y"))], "on its own"),
        ([("readme.md", io.BytesIO(b"x"))], "no package.json and no index.html"),
        ([("a.txt", io.BytesIO(b"1")), ("./a.txt", io.BytesIO(b"2"))], "appears twice"),
    ],
)
def test_bad_uploads_say_what_to_fix(tmp_path, uploads, message):
    with pytest.raises(InvalidUpload, match=message):
        store_upload(uploads, tmp_path / "a.zip", UploadLimits())
    assert not (tmp_path / "a.zip").exists()


def test_limits(tmp_path):
    files = [(f"f{i}.html", io.BytesIO(b"x")) for i in range(3)] + [("index.html", io.BytesIO(b"x"))]
    with pytest.raises(UploadTooLarge, match="at most 2 are allowed"):
        store_upload(files, tmp_path / "a.zip", UploadLimits(max_files=2))
    with pytest.raises(UploadTooLarge, match="larger than"):
        store_upload(
            [("index.html", io.BytesIO(b"x" * 3 * 2**20))],
            tmp_path / "b.zip",
            UploadLimits(max_upload_bytes=2**20),
        )


def test_hash_depends_on_contents_not_on_order(tmp_path):
    one = make_zip({"index.html": b"a", "b.css": b"b"})
    two = make_zip({"b.css": b"b", "index.html": b"a"})
    three = make_zip({"b.css": b"b", "index.html": b"changed"})
    hashes = []
    for i, upload in enumerate((one, two, three)):
        (tmp_path / f"{i}.zip").write_bytes(upload.getvalue())
        hashes.append(extract_upload(tmp_path / f"{i}.zip", tmp_path / f"ws{i}", UploadLimits()).files_hash)
    assert hashes[0] == hashes[1] != hashes[2]


def test_a_stored_upload_is_renamed_into_place_whole(tmp_path):
    dest = tmp_path / "b.zip"
    store_upload([("index.html", io.BytesIO(b"<h1>hi</h1>"))], dest, UploadLimits())
    assert zipfile.ZipFile(dest).namelist() == ["index.html"]
    assert list(tmp_path.iterdir()) == [dest]  # no temporary file left


def test_a_refused_upload_leaves_neither_the_file_nor_its_temporary(tmp_path):
    with pytest.raises(UploadTooLarge):
        store_upload(
            [("index.html", io.BytesIO(b"x" * 3 * 2**20))],
            tmp_path / "b.zip",
            UploadLimits(max_upload_bytes=2**20),
        )
    assert list(tmp_path.iterdir()) == []
