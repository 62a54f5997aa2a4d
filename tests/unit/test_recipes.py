"""Which data each recipe trains on: the training subset."""

import pytest

from dogbreed import data, recipes
from dogbreed.contract.hyperparams import Hyperparameters
from dogbreed.errors import UserError
from dogbreed.presets import PreprocessConfig
from local_test.make_sample_data import make_dataset


def test_a_training_subset_smaller_than_the_classes_is_a_user_error(tmp_path):
    dog_images = make_dataset(tmp_path / "dogImages", per_class=3, classes=3, size=(24, 24))
    splits = data.load_splits(data.find_splits({"training": dog_images}))
    preprocess = PreprocessConfig(image_size=32)
    kept = recipes.image_datasets(splits, preprocess, Hyperparameters.from_strings({"max_train_images": "3"}))
    assert sorted(label for _, label in kept.train.samples) == [0, 1, 2]
    too_few = Hyperparameters.from_strings({"max_train_images": "1"})
    with pytest.raises(UserError, match=r"max_train_images=1 leave 1 training image\(s\) for 3 classes: every class"):
        recipes.image_datasets(splits, preprocess, too_few)
