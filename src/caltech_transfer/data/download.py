"""The `download` stage (`python -m caltech_transfer.data.download`): fetch Caltech-101 (URL or local path), verify,
extract safely, move into place.

Nothing lands in the output folder until the whole chain has succeeded, so an interrupted or failed run never leaves
a folder that `split` would accept."""

import hashlib
import http.client
import os
import shutil
import socket
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ..core.cli import cli
from ..core.errors import UserError
from ..core.layout import DOWNLOADS, RAW
from ..core.params import load_params

CATEGORIES = "101_ObjectCategories"
CHUNK = 1 << 20


def is_url(source):
    return source.split("://")[0].lower() in ("http", "https", "ftp")


def file_checksum(path, algorithm):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path, checksum, keep_aside):
    """Raise if `path` does not match `checksum` ('md5:...' / 'sha256:...'; '' skips the check).
    With keep_aside, a mismatching file is renamed to <name>.mismatch for inspection."""
    if not checksum:
        return
    algorithm, expected = checksum.split(":")
    actual = file_checksum(path, algorithm)
    if actual != expected:
        kept = ""
        if keep_aside:
            aside = path.with_name(path.name + ".mismatch")
            os.replace(path, aside)
            kept = f" (file kept at {aside})"
        raise UserError(
            f"checksum mismatch for {path.name}: expected {algorithm} {expected}, got {actual}{kept}; "
            f"if the source is right, update the checksum param"
        )


OFFLINE = (
    "To run offline, fetch caltech-101.zip elsewhere and point the stage at it: "
    "dvc exp run -S download.source=/path/to/caltech-101.zip"
)


def http_download(url, dest, retries=5, timeout=60.0, backoff=1.0):
    """Stream `url` to `dest` through `dest.part`, resuming a broken transfer with an HTTP Range request."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    last_error = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), 30))
        have = part.stat().st_size if part.exists() else 0
        try:
            _fetch(url, part, have, timeout, dest.name)
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:  # nothing left to fetch: .part is complete
                os.replace(part, dest)
                return dest
            if 400 <= err.code < 500 and err.code not in (408, 429):
                raise UserError(f"{url} answered HTTP {err.code} {err.reason}; check download.source") from None
            last_error = err
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            if isinstance(getattr(err, "reason", None), socket.gaierror):  # retrying cannot help
                raise UserError(
                    f"cannot resolve the host of {url} ({err.reason}); check download.source and the network. {OFFLINE}"
                ) from None
            last_error = err
        if attempt < retries:
            print(f"download interrupted ({last_error}); retry {attempt + 1} of {retries}")
    raise UserError(f"could not download {url} in {retries + 1} attempts ({last_error}). {OFFLINE}")


def _fetch(url, part, have, timeout, name):
    """Append the bytes from offset `have` on (all of them if the server ignores the range) to `part`."""
    request = urllib.request.Request(url, headers={"User-Agent": "caltech-transfer"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:  # server ignored the range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else None
        with (
            open(part, "ab" if have else "wb") as out,
            tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=f"download {name}") as bar,
        ):
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise http.client.IncompleteRead(b"", total - size)


def _refuse(archive, name, why):
    raise UserError(f"refusing to extract {Path(archive).name}: member {name!r} {why}")


def _check_name(archive, name):
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        _refuse(archive, name, "would be written outside the target folder")


# An archive that would expand to more than this many times its own size is refused before anything is written
# (images barely compress: Caltech-101's tar.gz expands to 1.05 times its size).
MAX_EXPANSION = 20
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}  # what zipfile reads


def left_out(name):
    """Why an archive's or folder's entry is not taken: the twin tree a Mac adds to zips it makes (__MACOSX/, its
    ._ files beside each file), which would otherwise be found first; None for the rest."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if "__MACOSX" in parts or (parts and parts[-1].startswith("._")):
        return "a Mac's resource fork (__MACOSX)"
    return None


def check_expansion(archive, expanded, dest):
    """Refuse, before writing, an archive that expands to too much: many times its size, or more than the disk holds."""
    size, free = Path(archive).stat().st_size, shutil.disk_usage(dest).free
    if expanded > MAX_EXPANSION * max(size, 1) or expanded > free:
        raise UserError(
            f"refusing to extract {Path(archive).name}: it would expand to {expanded / 1e9:.2f} GB from "
            f"{size / 1e6:.1f} MB, more than {MAX_EXPANSION} times its size or the {free / 1e9:.1f} GB free on the "
            "disk; is it the Caltech-101 archive?"
        )


def zip_members(archive, zf):
    """The members to extract; links and a Mac's twin tree are left out (and named), and what zipfile cannot
    extract (encrypted members, other compression methods, names outside the folder) refuses the archive."""
    members = []
    for info in zf.infolist():
        _check_name(archive, info.filename)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:  # the Unix mode a zip keeps: a symbolic link
            print(f"skipped {info.filename}: a symbolic link")
        elif left_out(info.filename) is None:
            if info.flag_bits & 0x1:
                _refuse(
                    archive, info.filename, "is encrypted: give an archive without a password, or its extracted folder"
                )
            if info.compress_type not in ZIP_METHODS:
                _refuse(
                    archive,
                    info.filename,
                    f"is compressed with method {info.compress_type}, which Python cannot read: extract it with "
                    "another tool and point download.source at the folder",
                )
            members.append(info)
    return members


