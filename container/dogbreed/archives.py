"""Data channels uploaded as archives (dogImages.zip, a .tar.gz): unpacked once per host before the data is read.

One object of 1 GB uploads and downloads far faster than 8,000 small ones, so users upload the zip. A data channel
whose folder holds archives and no folder is read from their unpacked contents (data.find_splits then finds the
split or class folders in them): one archive unpacks into the channel's folder, several only as one split each
(train.zip, valid.zip, test.zip), each into the folder of its name, so no archive overwrites another's files.
Nothing is written outside the target: zipfile drops absolute and ".." parts of names (after backslash separators,
as old Windows tools write them, are read as slashes); a tar member that is not a plain file or folder (links,
devices) or whose name leaves the target is skipped. An archive whose contents would not fit in the free space is
refused before anything is written; a damaged one (a bad CRC, a tar header that is not one) fails the job.
"""

import logging
import lzma
import os
import shutil
import tarfile
import time
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

from .contract.channels import COMBINED, SPLIT_CHANNELS
from .errors import UserError
from .files import reading_input, writing

log = logging.getLogger(__name__)

ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ARCHIVE_SUFFIXES = ZIP_SUFFIXES + TAR_SUFFIXES
# What operating systems leave beside the data: a macOS zip's resource forks, a Windows drive's recycle bin and
# restore points (copied along with a USB stick's dataset).
IGNORED_FOLDERS = ("__MACOSX", "$RECYCLE.BIN", "System Volume Information")


@reading_input
def unpack_channels(channels: Mapping[str, Path], scratch: Path) -> dict[str, Path]:
    """The channels, each data channel holding only archives replaced by scratch/<channel>, their unpacked contents."""
    unpacked = dict(channels)
    for name in channels.keys() & {*SPLIT_CHANNELS, COMBINED}:
        if archives := archives_in(channels[name]):
            unpacked[name] = unpack(archives, scratch / name)
    return unpacked


def archives_in(folder: Path) -> list[Path]:
    """The archives directly in a channel's folder, when it holds no folder (else its folders are the data)."""
    if not folder.is_dir():
        return []
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    archives = sorted(p for p in entries if p.is_file() and p.name.lower().endswith(ARCHIVE_SUFFIXES))
    if archives and any(p.is_dir() for p in entries):
        names = ", ".join(p.name for p in archives)
        log.warning("%s holds folders, so its archives are not unpacked: %s", folder, names)
        return []
    return archives


def unpack(archives: list[Path], target: Path) -> Path:
    """Unpack the archives into target (emptied first: a rerun on the same volume must not mix in an older upload):
    one archive into target itself, several into target/<split> each (split_folders); UserError for a corrupt
    archive, one that does not fit, or a target that cannot be emptied or made (read-only, not writable, a file in
    the way)."""
    with writing(target, "the unpacked archives"):
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
    if len(archives) == 1:
        _unpack_one(archives[0], target)
        return target
    for archive, folder in split_folders(archives, target).items():
        _unpack_one(archive, folder)
        _unwrap(folder)
    return target


def split_folders(archives: list[Path], target: Path) -> dict[Path, Path]:
    """Where each of several archives of one channel unpacks: target/<its name without the suffix>, which must be a
    split's (train.zip → target/train); UserError otherwise, as merging them would let same-named files overwrite
    each other and images of one split land in another."""
    folders = {archive: target / _stem(archive) for archive in archives}
    if others := [a.name for a, folder in folders.items() if folder.name.lower() not in SPLIT_CHANNELS]:
        raise UserError(
            f"{archives[0].parent} holds {len(archives)} archives ({', '.join(a.name for a in archives)}); several "
            f"archives are read only as one split each, named {', '.join(SPLIT_CHANNELS)} (train.zip, valid.zip, "
            f"test.zip), but {', '.join(others)} is not: pack the data into one archive, or name each after its split"
        )
    stems: dict[str, list[str]] = {}
    for archive, folder in folders.items():
        stems.setdefault(folder.name.lower(), []).append(archive.name)
    if same := [" and ".join(names) for names in stems.values() if len(names) > 1]:
        raise UserError(f"{archives[0].parent} holds {'; '.join(same)}, the same split twice: keep one of them")
    return folders


def _stem(archive: Path) -> str:
    name = archive.name
    return name[: -len(next(s for s in ARCHIVE_SUFFIXES if name.lower().endswith(s)))]


