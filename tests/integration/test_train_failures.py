"""The error boundary: output/failure says what to fix, exit code is non-zero; pretrained weights are never faked;
bad setups fail before any epoch."""

import errno
import json
import os
import shutil

import pytest
import torch
from torchvision.models import resnet50

from dogbreed import supervisor, train

HEAD_ONLY = {"epochs": "1", "fine_tune": "head", "augment": "false"}


def run_in_process(base) -> int:
    return train.main({"SAGEMAKER_BASE_DIR": str(base)})


def failure(base) -> str:
    return (base / "output" / "failure").read_text()


def test_bad_hyperparameter_fails_naming_the_key(sm_tree):
    base = sm_tree({"optimizer": "rmsprop"})
    assert run_in_process(base) == train.EXIT_USER_ERROR
    first_line = failure(base).splitlines()[0]
    assert "optimizer='rmsprop'" in first_line and "adam, adamw, sgd" in first_line
    assert not (base / "model").exists()


def test_missing_data_names_the_expected_channels(sm_tree):
    base = sm_tree({}, layout="none")
    assert run_in_process(base) == train.EXIT_USER_ERROR
    assert "expected a 'train' channel" in failure(base)


def test_pretrained_channel_state_dict_is_loaded(sm_tree, caplog):
    base = sm_tree({**HEAD_ONLY, "pretrained": "true"})
    channel = base / "input" / "data" / "pretrained"
    channel.mkdir()
    torch.save(resnet50(weights=None).state_dict(), channel / "resnet50.pth")
    (channel / "._resnet50.pth").write_bytes(b"\0\5\26\7")  # AppleDouble file a Mac copies along: not weights
    assert run_in_process(base) == 0, failure(base)
    assert f"loaded pretrained backbone weights from {channel / 'resnet50.pth'}" in caplog.text
    assert (base / "model" / "model.pt").is_file()


def test_missing_pretrained_weights_fail_with_instructions(sm_tree, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # no build-time cache here
    base = sm_tree({**HEAD_ONLY, "pretrained": "true"})
    assert run_in_process(base) == train.EXIT_USER_ERROR
    message = failure(base)
    assert "no ResNet50 weights were found" in message
    assert "'pretrained' channel" in message and "pretrained=false" in message
    assert not (base / "model").exists()


def test_internal_error_is_reported_as_such(sm_tree, monkeypatch, caplog):
    def bug(*_args) -> None:
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setattr(train, "run", bug)
    base = sm_tree(HEAD_ONLY)
    assert run_in_process(base) == train.EXIT_INTERNAL_ERROR
    assert failure(base).startswith("internal error in training (ZeroDivisionError: a bug of ours)")
    assert "Traceback" in caplog.text


def test_the_host_refusing_a_data_loader_process_says_which_settings_to_lower(sm_tree, monkeypatch):
    """threads=1024 with num_workers=64 on 2 cores: fork fails with EAGAIN after ~30 workers. The OS cannot be made
    to refuse on cue, so fork does; the job's own DataLoader starts its workers through it."""

    def refused() -> int:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refused)
    base = sm_tree({**HEAD_ONLY, "cache_features": "false", "num_workers": "2"})
    assert run_in_process(base) == train.EXIT_USER_ERROR
    message = failure(base)
    assert message.startswith("the host refused the job another process, thread or memory")
    assert "(EAGAIN)" in message and "lower num_workers" in message


def first_line_of_failure(base) -> str:
    return failure(base).splitlines()[0]


def test_unknown_hyperparameter_suggests_the_closest_name(sm_tree):
    base = sm_tree({"epoch": "3", "sagemaker_region": "us-east-1", "_tuning_objective_metric": "valid_loss"})
    assert run_in_process(base) == train.EXIT_USER_ERROR
    assert first_line_of_failure(base).startswith("unknown hyperparameter epoch='3': did you mean epochs?")


@pytest.mark.parametrize("content", [["epochs", "3"], "epochs=3", 5])
def test_config_json_that_is_not_an_object_names_the_file(sm_tree, content):
    base = sm_tree({})
    config = base / "input" / "config" / "hyperparameters.json"
    config.write_text(json.dumps(content))
    assert run_in_process(base) == train.EXIT_USER_ERROR
    assert first_line_of_failure(base).startswith(f"{config} must hold a JSON object")


