"""Data channels as users upload them, through train.main: nothing is dropped, merged or overwritten without a word;
a layout that cannot be read as meant fails with exit 1 naming what to change."""

import errno
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from dogbreed import train

HEAD_ONLY = {"epochs": "1", "fine_tune": "head", "augment": "false", "int8": "false"}


def run_in_process(base) -> int:
    return train.main({"SAGEMAKER_BASE_DIR": str(base)})


def failure(base) -> str:
    return (base / "output" / "failure").read_text()


def test_one_archive_per_split_trains_on_each_split_as_uploaded(sm_tree, caplog):
    """train.zip, valid.zip, test.zip were unpacked into one folder: files overwrote each other, test leaked."""
    caplog.set_level("INFO")
    base = sm_tree(HEAD_ONLY, per_class=4)
    channel = base / "input" / "data" / "training"
    for split in ("train", "valid", "test"):
        shutil.make_archive(str(base / split), "zip", channel / split)
    shutil.rmtree(channel)
    channel.mkdir()
    for split in ("train", "valid", "test"):
        shutil.move(base / f"{split}.zip", channel)

    assert run_in_process(base) == 0, failure(base)
    unpacked = base / "input" / "unpacked" / "training"
    for split, count in (("train", 16), ("valid", 4), ("test", 4)):
        assert f"{split} split: {count} images in 4 classes from {unpacked / split}" in caplog.text


def test_a_valid_channel_of_one_class_trains(sm_tree, caplog):
    base = sm_tree(HEAD_ONLY, layout="channels")
    validation = base / "input" / "data" / "validation"
    for folder in sorted(validation.iterdir())[1:]:
        shutil.rmtree(folder)
    assert run_in_process(base) == 0, failure(base)
    assert f"valid split: 4 images in 1 classes from {validation}" in caplog.text


@pytest.mark.parametrize("second", ["train", "valid"])
def test_a_second_channel_for_one_split_fails_naming_both(sm_tree, second):
    base = sm_tree(HEAD_ONLY, layout="channels")
    data = base / "input" / "data"
    source, copy = ("train", "training") if second == "train" else ("validation", "valid")
    shutil.copytree(data / source, data / copy)
    assert run_in_process(base) == train.EXIT_USER_ERROR
    named = "train and training" if second == "train" else "valid and validation"
    assert failure(base).startswith(f"channels {named} were both given")


def test_a_damaged_tar_xz_fails_naming_it(sm_tree):
    base = sm_tree(HEAD_ONLY)
    channel = base / "input" / "data" / "training"
    archive = base / "dogImages.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(channel, arcname="dogImages")
    packed = bytearray(archive.read_bytes())
    damage = len(packed) * 9 // 10  # 64 bytes flipped late in the stream: tarfile read the members before them
    packed[damage : damage + 64] = bytes(b ^ 0x5A for b in packed[damage : damage + 64])
    shutil.rmtree(channel)
    channel.mkdir()
    (channel / archive.name).write_bytes(bytes(packed))
    assert run_in_process(base) == train.EXIT_USER_ERROR
    assert failure(base).startswith(f"cannot unpack {channel / archive.name}: ")


def test_an_input_folder_the_job_may_not_read_fails_naming_it(sm_tree, monkeypatch):
    """Run as another user (docker run --user 1000) than the one owning a 0700 folder: was exit 2, a traceback."""
    base = sm_tree(HEAD_ONLY)
    denied = base / "input" / "data" / "training" / "valid"
    iterdir = Path.iterdir

    def iterdir_as_another_user(path: Path):
        if path == denied:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return iterdir(path)

    monkeypatch.setattr(Path, "iterdir", iterdir_as_another_user)
    assert run_in_process(base) == train.EXIT_USER_ERROR
    assert failure(base).startswith(
        f"cannot read {denied}: permission denied (EACCES); make it readable for the training user (uid {os.getuid()})"
    )
