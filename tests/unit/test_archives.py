"""Data channels uploaded as archives: unpacked into the job's scratch folder, never outside it."""

import io
import os
import shutil
import tarfile
import zipfile
from pathlib import Path, PureWindowsPath

import pytest

from dogbreed import archives, data
from dogbreed.errors import UserError
from local_test.make_sample_data import make_dataset


@pytest.fixture
def dog_images(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "made" / "dogImages", per_class=3, classes=3, size=(24, 24))


def channel_holding(tmp_path: Path, name: str) -> Path:
    channel = tmp_path / "input" / "data" / "training"
    channel.mkdir(parents=True)
    return channel / name


def test_a_zipped_dogimages_channel_is_read_as_its_splits(dog_images, tmp_path, caplog):
    caplog.set_level("INFO", logger="dogbreed.archives")
    zipped = channel_holding(tmp_path, "dogImages.zip")
    shutil.make_archive(str(zipped.with_suffix("")), "zip", dog_images.parent, "dogImages")
    (zipped.parent / ".DS_Store").write_bytes(b"\0")
    scratch = tmp_path / "input" / "unpacked"
    (scratch / "training" / "dogImages" / "train" / "099.Stale").mkdir(parents=True)  # left by an earlier job

    channels = archives.unpack_channels({"training": zipped.parent, "pretrained": tmp_path / "weights"}, scratch)

    assert channels == {"training": scratch / "training", "pretrained": tmp_path / "weights"}
    splits = data.load_splits(data.find_splits(channels))
    assert splits.class_names == ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
    assert len(splits.train) == 9 and splits.train.samples[0][0].is_relative_to(scratch / "training" / "dogImages")
    assert "unpacked dogImages.zip: 15 files" in caplog.text


def test_tar_members_that_would_leave_the_folder_are_skipped(dog_images, tmp_path, caplog):
    tarred = channel_holding(tmp_path, "data.tar.gz")
    with tarfile.open(tarred, "w:gz") as tar:
        tar.add(dog_images / "train", arcname="train")
        tar.add(dog_images / "valid", arcname="valid")
        for name, kind, link in (("train/001.Affenpinscher/passwd.jpg", tarfile.SYMTYPE, "/etc/passwd"),
                                 ("train/hard.jpg", tarfile.LNKTYPE, "/etc/passwd")):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            tar.addfile(info)
        for name in ("../escaped.txt", "/tmp/absolute-escape.txt"):
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    scratch = tmp_path / "scratch"

    channels = archives.unpack_channels({"train": tarred.parent}, scratch)

    written = sorted(p.relative_to(scratch) for p in scratch.rglob("*") if p.is_file() or p.is_symlink())
    assert len(written) == 12 and all(p.parts[:2] in {("train", "train"), ("train", "valid")} for p in written)
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/absolute-escape.txt").exists()
    assert "4 member(s) skipped" in caplog.text
    assert data.find_splits(channels).valid == scratch / "train" / "valid"


def test_a_zip_name_with_dots_stays_inside(tmp_path):
    zipped = channel_holding(tmp_path, "data.zip")
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("../../outside.txt", b"evil")
    archives.unpack_channels({"training": zipped.parent}, tmp_path / "scratch")
    assert (tmp_path / "scratch" / "training" / "outside.txt").is_file()
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("outside.txt")] == [Path("scratch/training/outside.txt")]


def test_a_zip_with_backslash_separators_unpacks_as_folders_and_stays_inside(dog_images, tmp_path):
    """Old Windows tools and PowerShell 5's Compress-Archive write 'train\\001.x\\a.jpg'; such names are folders,
    and a '..\\' name is kept inside like a '../' one."""
    zipped = channel_holding(tmp_path, "dogImages.zip")
    with zipfile.ZipFile(zipped, "w") as archive:
        for path in sorted(dog_images.rglob("*.jpg")):
            archive.writestr(str(PureWindowsPath("dogImages", path.relative_to(dog_images))), path.read_bytes())
        archive.writestr("..\\..\\outside.txt", b"evil")
    scratch = tmp_path / "scratch"
    paths = data.find_splits(archives.unpack_channels({"training": zipped.parent}, scratch))
    assert paths.train == scratch / "training" / "dogImages" / "train"
    assert len(data.load_splits(paths).train) == 9
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("outside.txt")] == [Path("scratch/training/outside.txt")]


def test_a_corrupt_archive_or_one_that_does_not_fit_is_a_user_error(tmp_path, monkeypatch):
    zipped = channel_holding(tmp_path, "dogImages.zip")
    zipped.write_bytes(b"PK\x03\x04 truncated upload")
    with pytest.raises(UserError, match=r"cannot unpack .*dogImages\.zip: BadZipFile"):
        archives.unpack_channels({"training": zipped.parent}, tmp_path / "scratch")

    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("train/001.x/a.jpg", b"\0" * 5_000_000, zipfile.ZIP_DEFLATED)  # a small volume:
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9 - 4 * 10**6, 4 * 10**6))
    with pytest.raises(UserError, match=r"dogImages\.zip unpacks to 5\.0 MB but .* has 4\.0 MB free: give"):
        archives.unpack_channels({"training": zipped.parent}, tmp_path / "scratch")
    assert not list((tmp_path / "scratch").rglob("*.jpg"))


