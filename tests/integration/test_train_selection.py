"""Which epoch is delivered (select_by) and when training stops early (patience)."""

import json
import math

import pytest

from dogbreed import selection, train

ROWS = [
    {"epoch": 1, "valid_loss": 1.0, "valid_acc": 0.50},
    {"epoch": 2, "valid_loss": 0.7, "valid_acc": 0.60},
    {"epoch": 3, "valid_loss": 0.8, "valid_acc": 0.70},
    {"epoch": 4, "valid_loss": math.nan, "valid_acc": 0.70},
]


@pytest.mark.parametrize(("select_by", "best"), [("valid_loss", 2), ("valid_acc", 3), ("last", 4)])
def test_best_epoch_by_each_criterion(select_by, best):
    kept = None
    for row in ROWS:
        if selection.better(row, kept, select_by):
            kept = row
    assert kept["epoch"] == best


@pytest.mark.parametrize(("select_by", "stale"), [("valid_loss", 2), ("valid_acc", 1), ("last", 2)])
def test_epochs_without_improvement(select_by, stale):
    assert selection.epochs_without_improvement(ROWS, select_by) == stale
    assert selection.epochs_without_improvement([], select_by) == 0


def test_a_diverging_run_stops_after_patience_and_delivers_its_best_epoch(sm_tree, caplog):
    hyperparameters = {"epochs": "10", "fine_tune": "head", "augment": "false", "optimizer": "sgd", "lr": "10"}
    base = sm_tree({**hyperparameters, "lr_schedule": "none", "patience": "2"})
    assert train.main({"SAGEMAKER_BASE_DIR": str(base)}) == 0
    report = json.loads((base / "output" / "data" / "metrics.json").read_text())
    losses = [row["valid_loss"] for row in report["epochs"]]
    best = min(range(len(losses)), key=lambda i: losses[i] if math.isfinite(losses[i]) else math.inf)
    assert len(losses) == best + 3 < 10  # two epochs without a better valid_loss, then stop
    assert report["final"]["best_epoch"] == best + 1 and report["final"]["epochs"] == len(losses)
    assert f"early stop after epoch {len(losses)}: 2 epoch(s) without improvement (patience=2)" in caplog.text
