import hashlib
import io
import tarfile
import zipfile

import pytest

from caltech_transfer.core.errors import UserError
from caltech_transfer.data import download
from conftest import make_official_zip, make_tar_gz


def md5(path):
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def official_zip(tmp_path_factory, caltech_tree):
    return make_official_zip(caltech_tree, tmp_path_factory.mktemp("zip") / "caltech-101.zip")


def image_count(folder):
    return sum(1 for p in folder.rglob("*") if p.is_file())


def run(source, tmp_path, checksum="", inner=""):
    return download.run(
        str(source), checksum, inner, tmp_path / "data" / "raw", tmp_path / "data" / "downloads", retries=3, timeout=10
    )


def test_http_download_verifies_and_extracts(http_server, official_zip, caltech_tree, tmp_path):
    url = http_server(official_zip.read_bytes())
    out = run(url, tmp_path, checksum=md5(official_zip))
    assert out == tmp_path / "data" / "raw" / "101_ObjectCategories"
    assert image_count(out) == image_count(caltech_tree)
    assert (tmp_path / "data" / "downloads" / "caltech-101.zip").read_bytes() == official_zip.read_bytes()


def test_checksum_mismatch_is_clear_and_leaves_no_output(http_server, official_zip, tmp_path):
    url = http_server(official_zip.read_bytes())
    with pytest.raises(UserError, match=r"checksum mismatch.*expected md5 0{32}, got [0-9a-f]{32}.*kept at"):
        run(url, tmp_path, checksum="md5:" + "0" * 32)
    assert not (tmp_path / "data" / "raw").exists()
    assert (tmp_path / "data" / "downloads" / "caltech-101.zip.mismatch").exists()
    assert not list((tmp_path / "data").glob(".raw-tmp-*"))


def test_connection_cut_midway_resumes_with_range(http_server, official_zip, tmp_path, monkeypatch):
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    url = http_server(official_zip.read_bytes(), cut_first=2)
    run(url, tmp_path, checksum=md5(official_zip))
    assert (tmp_path / "data" / "downloads" / "caltech-101.zip").read_bytes() == official_zip.read_bytes()
    assert http_server.requests[0] is None and http_server.requests[-1].startswith("bytes=")
    assert (tmp_path / "data" / "raw" / "101_ObjectCategories").is_dir()


def test_unreachable_source_says_how_to_run_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    with pytest.raises(UserError, match="download.source=/path/to/caltech-101.zip"):
        run("http://127.0.0.1:9/caltech-101.zip", tmp_path)
    assert not (tmp_path / "data" / "raw").exists()


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "folder"])
def test_local_sources(kind, official_zip, caltech_tree, tmp_path):
    source = {
        "zip": official_zip,
        "folder": caltech_tree.parent,
        "tar.gz": lambda: make_tar_gz(caltech_tree, tmp_path / "101_ObjectCategories.tar.gz"),
    }[kind]
    source = source() if callable(source) else source
    checksum = md5(source) if kind != "folder" else ""
    out = run(source, tmp_path, checksum=checksum)
    assert image_count(out) == image_count(caltech_tree)


# Extraction happens in tmp_path/data/.raw-tmp-*/staging, so a member three (zip) or four (tar, after its
# folder) levels up would land right in tmp_path, outside the temporary folder that is deleted afterwards.
def escaped(tmp_path):
    return [p for p in tmp_path.rglob("escaped.txt")] + [p for p in tmp_path.parent.glob("escaped.txt")]


def test_zip_slip_is_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("101_ObjectCategories/a/image_0001.jpg", b"x")
        zf.writestr("../../../escaped.txt", b"gotcha")
    with pytest.raises(UserError, match="refusing to extract evil.zip.*outside"):
        run(evil, tmp_path)
    assert not escaped(tmp_path)
    assert not (tmp_path / "data" / "raw").exists()


def _tar_with(tmp_path, member):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(member, io.BytesIO(b"gotcha") if member.isfile() else None)
    return path


def test_tar_member_with_dotdot_is_refused(tmp_path):
    member = tarfile.TarInfo("101_ObjectCategories/../../../../escaped.txt")
    member.size = 6
    with pytest.raises(UserError, match="refusing to extract.*outside the target folder"):
        run(_tar_with(tmp_path, member), tmp_path)
    assert not escaped(tmp_path)


def test_tar_link_pointing_outside_is_refused(tmp_path):
    member = tarfile.TarInfo("101_ObjectCategories/link")
    member.type, member.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
    with pytest.raises(UserError, match="links to"):
        run(_tar_with(tmp_path, member), tmp_path)


def test_truncated_tar_gz_is_one_line(caltech_tree, tmp_path):
    whole = make_tar_gz(caltech_tree, tmp_path / "whole.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match="cut.tar.gz is damaged or truncated") as err:
        run(tmp_path / "cut.tar.gz", tmp_path)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "data" / "raw").exists() and not list((tmp_path / "data").glob(".raw-tmp-*"))


def test_zip_with_a_bad_crc_is_one_line(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("101_ObjectCategories/a/image_0001.jpg", b"pixels" * 100)
    data = bytearray(bad.read_bytes())
    data[data.index(b"pixels") + 10] ^= 0xFF  # one flipped byte in the stored file
    bad.write_bytes(bytes(data))
    with pytest.raises(UserError, match="bad.zip is damaged or truncated.*CRC"):
        run(bad, tmp_path)
    assert not (tmp_path / "data" / "raw").exists()


def test_folder_source_never_follows_links(caltech_tree, tmp_path):
    import shutil

    source = tmp_path / "source" / "101_ObjectCategories"
    shutil.copytree(caltech_tree, source)
    private = tmp_path / "home"
    (private / "secrets").mkdir(parents=True)
    (private / "secrets" / "id_rsa.jpg").write_bytes(b"private key")
    (source / "class_00" / "home").symlink_to(private, target_is_directory=True)
    (source / "class_01" / "image_9999.jpg").symlink_to(private / "secrets" / "id_rsa.jpg")
    out = run(source, tmp_path)
    copied = [p.relative_to(out).as_posix() for p in out.rglob("*")]
    assert not [p for p in copied if "home" in p or "image_9999" in p or "id_rsa" in p]
    assert image_count(out) == image_count(caltech_tree)


def test_archive_without_categories_is_refused(tmp_path):
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("something/else.txt", b"x")
    with pytest.raises(UserError, match="no 101_ObjectCategories"):
        run(other, tmp_path)
    assert not (tmp_path / "data" / "raw").exists()


def test_inner_checksum_is_checked(official_zip, tmp_path):
    with pytest.raises(UserError, match="checksum mismatch for 101_ObjectCategories.tar.gz"):
        run(official_zip, tmp_path, inner="md5:" + "1" * 32)