def _unwrap(folder: Path) -> None:
    """A split's archive packed with the split's folder itself at its top (zip -r train.zip train/) holds the
    class folders one level down: move them up, so folder holds the class folders either way."""
    inside = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name not in IGNORED_FOLDERS]
    if len(inside) == 1 and inside[0].is_dir() and inside[0].name.lower() == folder.name.lower():
        with writing(folder, "the unpacked archives"):
            moved = inside[0].rename(folder.with_name(f".{folder.name}-unwrapped"))
            shutil.rmtree(folder)
            moved.rename(folder)


def _unpack_one(archive: Path, target: Path) -> None:
    with writing(target, "the unpacked archives"):
        target.mkdir(exist_ok=True)
    started = time.monotonic()
    try:
        files, size = _unpack_zip(archive, target) if _is_zip(archive) else _unpack_tar(archive, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
        raise UserError(f"cannot unpack {archive}: {type(exc).__name__}: {exc}") from None
    log.info(
        "unpacked %s: %d files, %.1f MB in %.1f s into %s",
        archive.name, files, size / 1e6, time.monotonic() - started, target,
    )  # fmt: skip


def _is_zip(archive: Path) -> bool:
    return archive.name.lower().endswith(ZIP_SUFFIXES)


def _unpack_zip(archive: Path, target: Path) -> tuple[int, int]:
    with zipfile.ZipFile(archive) as opened:
        members = _with_slashes(archive, opened.infolist())
        files = [info for info in members if not info.is_dir()]
        size = sum(info.file_size for info in files)  # zipfile stops each member at its declared size
        _check_space(archive, size, target)
        log.info("unpacking %s (%d files, %.1f MB)", archive.name, len(files), size / 1e6)
        opened.extractall(target, members=members)  # drops absolute and ".." parts of the (slashed) names
    return len(files), size


def _with_slashes(archive: Path, members: list[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """The members, names written with backslash separators (old Windows tools, PowerShell 5's Compress-Archive)
    turned to slashes, so that they unpack as folders, not as one file named 'train\\001.x\\a.jpg'."""
    windows = [info for info in members if "\\" in info.filename]
    for info in windows:
        info.filename = info.filename.replace("\\", "/")
    if windows:
        log.info("%s: %d name(s) with backslash separators read as folders", archive.name, len(windows))
    return members


def _unpack_tar(archive: Path, target: Path) -> tuple[int, int]:
    with tarfile.open(archive) as opened:
        members = opened.getmembers()
        kept = [m for m in members if (m.isfile() or m.isdir()) and _stays_inside(m.name)]
        if skipped := len(members) - len(kept):
            log.warning("%s: %d member(s) skipped (links, devices, names leaving the folder)", archive, skipped)
        files = [m for m in kept if m.isfile()]
        size = sum(m.size for m in files)
        _check_space(archive, size, target)
        log.info("unpacking %s (%d files, %.1f MB)", archive.name, len(files), size / 1e6)
        opened.extractall(target, members=kept)
        _check_end(opened)
    return len(files), size


def _check_end(opened: tarfile.TarFile) -> None:
    """TarError unless only zeros follow the last member up to the end of the stream. tarfile ends its listing
    without a word at the first header that is not one (a damaged archive: the members after it are lost); reading to
    the end also makes gzip, bzip2 and xz check their stream's CRC, which reports damage inside a member's bytes."""
    stream = opened.fileobj
    assert stream is not None
    stream.seek(opened.offset)
    while chunk := stream.read(1 << 20):
        if chunk.strip(b"\0"):
            members = opened.getmembers()
            after = f"after {len(members)} member(s), the last {members[-1].name!r}" if members else "at its start"
            raise tarfile.TarError(f"damaged archive: {after}, what follows is not a tar member")


def _stays_inside(name: str) -> bool:
    return not os.path.isabs(name) and ".." not in Path(name).parts


def _check_space(archive: Path, size: int, target: Path) -> None:
    free = shutil.disk_usage(target).free
    if size > free:
        raise UserError(
            f"{archive.name} unpacks to {size / 1e6:,.1f} MB but {target} has {free / 1e6:,.1f} MB free: "
            "give the training job a larger volume (VolumeSizeInGB) or upload the folders instead"
        )
