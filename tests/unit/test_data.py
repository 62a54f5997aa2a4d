"""Channels → datasets: both channel layouts, class checks, unreadable images skipped, empty splits named."""

from pathlib import Path

import pytest

from dogbreed import data
from dogbreed.errors import UserError
from local_test.make_sample_data import make_dataset


@pytest.fixture
def dog_images(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "dogImages", per_class=3, classes=3, size=(24, 24))


def test_one_training_channel_holding_the_dogimages_layout(dog_images):
    splits = data.find_splits({"training": dog_images})
    expected = (dog_images / "train", dog_images / "valid", dog_images / "test")
    assert (splits.train, splits.valid, splits.test) == expected


def test_separate_channels_accept_validation_as_valid(dog_images):
    splits = data.find_splits({"train": dog_images / "train", "validation": dog_images / "valid"})
    assert splits.valid == dog_images / "valid" and splits.test is None


def test_missing_channels_say_what_is_expected():
    with pytest.raises(UserError, match="expected channels 'train' and 'valid'"):
        data.find_splits({"images": Path("/nowhere")})


def test_unreadable_image_is_skipped_and_counted(dog_images, caplog):
    (dog_images / "train" / "001.Affenpinscher" / "broken.jpg").write_bytes(b"not a jpeg")
    splits = data.load_splits(data.find_splits({"training": dog_images}))
    assert len(splits.train) == 9 and splits.class_names[0] == "001.Affenpinscher"
    assert "skipped 1 unreadable image(s) in train split" in caplog.text


def test_split_without_images_names_its_path(dog_images):
    for image in (dog_images / "valid").rglob("*.jpg"):
        image.unlink()
    with pytest.raises(UserError, match=f"no readable images in the valid split at {dog_images / 'valid'}"):
        data.load_splits(data.find_splits({"training": dog_images}))


def test_class_lists_must_agree(dog_images):
    (dog_images / "valid" / "002.Afghan_hound").rename(dog_images / "valid" / "099.Other")
    with pytest.raises(UserError, match="class folders differ"):
        data.load_splits(data.find_splits({"training": dog_images}))


def test_subset_is_seeded_and_capped(dog_images):
    train = data.load_splits(data.find_splits({"training": dog_images})).train
    half = data.subset(train, fraction=0.5, limit=0, seed=1)
    assert len(half) == 4 and half.samples == data.subset(train, fraction=0.5, limit=0, seed=1).samples
    assert len(data.subset(train, fraction=1.0, limit=2, seed=1)) == 2


def test_sixteen_bit_grayscale_trains_as_its_eight_bit_twin_and_float_images_are_skipped(tmp_path, caplog):
    """Training decodes like serving (presets.decode_rgb): no 16-bit image clipped to white, no range guessed."""
    import numpy as np
    from PIL import Image

    gray8 = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    folder = tmp_path / "001.Affenpinscher"
    folder.mkdir()
    Image.fromarray(gray8).save(folder / "eight.png")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(folder / "sixteen.png")
    Image.new("F", (20, 30)).save(folder / "float.tiff")
    samples = [(folder / name, 0) for name in ("eight.png", "sixteen.png", "float.tiff")]
    images = data.ImageList(samples)
    assert np.array_equal(np.asarray(images[0][0]), np.asarray(images[1][0]))
    assert images[2] is None
    assert "no defined brightness range" in caplog.text
