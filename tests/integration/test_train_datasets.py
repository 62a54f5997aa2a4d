"""Dataset layouts users bring: images in subfolders of class folders, hidden files, valid/test lacking a class."""

import json
import shutil

from local_test.make_sample_data import BREEDS


def test_nested_images_and_splits_lacking_a_class_train(sm_tree, run_train):
    base = sm_tree({"epochs": "1", "fine_tune": "head", "augment": "false"}, per_class=6)
    images = base / "input" / "data" / "training"
    for number, folder in enumerate(sorted((images / "train").iterdir())):  # e.g. synced from a phone
        nested = folder / "DCIM" / f"album{number}"
        nested.mkdir(parents=True)
        for image in folder.glob("*.jpg"):
            image.rename(nested / image.name)
        (nested / f"._{image.name}").write_bytes(b"AppleDouble")  # macOS metadata, not an image
    shutil.rmtree(images / "valid" / "004.Akita")
    shutil.rmtree(images / "test" / "001.Affenpinscher")

    result = run_train(base)

    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert (base / "model" / "model.pt").is_file()
    assert "train split: 24 images in 4 classes" in log and "unreadable" not in log
    assert "no readable image of 1 of the 4 classes, so its metrics leave them out: 004.Akita" in log
    config = json.loads((base / "model" / "model_config.json").read_text())
    assert config["class_names"] == list(BREEDS[:4])
    per_class = json.loads((base / "output" / "data" / "metrics.json").read_text())["per_class"]
    assert {name: entry["count"] for name, entry in per_class.items()} == dict.fromkeys(BREEDS[1:4], 2)


def test_training_images_alone_train_and_validate_on_a_held_out_share(sm_tree, run_train):
    base = sm_tree({"epochs": "1", "fine_tune": "head", "augment": "false", "valid_fraction": "0.25"},
                   layout="train_only", per_class=8)  # fmt: skip

    result = run_train(base)

    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "8 of the 32 training images are held out to validate on (valid_fraction=0.25" in log
    valid_acc = json.loads((base / "output" / "data" / "metrics.json").read_text())["final"]["valid_acc"]
    assert (valid_acc * 8) % 1 < 1e-6  # measured on the 8 held-out images
    assert json.loads((base / "model" / "model_config.json").read_text())["class_names"] == list(BREEDS[:4])


def test_a_channel_uploaded_as_a_zip_trains(sm_tree, run_train):
    base = sm_tree({"epochs": "1", "fine_tune": "head", "augment": "false"}, per_class=4)
    channel = base / "input" / "data" / "training"
    shutil.make_archive(str(base / "dogImages"), "zip", channel)  # dogImages.zip: train/ valid/ test/ at its top
    shutil.rmtree(channel)
    channel.mkdir()
    shutil.move(base / "dogImages.zip", channel)

    result = run_train(base)

    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "unpacked dogImages.zip: 24 files" in log
    assert f"train split: 16 images in 4 classes from {base}/input/unpacked/training/train" in log
    assert (base / "model" / "model.pt").is_file()
