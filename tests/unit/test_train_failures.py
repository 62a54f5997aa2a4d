"""The error boundary: output/failure says what to fix, exit code is non-zero; pretrained weights are never faked."""

import torch
from torchvision.models import resnet50

from dogbreed import train

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
    assert "expected channels 'train' and 'valid'" in failure(base)


def test_pretrained_channel_state_dict_is_loaded(sm_tree, caplog):
    base = sm_tree({**HEAD_ONLY, "pretrained": "true"})
    channel = base / "input" / "data" / "pretrained"
    channel.mkdir()
    torch.save(resnet50(weights=None).state_dict(), channel / "resnet50.pth")
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


def test_internal_error_is_reported_as_such(sm_tree, tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    base = sm_tree(HEAD_ONLY, checkpoint_dir=blocker / "checkpoints")
    assert run_in_process(base) == train.EXIT_INTERNAL_ERROR
    assert failure(base).startswith("internal error in training (")
    assert "Traceback" in caplog.text
