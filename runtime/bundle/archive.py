"""A bundle as one file: a tar archive (``.tar.gz`` by default, ``.tar`` also read and written).

Layout: the bundle's files at the archive root (``manifest.json``, ``models/fp32.onnx``, ...),
no top-level folder, so ``tar -C BUNDLE -czf b.tar.gz .`` makes a valid archive too (``./``
prefixes are accepted). :func:`pack_bundle` verifies the bundle first and writes a
reproducible archive (sorted members, zero times and owners) atomically.

:func:`unpack_bundle` treats every archive as hostile. Before extracting anything it refuses
members that are absolute, have ``..`` components, backslashes or NUL bytes, are anything but
regular files and folders (symlinks, hardlinks, devices, FIFOs), repeat a name, or add up to
more than ``max_total_bytes`` or ``max_members``; it then extracts with tarfile's ``data``
filter as a second line of defence, into a temporary sibling that is renamed to the target only
once complete. A truncated or corrupt archive raises :class:`BundleError`.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from muselens.runtime.bundle._paths import relative_path
from muselens.runtime.bundle.bundle_error import BundleError
from muselens.runtime.bundle.manifest import MANIFEST_FILE
from muselens.runtime.bundle.verify import verify_bundle_dir

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
DEFAULT_MAX_TOTAL_BYTES = 4 << 30  # 4 GiB: several ONNX variants of a large backbone
DEFAULT_MAX_MEMBERS = 1000
GZIP_LEVEL = 6  # zlib default; float32 weights shrink only to ~93% at any level, 9 is just slower
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
_FILTERED = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()


def is_archive_path(path: Path | str) -> bool:
    """True when the name says bundle archive (``.tar.gz``, ``.tgz``, ``.tar``)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _compressed(path: Path) -> bool:
    if not is_archive_path(path):
        raise ValueError(f"bundle archive must end in one of {ARCHIVE_SUFFIXES}, got {path.name}")
    return not path.name.lower().endswith(".tar")


def _tarinfo(root: Path, rel: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.size = (root / rel).stat().st_size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_bundle(bundle_dir: Path | str, archive_path: Path | str) -> Path:
    """Verify ``bundle_dir`` and write it as one reproducible archive at ``archive_path``."""
    root, archive = Path(bundle_dir), Path(archive_path)
    compressed = _compressed(archive)
    contents = verify_bundle_dir(root)
    manifest = contents.manifest
    files = [MANIFEST_FILE, *sorted([*manifest.files, *(m.file for m in manifest.models.values())])]
    tmp: Path | None = None
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{archive.name}.tmp-", dir=archive.parent)
        tmp = Path(name)
        os.fchmod(fd, 0o644)  # mkstemp makes it private; an archive is meant to be shipped
        with os.fdopen(fd, "wb") as raw:
            # GzipFile with mtime=0 (not tarfile's "w:gz") so equal bundles give equal bytes.
            stream = (gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                    compresslevel=GZIP_LEVEL) if compressed else raw)
            with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for rel in files:
                    with open(root / rel, "rb") as f:
                        tar.addfile(_tarinfo(root, rel), f)
            if compressed:
                stream.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, archive)
        tmp = None
    except OSError as exc:
        raise BundleError(f"could not write bundle archive {archive}: {exc}") from exc
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return archive


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symlink (to {member.linkname!r})"
    if member.islnk():
        return f"a hardlink (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "a device file"
    if member.isfifo():
        return "a FIFO"
    return f"an unsupported member type {member.type!r}"


def _checked_members(tar: tarfile.TarFile, archive: Path, target: Path, max_total_bytes: int,
                     max_members: int) -> list[tarfile.TarInfo]:
    """Our own checks over every member, before a single byte is extracted."""
    members, seen, total = [], set(), 0
    root = os.path.realpath(target)
    for member in tar:
        if len(members) >= max_members:
            raise BundleError(f"archive {archive} has more than {max_members} members")
        try:
            rel = relative_path(member.name, "archive member")
        except (ValueError, TypeError) as exc:
            raise BundleError(f"archive {archive}: unsafe member: {exc}") from exc
        if not (member.isfile() or member.isdir()):
            raise BundleError(f"archive {archive}: member {member.name!r} is {_kind(member)}; "
                              "bundle archives hold only regular files and folders")
        key = rel.as_posix()
        if key in seen:
            raise BundleError(f"archive {archive}: member {member.name!r} appears twice")
        seen.add(key)
        dest = os.path.realpath(os.path.join(root, *rel.parts))
        if os.path.commonpath([root, dest]) != root:
            raise BundleError(f"archive {archive}: member {member.name!r} would land outside {target}")
        total += member.size
        if total > max_total_bytes:
            raise BundleError(f"archive {archive} unpacks to more than {max_total_bytes} bytes; "
                              "raise max_total_bytes if this bundle is really that large")
        members.append(member)
    return members


def _check_extracted(tmp: Path, archive: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(tmp):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise BundleError(f"archive {archive}: extracted {path.relative_to(tmp)} is not a "
                                  "regular file or folder")


def unpack_bundle(archive_path: Path | str, target_dir: Path | str, *,
                  max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                  max_members: int = DEFAULT_MAX_MEMBERS) -> Path:
    """Safely extract a bundle archive into ``target_dir`` (which must not exist yet).

    Extraction only: :func:`~muselens.runtime.bundle.loader.load_bundle` verifies the result.
    """
    archive, target = Path(archive_path), Path(target_dir)
    if not archive.is_file():
        raise BundleError(f"bundle archive {archive} does not exist or is not a file")
    if target.exists() or target.is_symlink():
        raise BundleError(f"cannot unpack into {target}: it already exists")
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        tmp.chmod(0o755)
        with tarfile.open(archive, mode="r:*") as tar:
            members = _checked_members(tar, archive, tmp, max_total_bytes, max_members)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # Python < 3.10.12 / 3.11.4: our checks above already cover the data filter's
                tar.extractall(tmp, members=members)
        _check_extracted(tmp, archive)
        os.rename(tmp, target)
        tmp = None
    except _FILTERED as exc:
        raise BundleError(f"bundle archive {archive} was refused by tarfile's data filter: "
                          f"{exc}") from exc
    except _CORRUPT as exc:
        raise BundleError(f"bundle archive {archive} is truncated, corrupt or not a tar archive: "
                          f"{exc}") from exc
    except OSError as exc:
        raise BundleError(f"could not unpack bundle archive {archive} into {target}: {exc}") from exc
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp)
    return target
