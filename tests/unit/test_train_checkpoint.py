"""Checkpoints: atomic writes, only the newest kept, resume refused for a different model setup."""

import pytest
import torch

from dogbreed.checkpoint import Checkpoint, load_latest, save_checkpoint
from dogbreed.errors import UserError

SIGNATURE = {"class_names": ["a", "b"], "head": {"num_classes": 2}, "fine_tune": "head"}


def checkpoint(epochs_done: int) -> Checkpoint:
    return Checkpoint(epochs_done, {"w": torch.ones(2) * epochs_done}, {}, [{"epoch": epochs_done}], SIGNATURE)


def test_newest_checkpoint_is_loaded_and_old_ones_pruned(tmp_path):
    for epochs in (1, 2, 3, 10):
        save_checkpoint(tmp_path, checkpoint(epochs))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-0003.pt", "checkpoint-0010.pt"]
    loaded = load_latest(tmp_path, SIGNATURE)
    assert loaded.epochs_done == 10 and torch.equal(loaded.model["w"], torch.full((2,), 10.0))


def test_no_checkpoint_means_fresh_start(tmp_path):
    assert load_latest(tmp_path / "absent", SIGNATURE) is None


def test_checkpoint_of_another_setup_is_refused(tmp_path):
    save_checkpoint(tmp_path, checkpoint(1))
    with pytest.raises(UserError, match="different setup"):
        load_latest(tmp_path, {**SIGNATURE, "fine_tune": "all"})


def test_torn_checkpoint_names_the_file(tmp_path):
    (tmp_path / "checkpoint-0001.pt").write_bytes(b"truncated")
    with pytest.raises(UserError, match=r"checkpoint-0001\.pt cannot be loaded"):
        load_latest(tmp_path, SIGNATURE)