def test_an_unpack_folder_that_cannot_be_emptied_or_made_is_a_user_error_naming_it(tmp_path):
    """A leftover that cannot be removed used to be ignored, then mkdir raised FileExistsError: an internal error.
    As root (these tests' usual user) permissions do not stop a write, so the real obstacle used is a file where
    the folder should be, left at the target or at the scratch folder; the read-only case runs as non-root only."""
    zipped = channel_holding(tmp_path, "dogImages.zip")
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("train/001.x/a.jpg", b"jpeg")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "training").write_text("left by an earlier run")
    with pytest.raises(UserError, match=rf"cannot write the unpacked archives to {scratch / 'training'}: not a dir"):
        archives.unpack_channels({"training": zipped.parent}, scratch)
    shutil.rmtree(scratch)
    scratch.write_text("a file")
    with pytest.raises(UserError, match=r"\(ENOTDIR\); a file stands where the directory should be"):
        archives.unpack_channels({"training": zipped.parent}, scratch)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a folder whatever its permissions")
def test_a_leftover_unpack_folder_in_a_read_only_folder_is_a_user_error(tmp_path):
    zipped = channel_holding(tmp_path, "dogImages.zip")
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("train/001.x/a.jpg", b"jpeg")
    scratch = tmp_path / "scratch"
    (scratch / "training" / "old").mkdir(parents=True)
    scratch.chmod(0o555)
    (scratch / "training").chmod(0o555)
    try:
        with pytest.raises(UserError, match=r"unpacked archives to .*training: permission denied \(EACCES\); make"):
            archives.unpack_channels({"training": zipped.parent}, scratch)
    finally:
        (scratch / "training").chmod(0o755)
        scratch.chmod(0o755)


def test_archives_beside_folders_are_left_alone(dog_images, tmp_path, caplog):
    shutil.make_archive(str(dog_images.parent / "extra"), "zip", dog_images, "train")
    channels = archives.unpack_channels({"training": dog_images.parent}, tmp_path / "scratch")
    assert channels == {"training": dog_images.parent} and not (tmp_path / "scratch").exists()
    assert "holds folders, so its archives are not unpacked: extra.zip" in caplog.text


def test_archives_named_after_splits_unpack_as_those_splits_and_nothing_is_overwritten(dog_images, tmp_path):
    """train.zip, valid.zip, test.zip (class folders at their top, or the split's folder itself) all hold
    001.Affenpinscher/Affenpinscher_0000.jpg: unpacked into one folder they overwrote each other and test images
    became training images."""
    channel = channel_holding(tmp_path, "train.zip").parent
    shutil.make_archive(str(channel / "train"), "zip", dog_images / "train")
    shutil.make_archive(str(channel / "Valid"), "zip", dog_images / "valid")
    shutil.make_archive(str(channel / "test"), "gztar", dog_images, "test")  # test.tar.gz holding test/
    scratch = tmp_path / "scratch"

    paths = data.find_splits(archives.unpack_channels({"training": channel}, scratch))

    unpacked = scratch / "training"
    assert (paths.train, paths.valid, paths.test) == (unpacked / "train", unpacked / "Valid", unpacked / "test")
    splits = data.load_splits(paths)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (9, 3, 3)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (("part1.zip", "part2.zip"), r"holds 2 archives \(part1\.zip, part2\.zip\); .* but part1\.zip, part2\.zip"),
        (("train.zip", "dogImages.tar.gz"), r"but dogImages\.tar\.gz is not: pack the data into one archive"),
        (("train.zip", "Train.tar"), r"holds Train\.tar and train\.zip, the same split twice: keep one"),
    ],
)
def test_several_archives_not_one_per_split_are_refused_naming_them(tmp_path, names, message):
    for name in names:
        path = channel_holding(tmp_path, name) if name == names[0] else tmp_path / "input/data/training" / name
        opener = zipfile.ZipFile if name.endswith(".zip") else tarfile.open
        with opener(path, "w"):
            pass
    with pytest.raises(UserError, match=message):
        archives.unpack_channels({"training": tmp_path / "input" / "data" / "training"}, tmp_path / "scratch")


def damaged(archive: Path, at: float) -> None:
    """64 bytes of the compressed stream flipped at `at` of its length, its header left intact."""
    data_ = bytearray(archive.read_bytes())
    start = int(len(data_) * at)
    data_[start : start + 64] = bytes(b ^ 0x5A for b in data_[start : start + 64])
    archive.write_bytes(bytes(data_))


@pytest.mark.parametrize("mode", ["gz", "bz2", "xz"])
@pytest.mark.parametrize("at", [0.2, 0.5, 0.9])
def test_a_damaged_tar_is_refused_not_unpacked_in_part(dog_images, tmp_path, mode, at):
    """tarfile ends its listing silently at the first header that is not one: the members after it were lost
    (180 of 200 files) and the job trained; damage inside a member's bytes unpacked corrupt images."""
    tarred = channel_holding(tmp_path, f"dogImages.tar.{mode}")
    with tarfile.open(tarred, f"w:{mode}") as tar:
        tar.add(dog_images, arcname="dogImages")
    damaged(tarred, at)
    with pytest.raises(UserError, match=rf"cannot unpack {tarred}: \w+: "):
        archives.unpack_channels({"training": tarred.parent}, tmp_path / "scratch")


def test_a_tar_with_data_after_its_end_says_where(dog_images, tmp_path):
    """An uncompressed tar has no checksum over its data; a header that is not one (here: appended) is found."""
    tarred = channel_holding(tmp_path, "dogImages.tar")
    with tarfile.open(tarred, "w") as tar:
        tar.add(dog_images / "train", arcname="train")
    tarred.write_bytes(tarred.read_bytes() + b"not a tar header".ljust(512, b"!"))
    with pytest.raises(UserError, match=r"TarError: damaged archive: after 13 member\(s\), the last '.*', what follo"):
        archives.unpack_channels({"training": tarred.parent}, tmp_path / "scratch")
