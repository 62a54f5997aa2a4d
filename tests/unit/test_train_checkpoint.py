"""Checkpoints: atomic writes, only the newest kept, resume refused for a different model setup."""

import pytest
import torch

from dogbreed.checkpoint import BEST_FILE, Checkpoint, load_best, load_latest, save_checkpoint
from dogbreed.errors import UserError
from dogbreed.files import torch_bytes

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


def test_a_torn_newest_checkpoint_is_skipped_for_the_one_before(tmp_path, caplog):
    """Two are kept so that one torn file (a kill mid-sync, a partial S3 download) costs an epoch, not the job."""
    save_checkpoint(tmp_path, checkpoint(1))
    whole = (tmp_path / "checkpoint-0001.pt").read_bytes()
    (tmp_path / "checkpoint-0002.pt").write_bytes(whole[: len(whole) // 2])
    assert load_latest(tmp_path, SIGNATURE).epochs_done == 1
    assert "skipping checkpoint" in caplog.text and "checkpoint-0002.pt" in caplog.text


@pytest.mark.parametrize("junk", [b"truncated", torch_bytes({"not": "a checkpoint"}), torch_bytes([1, 2])])
def test_when_no_checkpoint_loads_the_error_names_them_without_unsafe_advice(tmp_path, junk, caplog):
    (tmp_path / "checkpoint-0001.pt").write_bytes(junk)
    (tmp_path / "checkpoint-0002.pt").write_bytes(junk)
    with pytest.raises(UserError, match=r"checkpoint-0001\.pt, checkpoint-0002\.pt.*delete them to start over"):
        load_latest(tmp_path, SIGNATURE)
    assert "weights_only=False" not in caplog.text


def test_an_unreadable_best_model_is_ignored_like_a_foreign_one(tmp_path, caplog):
    (tmp_path / BEST_FILE).write_bytes(b"\x00" * 64)
    assert load_best(tmp_path, SIGNATURE) is None
    assert f"ignoring {tmp_path / BEST_FILE}: it cannot be loaded (torn" in caplog.text