def test_one_class_fails_before_training(sm_tree, caplog):
    base = sm_tree(HEAD_ONLY)
    for split in (base / "input" / "data" / "training").iterdir():
        for extra in sorted(split.iterdir())[1:]:
            shutil.rmtree(extra)
    assert run_in_process(base) == train.EXIT_USER_ERROR
    assert "1 class folder(s) ['001.Affenpinscher']: a classifier needs at least two" in first_line_of_failure(base)
    assert "epoch=1" not in caplog.text


def test_class_without_training_images_fails_before_training(sm_tree):
    base = sm_tree(HEAD_ONLY)
    empty = base / "input" / "data" / "training" / "train" / "002.Afghan_hound"
    for image in empty.iterdir():
        image.unlink()
    assert run_in_process(base) == train.EXIT_USER_ERROR
    assert "1 class folder(s) in " in first_line_of_failure(base)
    assert "hold no readable training image: 002.Afghan_hound" in first_line_of_failure(base)


def test_a_name_that_is_not_utf8_is_written_to_the_failure_file_escaped(sm_tree):
    """A class folder named in Latin-1 (a tar made on an old system): its name reaches Python as surrogate escapes,
    which no JSON label can hold (trained, serving answered 500): the job fails before training, naming it escaped."""
    base = sm_tree(HEAD_ONLY)
    os.mkdir(bytes(base / "input" / "data" / "training" / "train") + b"/004.Caf\xe9")
    assert run_in_process(base) == train.EXIT_USER_ERROR
    assert "are not UTF-8 (the bytes shown as \\x..): 004.Caf\\xe9; the class names" in first_line_of_failure(base)
    assert not (base / "model").exists()


def test_unwritable_checkpoint_dir_fails_before_training_naming_it(sm_tree, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    base = sm_tree(HEAD_ONLY, checkpoint_dir=blocker / "checkpoints")
    assert run_in_process(base) == train.EXIT_USER_ERROR
    assert first_line_of_failure(base) == (
        f"cannot write checkpoints to {blocker / 'checkpoints'}: not a directory (ENOTDIR); "
        "a file stands where the directory should be"
    )
    assert not (base / "model").exists()


def test_failure_that_cannot_be_written_is_logged_with_its_cause(sm_tree, caplog):
    base = sm_tree({"optimizer": "rmsprop"})
    (base / "output").write_text("a file where the output directory should be")
    assert run_in_process(base) == train.EXIT_USER_ERROR
    assert f"cannot write {base / 'output' / 'failure'} (file exists (EEXIST)): the failure reason" in caplog.text


def test_successful_run_removes_a_stale_failure(sm_tree):
    base = sm_tree(HEAD_ONLY)
    (base / "output").mkdir()
    (base / "output" / "failure").write_text("training stopped by SIGTERM: ...\n")
    assert run_in_process(base) == 0
    assert not (base / "output" / "failure").exists()


def test_a_job_that_ends_without_reporting_why_is_reported(sm_tree, monkeypatch):
    """`train`'s first process writes output/failure when the job exits non-zero without writing one (e.g. its
    interpreter fails before main() runs); an earlier run's failure file is not taken for this run's."""
    base = sm_tree(HEAD_ONLY)
    (base / "output").mkdir()
    (base / "output" / "failure").write_text("training stopped by SIGTERM: ...\n")
    monkeypatch.setattr(supervisor, "JOB", "import sys; sys.exit(3)")
    assert supervisor.main([], {"SAGEMAKER_BASE_DIR": str(base)}) == 3
    assert failure(base).startswith("internal error: the training process exited with code 3 without saying why")


DIVERGING = {"epochs": "2", "fine_tune": "all", "augment": "true", "optimizer": "sgd", "lr": "10", "momentum": "1"}


def test_training_that_diverges_fails_and_delivers_no_model(sm_tree, caplog):
    """lr=10 (the bound) with momentum 1: the weights become nan in epoch 1. Was: exit 0, a NaN model delivered and
    bare NaN in model_config.json and metrics.json."""
    base = sm_tree({**DIVERGING, "weight_decay": "1", "lr_schedule": "none", "hidden_units": "0"})
    assert run_in_process(base) == train.EXIT_USER_ERROR
    message = failure(base)
    assert message.startswith("training diverged: the loss became non-finite at epoch 1 ("), message
    assert "valid_loss=nan" in message
    assert "lower lr (now 10 with optimizer=sgd)" in message
    assert "final " not in caplog.text and not list((base / "checkpoints").glob("*.pt"))
    assert not (base / "model" / "model.pt").exists() and not (base / "output" / "data" / "metrics.json").exists()
