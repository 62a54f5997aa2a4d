"""fine_tune=head without augmentation trains on backbone features computed once (issue 6): it must train the same
head as the plain loop, which runs the frozen backbone at every step."""

import torch
from train_support import FAST, write_tree

from dogbreed import train
from dogbreed.model import load_artifact

# SGD (not Adam) so float-rounding differences in the features stay proportionally small in the weights.
HEAD_TRIAL = {"epochs": "3", "fine_tune": "head", "augment": "false", "optimizer": "sgd", "lr": "0.05", "dropout": "0"}


def trained_head(base, **hyperparameters: str) -> dict[str, torch.Tensor]:
    tree = write_tree(base, {**FAST, **HEAD_TRIAL, **hyperparameters})
    assert train.main({"SAGEMAKER_BASE_DIR": str(tree)}) == 0, (tree / "output" / "failure").read_text()
    return load_artifact(tree / "model").model.fc.state_dict()


def test_cached_features_train_the_same_head_as_the_plain_loop(tmp_path, caplog):
    plain = trained_head(tmp_path / "plain", cache_features="false")
    caplog.clear()
    cached = trained_head(tmp_path / "cached", cache_features="true", feature_precision="fp32")
    assert "computing backbone features once" in caplog.text
    for name in plain:
        torch.testing.assert_close(cached[name], plain[name], rtol=1e-3, atol=1e-4)

    # Teeth: two fewer epochs move the head far beyond that tolerance.
    shorter = trained_head(tmp_path / "shorter", cache_features="true", feature_precision="fp32", epochs="1")
    assert (shorter["0.weight"] - plain["0.weight"]).abs().max() > 0.1
