"""Safe extraction of crawl archives (zip, tar, tar.gz/.tgz, tar.bz2, tar.xz) for ``visent ingest``.

Every member is checked before anything is written: absolute paths, ``..`` components, names
whose resolved path leaves the target folder, links (symbolic or hard), devices and fifos are
refused with an :class:`ArchiveError` naming the member; the member count and the total
extracted size are capped (``VISENT_ARCHIVE_MAX_MEMBERS``, ``VISENT_ARCHIVE_MAX_BYTES``) so a
zip bomb cannot fill the disk. Zip members are written by visent itself with byte counting;
tar members go through Python's ``tarfile`` ``data`` filter as a second line of defence.
"""

from __future__ import annotations

import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import weakref
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from visent.core.errors import VisentError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
MAX_BYTES = 32 * 1024 ** 3     # extracted bytes per archive
MAX_MEMBERS = 2_000_000        # files and folders per archive
_CHUNK = 1 << 20
_HELP = "unpack it yourself, check its contents and ingest the folder"
# what reading a damaged archive raises (the decompressors' own errors are not OSErrors)
_DAMAGED = (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError,
            NotImplementedError, RuntimeError)


class ArchiveError(VisentError, ValueError):
    """An archive visent refuses to extract: the message names the archive, the member and what to do."""


def is_archive(path: Path) -> bool:
    """True for a file named like an archive (``.zip``, ``.tar``, ``.tar.gz``, ...) or with zip/tar bytes."""
    name = path.name.lower()
    if name.endswith(ARCHIVE_SUFFIXES):
        return True
    try:
        return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)
    except _DAMAGED:
        return False


