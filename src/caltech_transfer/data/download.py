"""The `download` stage: fetch Caltech-101 (URL or local path), verify, extract safely, move into place.

Nothing lands in the output folder until the whole chain has succeeded, so an interrupted or failed run
never leaves a folder that `split` would accept."""

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

from ..core.errors import UserError

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


def extract_zip(archive, dest):
    # Names are checked by hand: zipfile would silently rewrite a '../' name instead of refusing the archive.
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_name(archive, info.filename)
            for info in tqdm(members, desc=f"extract {Path(archive).name}", unit="file"):
                zf.extract(info, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        _damaged(archive, err)


def extract_tar(archive, dest):
    """tarfile's 'data' filter refuses members that would land outside dest, links that point outside it,
    and devices; each refusal and any damage becomes one line."""
    try:
        with tarfile.open(archive) as tf:
            for member in tqdm(tf, desc=f"extract {Path(archive).name}", unit="file"):
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
        if path.name == CATEGORIES and path.is_dir():
            return path
    for path in sorted(root.rglob(f"{CATEGORIES}.tar*")):
        if _is_tar(path):
            return path
    return None


def copy_folder(source, dest):
    """Copy a folder of images, leaving out every symbolic link: a link may lead anywhere (a home folder),
    and whatever lands in data/raw goes on into the DVC cache and any remote."""

    def links(folder, names):
        skipped = [n for n in names if os.path.islink(os.path.join(folder, n))]
        for name in skipped:
            print(f"skipped {os.path.join(folder, name)}: a symbolic link")
        return skipped

    shutil.copytree(source, dest, ignore=links)
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
