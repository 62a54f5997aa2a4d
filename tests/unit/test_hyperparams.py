"""Hyperparameters arrive as strings from SageMaker and are validated once, naming key, value and what is allowed."""

import pytest
from declared_tables import help_output, readme_tables

from dogbreed.contract.hyperparams import Hyperparameters
from dogbreed.errors import UserError
from dogbreed.train import parse_args


def test_defaults_match_the_documented_contract():
    hps = Hyperparameters.from_strings({})
    assert (hps.epochs, hps.image_size, hps.optimizer, hps.fine_tune) == (10, 224, "adam", "head")
    assert hps.pretrained is True and hps.augment is True


def test_strings_are_typed_and_platform_keys_ignored():
    raw = {
        "epochs": "3",
        "lr": "0.01",
        "optimizer": '"SGD"',  # the SageMaker SDK JSON-encodes some values
        "augment": "False",
        "fine_tune": "last_stage",
        "sagemaker_program": "train.py",
        "_tuning_objective_metric": "valid_acc",
    }
    hps = Hyperparameters.from_strings(raw)
    assert (hps.epochs, hps.lr, hps.optimizer, hps.augment, hps.fine_tune) == (3, 0.01, "sgd", False, "last_stage")


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("epochs", "0", "int in [1"),
        ("epochs", "2.5", "int in [1"),
        ("lr", "fast", "float in"),
        ("lr", "nan", "float in"),
        ("optimizer", "rmsprop", "one of adam, adamw, sgd"),
        ("fine_tune", "everything", "one of head, last_stage, all"),
        ("augment", "maybe", "true or false"),
        ("dropout", "1.5", "float in [0.0, 0.95]"),
    ],
)
def test_bad_value_names_key_value_and_allowed(key, value, allowed):
    with pytest.raises(UserError) as info:
        Hyperparameters.from_strings({key: value})
    message = str(info.value)
    assert f"{key}={value!r}" in message and allowed in message


@pytest.mark.parametrize(
    ("key", "suggestion"), [("epoch", "epochs"), ("batchsize", "batch_size"), ("Patience", "patience")]
)
def test_unknown_key_fails_suggesting_the_closest_name(key, suggestion):
    with pytest.raises(UserError, match=rf"unknown hyperparameter {key}='3': did you mean {suggestion}\?"):
        Hyperparameters.from_strings({key: "3"})


def test_training_recipe_defaults():
    hps = Hyperparameters.from_strings({})
    assert (hps.lr_schedule, hps.warmup_epochs, hps.label_smoothing) == ("cosine", 1.0, 0.1)
    assert (hps.lr, hps.select_by, hps.patience) == (3e-4, "valid_loss", 0)


def test_readme_lists_the_hyperparameters_exactly_as_declared():
    assert readme_tables("| name | default | meaning |") == [Hyperparameters.table()]


def test_train_help_lists_every_hyperparameter(capsys):
    assert Hyperparameters.table() in help_output(parse_args, capsys)