def _is_zip(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(".zip"):
        return True
    if name.endswith(ARCHIVE_SUFFIXES):
        return False
    return zipfile.is_zipfile(path)


def _limit(variable: str, default: int) -> int:
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ArchiveError(f"{variable}={value!r} is not a whole number of {'bytes' if 'BYTES' in variable else 'members'}")
    if number < 1:
        raise ArchiveError(f"{variable} must be at least 1, not {number}")
    return number


@dataclass
class Extraction:
    """A temporary folder holding an extracted archive; removed when the last reference to it goes.

    Posts read from the archive keep a reference (``RawPost.keep``), so their image files exist
    until every post has been stored, however the posts are consumed.
    """

    archive: Path
    path: Path

    def __post_init__(self) -> None:
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def cleanup(self) -> None:
        self._finalizer()


def extract(archive: Path, *, max_bytes: int | None = None, max_members: int | None = None,
            into: Path | None = None) -> Extraction:
    """Extract ``archive`` into a new temporary folder (inside ``into`` when given), every member checked.

    Raises :class:`ArchiveError` (a ``ValueError``) for an unreadable archive, an unsafe member or
    one over the caps; nothing is left behind then.
    """
    archive = Path(archive)
    max_bytes = max_bytes or _limit("VISENT_ARCHIVE_MAX_BYTES", MAX_BYTES)
    max_members = max_members or _limit("VISENT_ARCHIVE_MAX_MEMBERS", MAX_MEMBERS)
    target = Path(tempfile.mkdtemp(prefix="visent-archive-", dir=into)).resolve()
    extraction = Extraction(archive, target)
    try:
        if _is_zip(archive):
            _extract_zip(archive, target, max_bytes, max_members)
        else:
            _extract_tar(archive, target, max_bytes, max_members)
    except BaseException:
        extraction.cleanup()
        raise
    return extraction


# --------------------------------------------------------------------------- member checks
def _member_path(archive: Path, name: str, target: Path) -> Path | None:
    """Where member ``name`` goes under ``target``; None for the archive's root folder itself ("./")."""
    shown = repr(name)
    if "\x00" in name:
        raise ArchiveError(f"{archive.name}: member {shown} has a NUL byte in its name; {_HELP}")
    posix = name.replace("\\", "/")  # Windows tools write backslashes
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise ArchiveError(f"{archive.name}: member {shown} has an absolute path; {_HELP}")
    parts = [p for p in PurePosixPath(posix).parts if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{archive.name}: member {shown} has a '..' component that leaves the folder; {_HELP}")
    if not parts:
        return None
    path = target.joinpath(*parts)
    resolved = path.resolve()
    if resolved != target and target not in resolved.parents:
        raise ArchiveError(f"{archive.name}: member {shown} resolves outside the extraction folder; {_HELP}")
    return path


def _caps(archive: Path, count: int, total: int, max_bytes: int, max_members: int, name: str) -> None:
    if count > max_members:
        raise ArchiveError(f"{archive.name}: more than {max_members} members (at {name!r}); a crawl this large "
                           f"must be unpacked by hand, or raise VISENT_ARCHIVE_MAX_MEMBERS")
    if total > max_bytes:
        raise ArchiveError(f"{archive.name}: extracts to more than {max_bytes} bytes (at {name!r}), possibly a "
                           f"zip bomb; {_HELP}, or raise VISENT_ARCHIVE_MAX_BYTES")


def _check_space(archive: Path, target: Path, total: int) -> None:
    free = shutil.disk_usage(target).free
    if total > free:
        raise ArchiveError(f"{archive.name}: extracting needs {total} bytes but {target.parent} has {free} free; "
                           f"set TMPDIR to a larger disk or {_HELP}")


# --------------------------------------------------------------------------- zip
def _extract_zip(archive: Path, target: Path, max_bytes: int, max_members: int) -> None:
    try:
        bundle = zipfile.ZipFile(archive)
    except _DAMAGED as exc:
        raise ArchiveError(f"{archive.name} is not a readable zip archive ({exc}); check the download") from exc
    with bundle:
        plan: list[tuple[zipfile.ZipInfo, Path]] = []
        seen: set[Path] = set()
        total = 0
        for count, info in enumerate(bundle.infolist(), 1):
            _caps(archive, count, total, max_bytes, max_members, info.filename)
            path = _member_path(archive, info.filename, target)
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind == stat.S_IFLNK:
                raise ArchiveError(f"{archive.name}: member {info.filename!r} is a symbolic link, which visent does "
                                   f"not extract; {_HELP}")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise ArchiveError(f"{archive.name}: member {info.filename!r} is not a file or folder "
                                   f"(a device, fifo or socket); {_HELP}")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"{archive.name}: member {info.filename!r} is encrypted; {_HELP}")
            if path is None:
                continue
            if not info.is_dir():
                if path in seen:
                    raise ArchiveError(f"{archive.name}: member {info.filename!r} appears twice; {_HELP}")
                seen.add(path)
                total += info.file_size
            _caps(archive, count, total, max_bytes, max_members, info.filename)
            plan.append((info, path))
        _check_space(archive, target, total)
        written = 0
        for info, path in plan:
            try:
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(info) as source, open(path, "xb") as sink:
                    left = info.file_size  # the declared size: a member that inflates beyond it is refused
                    while chunk := source.read(min(_CHUNK, left + 1)):
                        left -= len(chunk)
                        written += len(chunk)
                        if left < 0 or written > max_bytes:
                            raise ArchiveError(f"{archive.name}: member {info.filename!r} inflates beyond its "
                                               f"declared size, possibly a zip bomb; {_HELP}")
                        sink.write(chunk)
            except ArchiveError:
                raise
            except _DAMAGED as exc:
                raise ArchiveError(f"{archive.name}: cannot extract member {info.filename!r} "
                                   f"({getattr(exc, 'strerror', None) or exc}); {_HELP}") from exc


# --------------------------------------------------------------------------- tar
def _extract_tar(archive: Path, target: Path, max_bytes: int, max_members: int) -> None:
    try:
        bundle = tarfile.open(archive)
    except _DAMAGED as exc:
        raise ArchiveError(f"{archive.name} is not a readable zip or tar archive ({exc}); visent reads .zip, "
                           f".tar, .tar.gz/.tgz, .tar.bz2 and .tar.xz") from exc
    with bundle:
        plan: list[tarfile.TarInfo] = []
        seen: set[Path] = set()
        total = 0
        count = 0
        try:
            for member in bundle:
                count += 1
                _caps(archive, count, total, max_bytes, max_members, member.name)
                path = _member_path(archive, member.name, target)
                if member.issym() or member.islnk():
                    raise ArchiveError(f"{archive.name}: member {member.name!r} is a "
                                       f"{'symbolic' if member.issym() else 'hard'} link (to {member.linkname!r}), "
                                       f"which visent does not extract; {_HELP}")
                if member.ischr() or member.isblk() or member.isfifo():
                    raise ArchiveError(f"{archive.name}: member {member.name!r} is a device or fifo; {_HELP}")
                if member.issparse() or not (member.isreg() or member.isdir()):
                    raise ArchiveError(f"{archive.name}: member {member.name!r} is not a plain file or folder; {_HELP}")
                if path is None:
                    continue
                if member.isreg():
                    if path in seen:
                        raise ArchiveError(f"{archive.name}: member {member.name!r} appears twice; {_HELP}")
                    seen.add(path)
                    total += member.size
                _caps(archive, count, total, max_bytes, max_members, member.name)
                plan.append(member)
        except ArchiveError:
            raise
        except _DAMAGED as exc:
            raise ArchiveError(f"{archive.name} is a damaged tar archive ({exc}); check the download") from exc
        _check_space(archive, target, total)
        try:
            if hasattr(tarfile, "data_filter"):
                bundle.extractall(target, members=plan, filter="data")
            else:  # older Pythons without extraction filters: the checks above are the defence
                bundle.extractall(target, members=plan)
        except _DAMAGED as exc:
            raise ArchiveError(f"{archive.name}: cannot extract ({exc}); {_HELP}") from exc