def extract_zip(archive, dest):
    # Names are checked by hand: zipfile would silently rewrite a '../' name instead of refusing the archive.
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zip_members(archive, zf)
            Path(dest).mkdir(parents=True, exist_ok=True)
            check_expansion(archive, sum(info.file_size for info in members), dest)
            for info in tqdm(members, desc=f"extract {Path(archive).name}", unit="file"):
                zf.extract(info, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        _damaged(archive, err)


def extract_tar(archive, dest):
    """tarfile's 'data' filter refuses members that would land outside dest, links that point outside it,
    and devices; each refusal and any damage becomes one line. The sizes the headers declare are summed first."""
    try:
        with tarfile.open(archive) as tf:
            members = [member for member in tf.getmembers() if left_out(member.name) is None]
            Path(dest).mkdir(parents=True, exist_ok=True)
            check_expansion(archive, sum(member.size for member in members if member.isfile()), dest)
            for member in tqdm(members, desc=f"extract {Path(archive).name}", unit="file"):
                tf.extract(member, dest, filter="data")
    except tarfile.FilterError as err:
        member = err.tarinfo
        if isinstance(err, (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError)):
            _refuse(archive, member.name, f"links to {member.linkname!r}, outside the target folder")
        if isinstance(err, tarfile.SpecialFileError):
            _refuse(archive, member.name, "is a device or pipe")
        _refuse(archive, member.name, "would be written outside the target folder")
    except (tarfile.TarError, zlib.error, EOFError) as err:
        _damaged(archive, err)


def _damaged(archive, err):
    raise UserError(
        f"{Path(archive).name} is damaged or truncated ({err}); download it again, or check "
        "download.source and set its checksum so damage is caught before extraction"
    )


def _is_tar(path):
    return path.is_file() and tarfile.is_tarfile(path)


def _find_categories(root):
    """The 101_ObjectCategories folder under root, or a tar archive of it (the official zip nests one)."""
    for path in sorted(root.rglob("*")):
        if path.name == CATEGORIES and path.is_dir() and left_out(path.as_posix()) is None:
            return path
    for path in sorted(root.rglob(f"{CATEGORIES}.tar*")):
        if _is_tar(path) and left_out(path.as_posix()) is None:
            return path
    return None


def copy_folder(source, dest):
    """Copy a folder of images, leaving out (and naming) every symbolic link, since a link may lead anywhere (a
    home folder) and whatever lands in data/raw goes on into the DVC cache and any remote; every entry that is no
    file or folder (a pipe would hang the copy); and a Mac's twin tree."""

    def not_taken(folder, names):
        skipped = []
        for name in names:
            path = os.path.join(folder, name)
            why = (
                "a symbolic link"
                if os.path.islink(path)
                else "not a file or folder (a pipe, socket or device)"
                if not (os.path.isfile(path) or os.path.isdir(path))
                else left_out(path)
            )
            if why:
                print(f"skipped {path}: {why}")
                skipped.append(name)
        return skipped

    shutil.copytree(source, dest, ignore=not_taken)
    return dest


def unpack(source, workdir, inner_checksum):
    """Extract or copy `source` (zip, tar.gz or folder) under workdir; return the 101_ObjectCategories folder."""
    source = Path(source)
    staging = Path(workdir) / "staging"
    if source.is_dir():
        found = source if source.name == CATEGORIES else _find_categories(source)
        if found is None:
            raise UserError(
                f"{source} has no {CATEGORIES} folder; point download.source at the Caltech-101 "
                "zip, its 101_ObjectCategories.tar.gz, or the extracted folder"
            )
        if found.is_dir():
            return copy_folder(found, staging / CATEGORIES)
        source = found
    elif zipfile.is_zipfile(source):
        extract_zip(source, staging)
    elif _is_tar(source):
        extract_tar(source, staging)
    else:
        raise UserError(f"{source} is neither a zip, a tar archive nor a folder")
    found = _find_categories(staging)
    if found is not None and found.is_file():  # the official zip wraps a tar.gz
        verify(found, inner_checksum, keep_aside=False)
        inner = Path(workdir) / "inner"
        extract_tar(found, inner)
        found = _find_categories(inner)
    if found is None or not found.is_dir():
        raise UserError(f"{source.name} holds no {CATEGORIES} folder; is it the Caltech-101 archive?")
    return found


def run(source, checksum, inner_checksum, out_dir, downloads_dir, retries=5, timeout=60.0):
    """Fetch and unpack Caltech-101 into out_dir/101_ObjectCategories, atomically."""
    out_dir, downloads_dir = Path(out_dir), Path(downloads_dir)
    if is_url(source):
        downloads_dir.mkdir(parents=True, exist_ok=True)
        name = PurePosixPath(urllib.parse.urlparse(source).path).name or "caltech-101.zip"
        archive = downloads_dir / name
        if not (archive.exists() and _matches(archive, checksum)):
            http_download(source, archive, retries=retries, timeout=timeout)
            verify(archive, checksum, keep_aside=True)
    else:
        archive = Path(source).expanduser()
        if not archive.exists():
            raise UserError(f"download.source {source} does not exist; give a URL, a zip, a tar.gz or a folder")
        if archive.is_file():
            verify(archive, checksum, keep_aside=False)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}-tmp-") as workdir:
        categories = unpack(archive, workdir, inner_checksum)
        result = Path(workdir) / "result"
        result.mkdir()
        os.replace(categories, result / CATEGORIES)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(result, out_dir)
    return out_dir / CATEGORIES


def _matches(path, checksum):
    return bool(checksum) and file_checksum(path, checksum.split(":")[0]) == checksum.split(":")[1]


@cli
def main():
    p = load_params("download")["download"]
    run(
        p["source"],
        p["checksum"],
        p["inner_checksum"],
        out_dir=RAW.parent,
        downloads_dir=DOWNLOADS,
        retries=p["retries"],
        timeout=p["timeout"],
    )


if __name__ == "__main__":
    main()
